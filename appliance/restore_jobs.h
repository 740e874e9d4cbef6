// Restores in havend: plan first, then run the plan as a job.
//
//   plan:  the core plans (restore::PlanHostRestore for a VM or a whole
//          host, a dry run of restore::RestoreGuestFiles for files),
//          changing nothing; the plan is stored (restore_plans.h) and
//          shown with its id
//   run:   SubmitRestore claims the plan (a plan runs once) and submits a
//          job of kind restore-vm | restore-host | restore-files with
//          params {"plan": ID}; the executor reads the stored plan back
//          and hands it to the core (restore::RestoreHost, which runs
//          ExecuteVmRestore per VM; RestoreGuestFiles), never planning
//          again. What changed on the host since the plan (a domain or
//          disk file that appeared, a network or storage folder that went,
//          a recovery point forgotten) fails the job naming it.
//
// Guest file systems are parsed in a child process
// (restore/isolated_reader.h), for the plan and for the run: a crafted
// image that crashes the parser does not take havend down.
#ifndef HAVEN_APPLIANCE_RESTORE_JOBS_H_
#define HAVEN_APPLIANCE_RESTORE_JOBS_H_

#include <string>
#include <vector>

#include "appliance/restore_plans.h"
#include "appliance/services.h"
#include "base/status.h"
#include "restore/file_restore.h"
#include "restore/host_restore.h"

namespace haven::appliance {

inline constexpr char kRestoreVmKind[] = "restore-vm";
inline constexpr char kRestoreHostKind[] = "restore-host";
inline constexpr char kRestoreFilesKind[] = "restore-files";

// Registers the three kinds with s.jobs (their validators check that
// params.plan names a stored plan of the kind, for the job's repository,
// without conflicts). Creates the restore_plans table.
Status RegisterRestoreKinds(Services& s);

// Plans the restore of `request` (points or all, and the VM options; the
// callbacks are set here) from `repository` onto s.config->libvirt_uri and
// stores it. `kind` is "vm" (one point) or "host". The errors of
// PlanHostRestore (NotFound for an unknown point, ...); conflicts are in
// the plan, not errors.
Result<StoredPlan> PlanMachineRestore(
    const Services& s, const std::string& kind, const std::string& repository,
    const restore::HostRestoreRequest& request, const std::string& by);

struct FilePlanRequest {
  std::string repository;
  std::string point;   // id prefix, latest or NAME:latest
  std::string disk;    // image and VM points: which disk ("" : the only one)
  int partition = -1;  // which volume (-1: the only one with a file system)
  std::vector<std::string> paths;  // in the point: "/etc", "/" for all
  // Absolute folder on this machine; "": <state_dir>/restores/<point>-<time>
  std::string target;
  restore::Overwrite overwrite = restore::Overwrite::kNever;
};

// Dry-runs the file restore (what would be written, and each conflict
// with the target under `overwrite`) and stores it.
Result<StoredPlan> PlanFileRestore(const Services& s,
                                   const FilePlanRequest& request,
                                   const std::string& by);

// Claims plan `plan_id` of `kind` ("vm", "host", "files") and submits its
// job; the job's id. NotFound for an unknown plan or one of another kind;
// FailedPrecondition for an expired plan, one that ran, or one with
// conflicts (naming the first).
Result<int64_t> SubmitRestore(const Services& s, const std::string& kind,
                              const std::string& plan_id,
                              const std::string& by);

// The API's view of a stored plan: id, kind, repository, who and when,
// expiry, conflicts, runnable, the job that ran it, and the plan.
nlohmann::json StoredPlanJson(const StoredPlan& plan);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_RESTORE_JOBS_H_
