#include "agent/host_backup.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <thread>

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

// The host job's progress: one event for the whole job from the events of
// the VMs running in parallel (calls arrive from their threads; the
// caller's function is called under one lock, so it is serialized).
class HostProgress {
 public:
  HostProgress(const ProgressFn& fn, const std::vector<std::string>& names,
               int parallel, double start)
      : fn_(fn), parallel_(parallel), start_(start), vms_(names.size()) {
    for (size_t i = 0; i < names.size(); ++i) vms_[i].name = names[i];
  }

  void Started(size_t i) {
    std::lock_guard<std::mutex> l(mu_);
    vms_[i].state = kRunning;
    vms_[i].started = MonotonicSeconds();
    EmitLocked(false);
  }
  void Update(size_t i, const Progress& p) {
    std::lock_guard<std::mutex> l(mu_);
    Vm& vm = vms_[i];
    vm.done = p.done_bytes;
    vm.total = std::max(p.total_bytes, p.done_bytes);
    vm.new_bytes = p.new_bytes;
    EmitLocked(false);
  }
  void Finished(size_t i, const VmBackupReport& report) {
    std::lock_guard<std::mutex> l(mu_);
    Vm& vm = vms_[i];
    if (vm.state == kRunning) vm.seconds = MonotonicSeconds() - vm.started;
    vm.state = kDone;
    vm.failed = report.outcome == Outcome::kFailed;
    vm.done = vm.total =
        report.ok() ? report.manifest.stats.logical_bytes : vm.done;
    if (report.ok()) vm.new_bytes = report.manifest.stats.new_stored_bytes;
    EmitLocked(false);
  }
  void Done() {
    std::lock_guard<std::mutex> l(mu_);
    EmitLocked(true);
  }

 private:
  enum State { kWaiting, kRunning, kDone };
  struct Vm {
    std::string name;
    State state = kWaiting;
    bool failed = false;
    uint64_t done = 0, total = 0, new_bytes = 0;
    double started = 0, seconds = 0;
  };

  void EmitLocked(bool final) {
    if (!fn_) return;
    Progress p;
    p.phase = "backup";
    p.final = final;
    p.elapsed_seconds = MonotonicSeconds() - start_;
    uint64_t running_left = 0;
    double done_seconds = 0;
    int running_shown = 0;
    for (const Vm& vm : vms_) {
      p.done_bytes += vm.done;
      p.total_bytes += vm.total;
      p.new_bytes += vm.new_bytes;
      switch (vm.state) {
        case kWaiting:
          ++p.items_waiting;
          break;
        case kRunning:
          ++p.items_running;
          running_left += vm.total - std::min(vm.total, vm.done);
          if (running_shown++ < 3)
            p.item += (p.item.empty() ? "" : ", ") + vm.name;
          break;
        case kDone:
          ++p.items_done;
          done_seconds += vm.seconds;
          if (vm.failed) ++p.items_failed;
          break;
      }
    }
    if (running_shown > 3) p.item += " +" + std::to_string(running_shown - 3);
    // Totals of VMs not started are not known yet: no overall total then.
    if (p.items_waiting > 0) p.total_bytes = 0;
    p.bytes_per_second =
        p.elapsed_seconds > 0 ? p.done_bytes / p.elapsed_seconds : 0;
    // ETA: the running VMs' remaining bytes at the overall rate, plus the
    // waiting VMs at the average time a finished VM took, `parallel` at a
    // time. Unknown until one VM has finished (if any wait).
    const double running_eta =
        p.bytes_per_second > 0 ? running_left / p.bytes_per_second : 0;
    if (p.items_waiting == 0)
      p.eta_seconds =
          p.bytes_per_second > 0 || running_left == 0 ? running_eta : -1;
    else if (p.items_done > 0)
      p.eta_seconds =
          running_eta +
          done_seconds / p.items_done *
              std::ceil(static_cast<double>(p.items_waiting) / parallel_);
    fn_(p);
  }

  const ProgressFn& fn_;
  const int parallel_;
  const double start_;
  std::mutex mu_;
  std::vector<Vm> vms_;
};

}  // namespace

Result<VmSelection> SelectVms(const HostBackupRequest& request,
                              const std::vector<std::string>& defined) {
  if (request.all == !request.names.empty())
    return InvalidArgument("name the VMs to back up, or give --all");
  VmSelection out;
  for (const auto& name : request.all ? defined : request.names) {
    // The throw-away VMs of verify-restore (restore/verify_restore.h) run
    // from a point for a test: --all never backs them up.
    const bool test_vm = request.all && name.rfind("haven-verify-", 0) == 0;
    (test_vm || Excluded(request, name) ? out.excluded : out.chosen)
        .push_back(name);
  }
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
  return BackupHost(
      [&repo](const std::string&) -> Result<std::unique_ptr<PointSink>> {
        return std::unique_ptr<PointSink>(std::make_unique<LocalPointSink>(
            repo, repository::Unreadable::kRefuse));
      },
      host, request);
}

