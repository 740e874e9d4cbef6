#include "restore/verify_restore.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <sstream>
#include <thread>

#include "base/file.h"
#include "base/time.h"
#include "restore/instant_restore.h"
#include "restore/screenshot.h"
#include "snapshot/domain_xml.h"

namespace haven::restore {
namespace {

namespace fs = std::filesystem;

std::string Base64(const std::string& in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

std::string RandomTag() {
  unsigned char b[4];
  if (RAND_bytes(b, sizeof b) != 1) return "00000000";
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (unsigned char c : b) {
    s.push_back(hex[c >> 4]);
    s.push_back(hex[c & 15]);
  }
  return s;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
}

// The console's last lines, printable (the guest writes what it likes).
std::string Tail(const std::string& text, size_t max_bytes) {
  std::string t =
      text.size() > max_bytes ? text.substr(text.size() - max_bytes) : text;
  std::string out;
  for (unsigned char c : t)
    if (c != '\r')  // consoles end lines with \r\n
      out.push_back(c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f) ? c
                                                                      : '?');
  if (text.size() > max_bytes) {
    size_t nl = out.find('\n');
    if (nl != std::string::npos) out = out.substr(nl + 1);
  }
  return out;
}

std::string Secs(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", s);
  return buf;
}

std::string LastLine(const std::string& text) {
  std::string t = Tail(text, 400);
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
  size_t nl = t.rfind('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

}  // namespace

nlohmann::json VerifyResultJson(const VerifyResult& r, bool screenshot) {
  nlohmann::json j;
  j["version"] = 1;
  j["point"] = r.point;
  j["vm"] = r.vm;
  j["time"] = r.time;
  j["passed"] = r.passed;
  j["check"] = r.check;
  j["reason"] = r.reason;
  j["boot_seconds"] = r.boot_seconds;
  j["seconds"] = r.seconds;
  j["console_tail"] = r.console_tail;
  j["screenshot"] = r.screenshot_png.empty() ? "" : "image/png";
  if (screenshot && !r.screenshot_png.empty())
    j["screenshot_png_base64"] = Base64(r.screenshot_png);
  j["screenshot_error"] = r.screenshot_error;
  j["left_behind"] = r.left_behind;
  return j;
}

Result<VerifyResult> VerifyRestore(const repository::PointReader& repo,
                                   const snapshot::LibvirtHost& host,
                                   const VerifyRequest& req) {
  auto log = [&](const std::string& line) {
    if (req.log) req.log(line);
  };
  if (req.point.kind != "vm")
    return InvalidArgument("point " + req.point.id + " is a " + req.point.kind +
                           " backup; verify-restore boots VM points");
  if (req.console_pattern.empty() && !req.agent)
    return InvalidArgument(
        "say what shows the VM came up: a console line (--check-console) "
        "or the guest agent (--check-agent)");
  std::optional<std::regex> pattern;
  if (!req.console_pattern.empty()) {
    try {
      pattern.emplace(req.console_pattern);
    } catch (const std::regex_error& e) {
      return InvalidArgument("--check-console '" + req.console_pattern +
                             "' is not a regular expression: " + e.what());
    }
  }
  const double start = MonotonicSeconds();
  VerifyResult r;
  r.point = req.point.id;
  r.vm = req.point.name;
  r.time = FormatTime(static_cast<int64_t>(::time(nullptr)) * 1000000000,
                      TimeStyle::kRfc3339Utc);
  std::vector<std::string> checks;
  if (pattern)
    checks.push_back("a serial console line matches '" + req.console_pattern +
                     "'");
  if (req.agent) checks.push_back("the QEMU guest agent answers");
  for (size_t i = 0; i < checks.size(); ++i)
    r.check += (i ? " and " : "") + checks[i];

  const std::string tag = req.point.id.substr(0, 8) + "-" + RandomTag();
  const std::string name = "haven-verify-" + tag;
  const std::string net = name;
  const std::string dir =
      (req.storage_dir.empty() ? std::string(kDefaultStorageDir)
                               : req.storage_dir);
  const std::string work = dir + "/.haven-verify-" + tag;
  const std::string console = work + "/console.log";

  // Everything made is removed, whatever happens from here on.
  bool net_made = false, vm_made = false;
  auto teardown = [&] {
    if (vm_made) {
      Status s = DiscardInstant(host, name, log);
      if (!s.ok()) {
        (void)host.RemoveDomain(name);
        StopInstantExport(dir + "/" + kInstantDirPrefix + name);
      }
      if (host.Lookup(name).ok()) r.left_behind.push_back("domain " + name);
      if (fs::exists(dir + "/" + kInstantDirPrefix + name))
        r.left_behind.push_back(dir + "/" + kInstantDirPrefix + name);
    }
    if (net_made) {
      Status s = host.RemoveNetwork(net);
      if (!s.ok())
        r.left_behind.push_back("network " + net + ": " + s.message());
    }
    std::error_code ec;
    fs::remove_all(work, ec);
    if (fs::exists(work)) r.left_behind.push_back(work);
  };

  log("isolated network " + net + " (no forward, no address)");
  HAVEN_RETURN_IF_ERROR(host.CreateNetwork(
      net, "<network><name>" + snapshot::XmlEscape(net) +
               "</name><bridge name='hvv" + tag.substr(0, 8) +
               "' stp='on' delay='0'/></network>"));
  net_made = true;
  if (::mkdir(work.c_str(), 0711) != 0) {
    Status s = ErrnoStatus("creating " + work, errno);
    teardown();
    return s;
  }
  ::chmod(work.c_str(), 0711);

  VmRestoreOptions o;
  o.name = name;
  o.storage_dir = dir;
  o.new_identity = true;
  o.create_networks = false;
  o.instant = req.source;
  o.log = req.log;
  o.cancel = req.cancel;
  // Every network and bridge the VM used goes to the isolated one.
  Result<VmPlan> plan = InvalidArgument("not planned");
  for (int round = 0; round < 2; ++round) {
    PlanContext ctx;
    plan = PlanVmRestore(repo, req.point, host, o, ctx);
    if (!plan.ok()) break;
    for (const auto& n : plan->networks) o.network_map[n.from] = net;
  }
  if (!plan.ok()) {
    teardown();
    return plan.status();
  }
  if (!plan->conflicts.empty()) {
    teardown();
    return FailedPrecondition("the throw-away VM cannot be restored: " +
                              plan->conflicts.front());
  }
  {
    snapshot::DomainRewrite rw;
    rw.serial_file = console;
    auto x = snapshot::RewriteDomainXml(plan->instant_xml, rw);
    if (!x.ok()) {
      teardown();
      return x.status();
    }
    plan->instant_xml = x->xml;
  }
  log("starting " + name + " from point " + req.point.id);
  const double boot_start = MonotonicSeconds();
  auto done = ExecuteVmRestore(repo, host, *plan, o);
  if (!done.ok()) {
    // Did the restore define anything? (It removes what it made when the
    // start fails.)
    vm_made = host.Lookup(name).ok();
    r.passed = false;
    r.reason = "the VM did not start: " + done.status().message();
    teardown();
    r.seconds = MonotonicSeconds() - start;
    return r;
  }
  vm_made = true;
  auto vm = host.Lookup(name);
  if (!vm.ok()) {
    teardown();
    return vm.status();
  }

  bool console_ok = !pattern, agent_ok = !req.agent;
  std::string text;
  for (;;) {
    if (req.cancel.cancelled()) {
      teardown();
      return Cancelled("verify-restore cancelled; what it made was removed");
    }
    text = ReadAll(console);
    if (!console_ok) {
      std::istringstream lines(text);
      std::string line;
      while (std::getline(lines, line))
        if (std::regex_search(line, *pattern)) {
          console_ok = true;
          break;
        }
    }
    if (!agent_ok) agent_ok = (*vm)->AgentAnswers();
    r.boot_seconds = MonotonicSeconds() - boot_start;
    if (console_ok && agent_ok) {
      r.passed = true;
      break;
    }
    auto active = (*vm)->Active();
    if (active.ok() && !*active) {
      r.reason = "the VM stopped (powered off or crashed) " +
                 Secs(r.boot_seconds) + " after it started";
      break;
    }
    if (r.boot_seconds > req.timeout_seconds) {
      std::vector<std::string> missing;
      if (!console_ok)
        missing.push_back("no serial console line matched '" +
                          req.console_pattern + "'");
      if (!agent_ok) missing.push_back("the guest agent never answered");
      for (size_t i = 0; i < missing.size(); ++i)
        r.reason += (i ? " and " : "") + missing[i];
      r.reason += " within " + Secs(req.timeout_seconds);
      std::string last = LastLine(text);
      r.reason += last.empty() ? "; the console stayed empty"
                               : "; the console's last line: " + last;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  log(std::string(r.passed ? "came up" : "did not come up") + " after " +
      Secs(r.boot_seconds) + "; taking a screenshot");
  auto shot = (*vm)->Screenshot();
  if (!shot.ok()) {
    r.screenshot_error = shot.status().message();
  } else if (shot->first == "image/png") {  // QEMU 7.2 writes PNG itself
    if (shot->second.rfind("\x89PNG\r\n\x1a\n", 0) == 0)
      r.screenshot_png = shot->second;
    else
      r.screenshot_error = "the screenshot is not a PNG";
  } else if (shot->first.find("portable-pixmap") == std::string::npos) {
    r.screenshot_error = "QEMU gave a " + shot->first + " screenshot";
  } else {
    auto png = PpmToPng(shot->second);
    if (png.ok())
      r.screenshot_png = *png;
    else
      r.screenshot_error = png.status().message();
  }
  r.console_tail = Tail(ReadAll(console), 4096);
  log("removing " + name + ", its overlays and network " + net);
  teardown();
  r.seconds = MonotonicSeconds() - start;
  return r;
}

}  // namespace haven::restore
