#include "restore/verify_restore.h"

#include <openssl/evp.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

#include "base/bytes.h"
#include "base/file.h"
#include "base/time.h"
#include "repository/crypto.h"
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
  uint8_t b[4];
  repository::RandomBytes(b, sizeof b);
  return HexEncode(ByteSpan(b, sizeof b));
}

// The last 8 KiB of the console file.
std::string ConsoleTail(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return "";
  const std::streamoff size = in.tellg();
  const std::streamoff from = size > 8192 ? size - 8192 : 0;
  in.seekg(from);
  std::string out(static_cast<size_t>(size - from), '\0');
  in.read(out.data(), static_cast<std::streamsize>(out.size()));
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
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

// What in the domain a verified restore defines would reach past the
// isolated network and the point's own disks (see the top of the header).
Result<std::vector<std::string>> IsolationProblems(const std::string& xml,
                                                   const VmPlan& plan) {
  HAVEN_ASSIGN_OR_RETURN(auto info, snapshot::ParseDomainXml(xml));
  std::vector<std::string> out;
  for (const auto& i : info.interfaces)
    if (i.type != "network" && i.type != "bridge")
      out.push_back("an interface of type '" + i.type +
                    "' would reach this host's networks; verify-restore puts "
                    "only network and bridge interfaces on its isolated "
                    "network");
  for (const auto& d : info.disks) {
    bool served = false;
    for (const auto& pd : plan.disks) served |= pd.target == d.target;
    if (served) continue;
    if ((d.device == "cdrom" || d.device == "floppy") && d.path.empty() &&
        d.type != "network")
      continue;  // an empty drive
    out.push_back("disk " + d.target + " (" +
                  (d.path.empty() ? d.type : d.path) +
                  ") is not in the point: the test VM would use the host's");
  }
  for (const char* e : {"<hostdev", "<filesystem", "<redirdev", "<smartcard",
                        "<shmem", "<tpm", "<parallel"})
    if (xml.find(e) != std::string::npos)
      out.push_back(std::string("the domain has a ") + (e + 1) +
                    " device, which would reach this host; verify-restore "
                    "refuses it");
  return out;
}

}  // namespace

nlohmann::json VerificationSummary(const repository::Repository& repo,
                                   const std::string& id) {
  auto v = repo.ReadVerification(id);
  if (!v.ok()) return {{"error", v.status().message()}};
  if (!v->has_value()) return nullptr;
  auto j = nlohmann::json::parse(**v, nullptr, false);
  if (!j.is_object()) return {{"error", "the verification record is not JSON"}};
  j.erase("screenshot_png_base64");
  return j;
}

