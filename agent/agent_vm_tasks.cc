#include "agent/agent_vm_tasks.h"

#include <dirent.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "agent/remote_point_reader.h"
#include "agent/vm_backup.h"
#include "agent/vm_upload.h"
#include "base/bytes.h"
#include "base/file.h"
#include "base/json.h"
#include "restore/host_restore.h"
#include "restore/restore_plan_json.h"
#include "snapshot/libvirt_host.h"

namespace haven::agent {
namespace {

using nlohmann::json;

constexpr size_t kMaxWarnings = 1000;

json Failed(const std::string& why) {
  return {{"outcome", "failed"}, {"error", why}};
}

json FromOrdered(const nlohmann::ordered_json& j) {
  return json::parse(DumpJson(j));
}

Result<std::string> StringParam(const json& p, const char* name) {
  if (!p.is_object() || !p.contains(name) || !p[name].is_string() ||
      p[name].get<std::string>().empty())
    return InvalidArgument(std::string("the job's params name no ") + name);
  return p[name].get<std::string>();
}

// The restore request a plan task names, with the options the run needs.
Result<restore::HostRestoreRequest> RequestOf(const json& r) {
  if (!r.is_object() || !r.contains("points") || !r["points"].is_array())
    return InvalidArgument("the job's request names no points");
  restore::HostRestoreRequest req;
  for (const json& p : r["points"]) {
    if (!p.is_string())
      return InvalidArgument("request.points holds a non-string");
    req.points.push_back(p.get<std::string>());
  }
  HAVEN_ASSIGN_OR_RETURN(req.vm, restore::VmRestoreOptionsFromJson(
                                     r.value("options", json::object())));
  return req;
}

}  // namespace

// Plans this agent made (vm-restore-plan) are remembered by the SHA-256 of
// their JSON in state_dir/plans/; a vm-restore runs only such a plan, for
// an hour, so even an appliance that is not what it should be cannot have
// this host write a plan of its own making (paths, XML, a domain to
// replace).
namespace {
constexpr int64_t kPlanLifetimeSeconds = 3600;

std::string PlanDigest(const json& plan) {
  const std::string text = DumpJson(plan);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), md, &len, EVP_sha256(), nullptr);
  return HexEncode(ByteSpan(md, len));
}
}  // namespace

Status RememberPlan(const std::string& state_dir, const json& plan) {
  const std::string dir = state_dir + "/plans";
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return Internal("cannot create " + dir + ": " + std::strerror(errno));
  // Old entries go: a plan runs within the hour or is planned again.
  if (DIR* d = opendir(dir.c_str())) {
    const int64_t now = static_cast<int64_t>(::time(nullptr));
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      struct stat st;
      const std::string p = dir + "/" + e->d_name;
      if (stat(p.c_str(), &st) == 0 && now - st.st_mtime > kPlanLifetimeSeconds)
        unlink(p.c_str());
    }
    closedir(d);
  }
  const std::string mark = "planned by this agent\n";
  return WriteFileAtomic(
      dir + "/" + PlanDigest(plan),
      ByteSpan(reinterpret_cast<const uint8_t*>(mark.data()), mark.size()),
      0600);
}

Status CheckPlanIsOurs(const std::string& state_dir, const json& plan) {
  const std::string path = state_dir + "/plans/" + PlanDigest(plan);
  struct stat st;
  if (stat(path.c_str(), &st) != 0 ||
      static_cast<int64_t>(::time(nullptr)) - st.st_mtime >
          kPlanLifetimeSeconds)
    return PermissionDenied(
        "the appliance sent a restore plan this agent did not make within "
        "the last hour; plan the restore again");
  return OkStatus();
}

AgentTask VmBackupTask(ApplianceClient& client, std::string state_dir,
                       std::string libvirt_uri,
                       std::function<void(const std::string&)> log) {
  return [&client, state_dir, libvirt_uri, log](
             int64_t, const json& params, const ProgressFn& progress,
             const CancelToken& cancel) -> Result<json> {
    auto vm = StringParam(params, "vm");
    if (!vm.ok()) return Failed(vm.status().message());
    if (params.contains("full") && !params["full"].is_boolean())
      return Failed("the job's full is not true or false");
    auto host = snapshot::LibvirtHost::Connect(libvirt_uri);
    if (!host.ok())
      return Failed("cannot reach libvirt at " + libvirt_uri + ": " +
                    host.status().message());
    VmBackupOptions o;
    o.full = params.value("full", false);
    o.progress = progress;
    o.cancel = cancel;
    o.log = log;
    AgentVmBackupResult r =
        BackupVmToAppliance(client, state_dir, **host, *vm, o);
    const VmBackupReport& rep = r.report;
    if (rep.outcome == Outcome::kCancelled) return rep.status;
    if (!rep.ok()) return Failed(rep.status.message());
    json warnings = json::array();
    for (const auto& [disk, why] : rep.skipped)
      if (warnings.size() < kMaxWarnings)
        warnings.push_back("disk " + disk + " skipped: " + why);
    json disks = json::array();
    uint64_t read = 0;
    for (const VmDiskReport& d : rep.disks) {
      read += d.read_bytes;
      disks.push_back({{"name", d.name},
                       {"mode", d.mode},
                       {"reason", d.reason},
                       {"size", d.size},
                       {"read_bytes", d.read_bytes},
                       {"changed_bytes", d.changed_bytes}});
    }
    return json{{"outcome", "succeeded"},
                {"point", rep.manifest.id},
                {"warnings", warnings},
                {"stats",
                 {{"bytes_read", read},
                  {"uploaded_chunks", r.uploaded_chunks},
                  {"uploaded_bytes", r.uploaded_bytes},
                  {"skipped_chunks", r.skipped_chunks},
                  {"consistency", rep.manifest.consistency},
                  {"disks", disks},
                  {"seconds", rep.seconds}}}};
  };
}