Result<HostBackupResult> BackupHost(const PointSinkFactory& sinks,
                                    const snapshot::LibvirtHost& host,
                                    const HostBackupRequest& request) {
  if (request.parallel < 1 || request.parallel > kMaxParallel)
    return InvalidArgument("--parallel must be 1 to " +
                           std::to_string(kMaxParallel) + ", not " +
                           std::to_string(request.parallel));
  HAVEN_ASSIGN_OR_RETURN(VmSelection selection, SelectVms(request, host));
  const double start = MonotonicSeconds();
  if (request.low_priority) {
    // The kernel refuses nothing a thread asks for itself when lowering;
    // should it, the backup runs at the caller's priority.
    (void)LowerProcessPriority();
  }
  HostBackupResult result;
  result.uri = host.uri();
  const size_t n = selection.chosen.size();
  result.parallel = static_cast<int>(
      std::max<size_t>(1, std::min<size_t>(request.parallel, n)));
  auto log = [&request](const std::string& line) {
    if (request.vm.log) request.vm.log(line);
  };

  // Paid once for the whole job.
  std::shared_ptr<const std::vector<snapshot::ConfigFile>> facts =
      request.vm.host_facts;
  if (!facts && n > 0) {
    HAVEN_ASSIGN_OR_RETURN(auto read, host.HostFacts());
    facts = std::make_shared<const std::vector<snapshot::ConfigFile>>(
        std::move(read));
  }
  // One read budget for every VM of the job.
  ReadBudget budget;
  if (request.vm.limit_read) {
    budget.limiter = request.vm.limit_read;  // the caller's
  } else if (n > 0) {
    budget = StartReadBudget(request.limit_read_bytes_per_second,
                             request.adaptive, request.adaptive_options, log);
    result.adaptive = budget.governor != nullptr;
    result.adaptive_note = budget.note;
  }
  std::shared_ptr<RateLimiter> limit_read = budget.limiter;

  HostProgress progress(request.progress, selection.chosen, result.parallel,
                        start);
  std::vector<VmBackupReport> reports(n);
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next++; i < n; i = next++) {
      const std::string& name = selection.chosen[i];
      VmBackupReport& report = reports[i];
      if (Status c = request.cancel.Check("backup of " + name); !c.ok()) {
        report.name = name;
        report.outcome = Outcome::kCancelled;
        report.status = c;
        progress.Finished(i, report);
        continue;
      }
      VmBackupOptions opt = request.vm;
      opt.cancel = request.cancel;
      opt.limit_read = limit_read;
      opt.host_facts = facts;
      opt.progress = nullptr;
      if (request.progress)
        opt.progress = [&progress, i](const Progress& p) {
          progress.Update(i, p);
        };
      progress.Started(i);
      if (auto sink = sinks(name); sink.ok()) {
        report = BackupVm(**sink, host, name, opt);
      } else {
        report.name = name;
        report.outcome = OutcomeOf(sink.status());
        report.status = sink.status();
      }
      progress.Finished(i, report);
    }
  };
  {
    std::vector<std::thread> threads;
    for (int t = 1; t < result.parallel; ++t) threads.emplace_back(worker);
    worker();
    for (auto& t : threads) t.join();
  }
  budget.Finish(result.slowdowns, result.lowest_rate, result.highest_pressure);
  progress.Done();

  for (auto& report : reports) {
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
  j["phases"] = {{"prepare_seconds", r.phases.prepare},
                 {"capture_seconds", r.phases.capture},
                 {"read_seconds", r.phases.read},
                 {"finish_seconds", r.phases.finish}};
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
  j["parallel"] = r.parallel;
  uint64_t read = 0;  // over the VMs that landed
  for (const auto& v : r.vms)
    if (v.ok()) read += v.manifest.stats.read_bytes;
  j["read_bytes"] = read;
  j["adaptive"] = {{"on", r.adaptive},
                   {"note", r.adaptive_note},
                   {"slowdowns", r.slowdowns},
                   {"lowest_rate", r.lowest_rate},
                   {"highest_pressure", r.highest_pressure}};
  return j;
}

}  // namespace haven::agent
