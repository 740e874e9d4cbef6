// Rebuild a lost host: PlanHostRestore and RestoreHost, the job behind
// `haven restore vm` and `haven restore host`, callable by any front end.
//
//   choose points:  the points named (id prefix, NAME:latest), or with
//                   `all` the latest point of every VM in the repository —
//                   refused (DataLoss) while any manifest is unreadable,
//                   since it may be a VM's newest
//   plan:           PlanVmRestore for every point, one PlanContext, so later
//                   VMs see the names, paths and networks of earlier ones;
//                   nothing on the host changes
//   execute:        only a plan without conflicts and not a dry run; each VM
//                   in order (restore/vm_restore.h), a failure does not stop
//                   the others; cancellation is checked between VMs
#ifndef HAVEN_RESTORE_HOST_RESTORE_H_
#define HAVEN_RESTORE_HOST_RESTORE_H_

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/outcome.h"
#include "base/progress.h"
#include "repository/repository.h"
#include "restore/vm_restore.h"
#include "snapshot/libvirt_host.h"

namespace haven::restore {

struct HostRestoreRequest {
  std::vector<std::string> points;  // one per VM; or
  bool all = false;                 // the latest point of every VM
  bool dry_run = false;             // plan and report; change nothing
  VmRestoreOptions vm;              // for every VM; vm.cancel is replaced
  CancelToken cancel;               // checked between VMs and inside each
};

// The latest point of every VM in the repository (kind "vm", by name; the
// rule of repository/latest_point.h). DataLoss naming an unreadable
// manifest when any cannot be read.
Result<std::vector<repository::Manifest>> LatestVmPoints(
    const repository::Repository& repo);

struct HostRestorePlan {
  std::vector<VmPlan> vms;
  size_t conflicts() const;
};

// Chooses the points and plans every VM. InvalidArgument for a request with
// both or neither of points and `all`; NotFound when `all` finds no VM
// point; errors of FindSnapshot; a plan error with the point named.
Result<HostRestorePlan> PlanHostRestore(const repository::Repository& repo,
                                        const snapshot::LibvirtHost& host,
                                        const HostRestoreRequest& request);

// The planning of PlanHostRestore for points already chosen (a host agent
// reads one point through the appliance, agent/agent_vm_tasks.h): each in
// order, with one PlanContext.
Result<HostRestorePlan> PlanPoints(
    const repository::PointReader& reader,
    const std::vector<repository::Manifest>& points,
    const snapshot::LibvirtHost& host, const VmRestoreOptions& options);

struct VmRestoreItem {
  VmPlan plan;
  // kOk: defined (and started if asked); kPartial: defined but --start
  // failed (result.start_error); kFailed: not restored (status); kSkipped:
  // dry run, or not run because of conflicts; kCancelled.
  Outcome outcome = Outcome::kSkipped;
  Status status;
  VmRestoreResult result;  // when defined
};

struct HostRestoreResult {
  bool dry_run = false;
  size_t conflicts = 0;  // over all plans; any refuses the whole restore
  std::vector<VmRestoreItem> vms;
  int succeeded = 0, failed = 0, cancelled = 0, not_started = 0;
  double duration_seconds = 0;
};

// Carries out `plan` unless it is a dry run or has conflicts (then every
// VM is kSkipped and nothing changes; the result says which).
HostRestoreResult RestoreHost(const repository::PointReader& repo,
                              const snapshot::LibvirtHost& host,
                              const HostRestorePlan& plan,
                              const HostRestoreRequest& request);

// As `haven restore vm|host --json` prints it: {dry_run, vms: [{name,
// source_name, snapshot, time, ok, error, uuid, defined, started, disks,
// networks, nvram, conflicts, warnings, macs, seconds?, outcome, code}],
// succeeded, failed, seconds, cancelled, conflicts}.
nlohmann::ordered_json HostRestoreResultJson(const HostRestoreResult& result);

}  // namespace haven::restore

#endif  // HAVEN_RESTORE_HOST_RESTORE_H_