AgentTask VmRestorePlanTask(ApplianceClient& client, std::string state_dir,
                            std::string libvirt_uri) {
  return [&client, state_dir, libvirt_uri](int64_t job, const json& params,
                                           const ProgressFn&,
                                           const CancelToken&) -> Result<json> {
    auto req = RequestOf(params.value("request", json::object()));
    if (!req.ok()) return Failed(req.status().message());
    auto host = snapshot::LibvirtHost::Connect(libvirt_uri);
    if (!host.ok())
      return Failed("cannot reach libvirt at " + libvirt_uri + ": " +
                    host.status().message());
    RemotePointReader reader(client, job);
    req->dry_run = true;
    std::vector<repository::Manifest> points;
    for (const std::string& ref : req->points) {
      auto m = reader.FindSnapshot(ref);
      if (!m.ok()) return Failed(m.status().message());
      if (m->kind != "vm")
        return Failed("point " + m->id.substr(0, 8) + " is not a VM's");
      points.push_back(std::move(*m));
    }
    auto plan = restore::PlanPoints(reader, points, **host, req->vm);
    if (!plan.ok()) return Failed(plan.status().message());
    restore::HostRestoreResult dry =
        restore::RestoreHost(reader, **host, *plan, *req);
    json plan_json = restore::HostRestorePlanJson(*plan);
    if (Status s = RememberPlan(state_dir, plan_json); !s.ok())
      return Failed(s.message());
    return json{{"outcome", "succeeded"},
                {"stats",
                 {{"plan", plan_json},
                  {"view", FromOrdered(restore::HostRestoreResultJson(dry))},
                  {"conflicts", static_cast<uint64_t>(plan->conflicts())}}}};
  };
}

AgentTask VmRestoreTask(ApplianceClient& client, std::string state_dir,
                        std::string libvirt_uri,
                        std::function<void(const std::string&)> log) {
  return [&client, state_dir, libvirt_uri, log](
             int64_t job, const json& params, const ProgressFn& progress,
             const CancelToken& cancel) -> Result<json> {
    if (!params.is_object() || !params.contains("plan") ||
        !params["plan"].is_object())
      return Failed("the job carries no plan");
    if (Status ours = CheckPlanIsOurs(state_dir, params["plan"]); !ours.ok())
      return Failed(ours.message());
    auto options = restore::VmRestoreOptionsFromJson(
        params.value("options", json::object()));
    if (!options.ok()) return Failed(options.status().message());
    auto host = snapshot::LibvirtHost::Connect(libvirt_uri);
    if (!host.ok())
      return Failed("cannot reach libvirt at " + libvirt_uri + ": " +
                    host.status().message());
    RemotePointReader reader(client, job);
    // The plan as the admin saw it: never planned again.
    auto plan = restore::HostRestorePlanFromJson(params["plan"], reader);
    if (!plan.ok()) return Failed(plan.status().message());
    restore::HostRestoreRequest req;
    req.vm = std::move(*options);
    req.vm.log = log;
    req.vm.progress = [progress](const std::string& label) -> ProgressFn {
      if (!progress) return nullptr;
      return [progress, label](const Progress& p) {
        Progress q = p;
        q.item = label;
        progress(q);
      };
    };
    req.cancel = cancel;
    restore::HostRestoreResult r =
        restore::RestoreHost(reader, **host, *plan, req);
    json stats = FromOrdered(restore::HostRestoreResultJson(r));
    const bool all_ok = r.failed == 0 && r.cancelled == 0 &&
                        r.not_started == 0 && r.conflicts == 0;
    if (all_ok) return json{{"outcome", "succeeded"}, {"stats", stats}};
    std::string why;
    for (const restore::VmRestoreItem& v : r.vms)
      if (why.empty() && v.outcome != Outcome::kOk)
        why = v.plan.name + ": " +
              (v.outcome == Outcome::kPartial ? v.result.start_error
                                              : v.status.message());
    if (why.empty()) why = std::to_string(r.conflicts) + " conflict(s)";
    return json{{"outcome", r.succeeded > 0 ? "partial" : "failed"},
                {"error", why},
                {"stats", stats}};
  };
}

}  // namespace haven::agent
