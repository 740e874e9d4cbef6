#include "agent/host_backup.h"

#include "base/glob.h"
#include "base/priority.h"
#include "base/time.h"

namespace haven::agent {
namespace {

bool Excluded(const HostBackupRequest& request, const std::string& name) {
  for (const auto& pattern : request.exclude)
    if (MatchesGlob(pattern, name)) return true;
  return false;
}

}  // namespace

Result<VmSelection> SelectVms(const HostBackupRequest& request,
                              const std::vector<std::string>& defined) {
  if (request.all == !request.names.empty())
    return InvalidArgument("name the VMs to back up, or give --all");
  VmSelection out;
  for (const auto& name : request.all ? defined : request.names)
    (Excluded(request, name) ? out.excluded : out.chosen).push_back(name);
  return out;
}

Result<VmSelection> SelectVms(const HostBackupRequest& request,
                              const snapshot::LibvirtHost& host) {
  if (!request.all) return SelectVms(request, std::vector<std::string>{});
  HAVEN_ASSIGN_OR_RETURN(std::vector<std::string> defined, host.DomainNames());
  return SelectVms(request, defined);
}

Result<HostBackupResult> BackupHost(repository::Repository& repo,
                                    const snapshot::LibvirtHost& host,
                                    const HostBackupRequest& request) {
  HAVEN_ASSIGN_OR_RETURN(VmSelection selection, SelectVms(request, host));
  const double start = MonotonicSeconds();
  if (request.low_priority) {
    // The kernel refuses nothing a thread asks for itself when lowering;
    // should it, the backup runs at the caller's priority.
    (void)LowerProcessPriority();
  }
  HostBackupResult result;
  result.uri = host.uri();
  // One budget for the whole host job.
  std::shared_ptr<RateLimiter> limit_read = request.vm.limit_read;
  if (request.limit_read_bytes_per_second > 0)
    limit_read =
        std::make_shared<RateLimiter>(request.limit_read_bytes_per_second);
  for (const auto& name : selection.chosen) {
    VmBackupReport report;
    if (Status c = request.cancel.Check("backup of " + name); !c.ok()) {
      report.name = name;
      report.outcome = Outcome::kCancelled;
      report.status = c;
    } else {
      VmBackupOptions opt = request.vm;
      opt.cancel = request.cancel;
      opt.limit_read = limit_read;
      opt.progress = nullptr;
      if (request.progress)
        opt.progress = [&request, name](const Progress& p) {
          Progress q = p;
          q.phase = "backup";
          q.item = name;
          request.progress(q);
        };
      report = BackupVm(repo, host, name, opt);
    }
    switch (report.outcome) {
      case Outcome::kOk:
      case Outcome::kPartial:
        ++result.succeeded;
        break;
      case Outcome::kCancelled:
        ++result.cancelled;
        break;
      case Outcome::kSkipped:
        ++result.skipped;
        break;
      case Outcome::kFailed:
        ++result.failed;
        break;
    }
    result.vms.push_back(std::move(report));
  }
  for (const auto& name : selection.excluded) {
    VmBackupReport report;
    report.name = name;
    report.outcome = Outcome::kSkipped;
    report.status = OkStatus();
    ++result.skipped;
    result.vms.push_back(std::move(report));
  }
  result.duration_seconds = MonotonicSeconds() - start;
  return result;
}

nlohmann::ordered_json VmBackupReportJson(const VmBackupReport& r) {
  const bool ok = r.ok();
  const repository::Manifest& m = r.manifest;
  nlohmann::ordered_json j;
  j["name"] = r.name;
  j["ok"] = ok;
  j["snapshot"] = ok ? m.id : "";
  j["error"] = r.status.message();
  j["consistency"] = ok ? m.consistency : "";
  j["consistency_reason"] = ok ? m.consistency_reason : "";
  j["disks"] = nlohmann::ordered_json::array();
  for (const auto& d : r.disks)
    j["disks"].push_back({{"name", d.name},
                          {"mode", d.mode},
                          {"reason", d.reason},
                          {"size", d.size},
                          {"read_bytes", d.read_bytes},
                          {"changed_bytes", d.changed_bytes}});
  j["skipped"] = nlohmann::ordered_json::array();
  for (const auto& [disk, why] : r.skipped)
    j["skipped"].push_back({{"name", disk}, {"reason", why}});
  j["new_stored_bytes"] = ok ? m.stats.new_stored_bytes : 0;
  j["duration_seconds"] = r.seconds;
  j["outcome"] = OutcomeName(r.outcome);
  j["code"] = CodeName(r.status.code());
  j["logical_bytes"] = ok ? m.stats.logical_bytes : 0;
  j["read_bytes"] = ok ? m.stats.read_bytes : 0;
  j["new_bytes"] = ok ? m.stats.new_raw_bytes : 0;
  return j;
}

nlohmann::ordered_json HostBackupResultJson(const HostBackupResult& r) {
  nlohmann::ordered_json j;
  j["vms"] = nlohmann::ordered_json::array();
  for (const auto& v : r.vms) j["vms"].push_back(VmBackupReportJson(v));
  j["succeeded"] = r.succeeded;
  j["failed"] = r.failed;
  j["cancelled"] = r.cancelled;
  j["skipped"] = r.skipped;
  j["duration_seconds"] = r.duration_seconds;
  return j;
}

}  // namespace haven::agent