Result<std::string> VerificationScreenshot(const repository::Repository& repo,
                                           const std::string& id) {
  HAVEN_ASSIGN_OR_RETURN(auto v, repo.ReadVerification(id));
  std::string b64;
  if (v) {
    auto j = nlohmann::json::parse(*v, nullptr, false);
    if (j.is_object()) b64 = j.value("screenshot_png_base64", "");
  }
  std::string png(3 * (b64.size() / 4) + 3, '\0');
  int n = b64.empty() ? 0
                      : EVP_DecodeBlock(
                            reinterpret_cast<unsigned char*>(png.data()),
                            reinterpret_cast<const unsigned char*>(b64.data()),
                            static_cast<int>(b64.size()));
  if (n < 0) return DataLoss("the screenshot stored for " + id +
                             " does not decode");
  for (size_t i = b64.size(); i > 0 && b64[i - 1] == '='; --i)
    --n;  // padding decodes as zero bytes
  png.resize(static_cast<size_t>(std::max(n, 0)));
  if (png.rfind("\x89PNG\r\n\x1a\n", 0) != 0)
    return NotFound("point " + id + " has no screenshot of a verified restore");
  return png;
}

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
  // Plain text, not a regular expression: the console is the guest's to
  // write, and a backtracking regex over a line it chose could take the
  // process (havend) down.
  if (req.console_pattern.size() > 256 ||
      std::any_of(req.console_pattern.begin(), req.console_pattern.end(),
                  [](unsigned char c) { return c < 0x20 || c == 0x7f; }))
    return InvalidArgument(
        "--check-console takes printable text of at most 256 bytes");
  const bool want_console = !req.console_pattern.empty();
  const double start = MonotonicSeconds();
  VerifyResult r;
  r.point = req.point.id;
  r.vm = req.point.name;
  r.time = FormatTime(static_cast<int64_t>(::time(nullptr)) * 1000000000,
                      TimeStyle::kRfc3339Utc);
  std::vector<std::string> checks;
  if (want_console)
    checks.push_back("a serial console line contains '" + req.console_pattern +
                     "'");
  if (req.agent) checks.push_back("the QEMU guest agent answers");
  for (size_t i = 0; i < checks.size(); ++i)
    r.check += (i ? " and " : "") + checks[i];

  const std::string tag = req.point.id.substr(0, 8) + "-" + RandomTag();
  const std::string name = "haven-verify-" + tag;
  const std::string net = name;
  const std::string dir =
      fs::path(req.storage_dir.empty() ? std::string(kDefaultStorageDir)
                                       : req.storage_dir)
          .lexically_normal()
          .string();
  const std::string bridge = "hvv" + tag.substr(9, 8);  // the random part
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
  net_made = true;  // removed even when defined but not started
  Status made =
      (host.CreateNetwork(net, "<network><name>" + snapshot::XmlEscape(net) +
                                   "</name><bridge name='" + bridge +
                                   "' stp='on' delay='0'/></network>"));
  if (!made.ok()) {
    teardown();
    return made;
  }
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
    // A network interface goes to the isolated network, a bridge one to
    // its bridge.
    for (const auto& n : plan->networks)
      o.network_map[n.from] = n.action == "bridge" ? bridge : net;
  }
  if (!plan.ok()) {
    teardown();
    return plan.status();
  }
  // What would reach beyond the test: interfaces that are not on the
  // isolated network or bridge, disks not served from the point, devices
  // of the host. Refused, named.
  if (auto problems = IsolationProblems(plan->instant_xml, *plan);
      !problems.ok()) {
    teardown();
    return problems.status();
  } else {
    plan->conflicts.insert(plan->conflicts.end(), problems->begin(),
                           problems->end());
  }
  if (!plan->nvram_path.empty())
    plan->conflicts.push_back(
        "the VM boots with UEFI variables (NVRAM), which instant recovery "
        "does not serve yet");
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

  bool console_ok = !want_console, agent_ok = !req.agent;
  // The console is read on from where the last look ended, at most 16 MiB
  // in all (the guest may write without end); the tail is kept for the
  // record and for a line split between two looks.
  std::string text;
  uint64_t console_read = 0;
  std::string carry;
  for (;;) {
    if (req.cancel.cancelled()) {
      teardown();
      return Cancelled("verify-restore cancelled; what it made was removed");
    }
    if (!console_ok && console_read < (16u << 20)) {
      std::ifstream in(console, std::ios::binary);
      in.seekg(static_cast<std::streamoff>(console_read));
      std::string fresh(64u << 10, '\0');
      in.read(fresh.data(), static_cast<std::streamsize>(fresh.size()));
      fresh.resize(static_cast<size_t>(in.gcount()));
      console_read += fresh.size();
      carry += fresh;
      if (carry.find(req.console_pattern) != std::string::npos)
        console_ok = true;
      // Keep what a match could still start in.
      if (carry.size() > req.console_pattern.size() + 4096)
        carry.erase(0, carry.size() - req.console_pattern.size() - 4096);
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
        missing.push_back("no serial console line contained '" +
                          req.console_pattern + "'");
      if (!agent_ok) missing.push_back("the guest agent never answered");
      for (size_t i = 0; i < missing.size(); ++i)
        r.reason += (i ? " and " : "") + missing[i];
      r.reason += " within " + Secs(req.timeout_seconds);
      std::string last = LastLine(ConsoleTail(console));
      r.reason += last.empty() ? "; the console stayed empty"
                               : "; the console's last line: " + last;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  // A disk read the repository could not serve fails the test even when
  // the checks passed: the point is not whole. (The server writes its
  // figures at most once a second.)
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  {
    std::ifstream in(dir + "/" + kInstantDirPrefix + name + "/stats.json");
    auto stats = nlohmann::json::parse(in, nullptr, false);
    uint64_t errors = stats.is_object() ? stats.value("read_errors", 0ull) : 0;
    if (errors > 0) {
      r.passed = false;
      r.reason = (r.reason.empty() ? "" : r.reason + "; ") +
                 std::to_string(errors) +
                 " read(s) of the point's disks failed in the repository "
                 "(damaged or missing data: run 'haven check')";
    }
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
  // The record holds it as base64 and is at most 16 MiB.
  if (r.screenshot_png.size() > (8u << 20)) {
    r.screenshot_error = "the screenshot (" +
                         std::to_string(r.screenshot_png.size()) +
                         " bytes as PNG) is over 8 MiB and was not kept";
    r.screenshot_png.clear();
  }
  r.console_tail = Tail(ConsoleTail(console), 4096);
  log("removing " + name + ", its overlays and network " + net);
  teardown();
  r.seconds = MonotonicSeconds() - start;
  return r;
}

}  // namespace haven::restore
