#include "restore/host_restore.h"

#include "base/time.h"
#include "repository/latest_point.h"

namespace haven::restore {

Result<std::vector<repository::Manifest>> LatestVmPoints(
    const repository::Repository& repo) {
  return repository::LatestPoints(repo, "vm", repository::Unreadable::kRefuse);
}

size_t HostRestorePlan::conflicts() const {
  size_t n = 0;
  for (const auto& p : vms) n += p.conflicts.size();
  return n;
}

Result<HostRestorePlan> PlanHostRestore(const repository::Repository& repo,
                                        const snapshot::LibvirtHost& host,
                                        const HostRestoreRequest& request) {
  if (request.all == !request.points.empty())
    return InvalidArgument(
        "name the recovery points to restore, or give --all for the latest "
        "point of every VM");
  std::vector<repository::Manifest> points;
  if (request.all) {
    HAVEN_ASSIGN_OR_RETURN(points, LatestVmPoints(repo));
    if (points.empty())
      return NotFound(
          "the repository holds no VM backups ('haven backup vm' makes them)");
  } else {
    for (const auto& spec : request.points) {
      // NAME:latest and latest: the latest VM backup (an image backup of the
      // same name taken after it does not hide it).
      HAVEN_ASSIGN_OR_RETURN(repository::Manifest m,
                             repo.FindSnapshot(spec, {"vm"}));
      points.push_back(std::move(m));
    }
  }
  return PlanPoints(repo, points, host, request.vm);
}

Result<HostRestorePlan> PlanPoints(
    const repository::PointReader& reader,
    const std::vector<repository::Manifest>& points,
    const snapshot::LibvirtHost& host, const VmRestoreOptions& options) {
  HostRestorePlan plan;
  PlanContext context;
  for (const auto& m : points) {
    auto p = PlanVmRestore(reader, m, host, options, context);
    if (!p.ok())
      return p.status().WithContext("snapshot " + m.id.substr(0, 8) + " (" +
                                    m.name + ")");
    plan.vms.push_back(std::move(*p));
  }
  return plan;
}

HostRestoreResult RestoreHost(const repository::PointReader& repo,
                              const snapshot::LibvirtHost& host,
                              const HostRestorePlan& plan,
                              const HostRestoreRequest& request) {
  const double start = MonotonicSeconds();
  HostRestoreResult result;
  result.dry_run = request.dry_run;
  result.conflicts = plan.conflicts();
  const bool execute = !request.dry_run && result.conflicts == 0;
  VmRestoreOptions opt = request.vm;
  opt.cancel = request.cancel;
  for (const auto& p : plan.vms) {
    VmRestoreItem item;
    item.plan = p;
    if (!p.conflicts.empty()) {
      item.outcome = Outcome::kFailed;
      item.status = FailedPrecondition(
          std::to_string(p.conflicts.size()) +
          " conflict(s), nothing changed: " + p.conflicts.front());
    }
    if (!execute) {
      if (result.conflicts > 0) ++result.failed;
      result.vms.push_back(std::move(item));
      continue;
    }
    if (Status c = request.cancel.Check("restore of " + p.name); !c.ok()) {
      item.outcome = Outcome::kCancelled;
      item.status = c;
      ++result.cancelled;
      result.vms.push_back(std::move(item));
      continue;
    }
    auto r = ExecuteVmRestore(repo, host, p, opt);
    if (!r.ok()) {
      item.outcome = OutcomeOf(r.status());
      item.status = r.status();
      ++(item.outcome == Outcome::kCancelled ? result.cancelled
                                             : result.failed);
    } else {
      item.result = std::move(*r);
      ++result.succeeded;
      item.outcome = Outcome::kOk;
      if (request.vm.start && !item.result.started) {
        ++result.not_started;
        item.outcome = Outcome::kPartial;
      }
    }
    result.vms.push_back(std::move(item));
  }
  result.duration_seconds = execute ? MonotonicSeconds() - start : 0;
  return result;
}

namespace {

nlohmann::ordered_json ItemJson(const VmRestoreItem& item) {
  const VmPlan& p = item.plan;
  const bool defined =
      item.outcome == Outcome::kOk || item.outcome == Outcome::kPartial;
  nlohmann::ordered_json v;
  v["name"] = p.name;
  v["source_name"] = p.source_name;
  v["snapshot"] = p.snapshot.id;
  v["time"] = p.snapshot.time;
  v["ok"] = defined;
  v["error"] = defined ? item.result.start_error : item.status.message();
  v["uuid"] = defined ? item.result.uuid : p.uuid;
  v["new_uuid"] = p.new_uuid;
  v["state"] = p.state;
  v["already"] = defined && item.result.already;
  v["dir"] = p.dir;
  v["create_dirs"] = p.create_dirs;
  v["space"] = {{"needed", p.space_needed},
                {"full", p.space_full},
                {"free", p.space_free}};
  v["defined"] = defined && item.result.defined;
  v["started"] = defined && item.result.started;
  v["disks"] = nlohmann::ordered_json::array();
  for (size_t i = 0; i < p.disks.size(); ++i) {
    const PlannedDisk& d = p.disks[i];
    const bool done = defined && i < item.result.disks.size();
    v["disks"].push_back(
        {{"target", d.target},
         {"path", d.path},
         {"format", d.format},
         {"size", d.size},
         {"needs", d.data_bytes},
         {"resume", d.resume},
         {"data_bytes", done ? item.result.disks[i].data_bytes : 0},
         {"seconds", done ? item.result.disks[i].seconds : 0.0}});
  }
  v["networks"] = nlohmann::ordered_json::array();
  for (const auto& n : p.networks)
    v["networks"].push_back({{"name", n.name},
                             {"action", n.action},
                             {"from", n.from},
                             {"by", n.by}});
  v["nvram"] = p.nvram_path;
  v["conflicts"] = p.conflicts;
  v["warnings"] = p.warnings;
  v["macs"] = nlohmann::ordered_json::array();
  for (const auto& [o, n] : p.macs)
    v["macs"].push_back({{"old", o}, {"new", n}});
  if (defined) {
    v["seconds"] = item.result.seconds;
    v["networks_created"] = item.result.networks_created;
  }
  v["outcome"] = OutcomeName(item.outcome);
  v["code"] = CodeName(item.status.code());
  return v;
}

}  // namespace

nlohmann::ordered_json HostRestoreResultJson(const HostRestoreResult& r) {
  nlohmann::ordered_json out;
  out["dry_run"] = r.dry_run;
  out["vms"] = nlohmann::ordered_json::array();
  for (const auto& item : r.vms) out["vms"].push_back(ItemJson(item));
  out["succeeded"] = r.succeeded;
  out["failed"] = r.failed;
  out["seconds"] = r.duration_seconds;
  out["cancelled"] = r.cancelled;
  out["not_started"] = r.not_started;
  out["conflicts"] = r.conflicts;
  return out;
}

}  // namespace haven::restore
