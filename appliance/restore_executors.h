// The executors of the restore job kinds and what the file restore's plan
// and run share (restore_jobs.h is the public side).
#ifndef HAVEN_APPLIANCE_RESTORE_EXECUTORS_H_
#define HAVEN_APPLIANCE_RESTORE_EXECUTORS_H_

#include <nlohmann/json.hpp>

#include "appliance/jobs.h"
#include "appliance/services.h"
#include "repository/repository.h"
#include "restore/file_restore.h"

namespace haven::appliance {

// restore-vm and restore-host: the stored plan through restore::RestoreHost.
JobOutcome RunMachineRestore(const Services& s, const JobSpec& spec,
                             JobContext& ctx);
// restore-files: the stored request through restore::RestoreGuestFiles.
JobOutcome RunFileRestore(const Services& s, const JobSpec& spec,
                          JobContext& ctx);

// The options of every file restore from havend, plan and run alike, from
// a stored request (target, overwrite).
restore::FileRestoreOptions FileOptions(const nlohmann::json& request);

// Opens the files of `point` (request: disk, partition) and restores
// request.paths with `opt` in a child process (restore/isolated_reader.h);
// the stats. The plan is this with opt.dry_run.
Result<restore::FileRestoreStats> RunIsolatedFileRestore(
    const repository::Repository& repo, const repository::Manifest& point,
    const nlohmann::json& request, const restore::FileRestoreOptions& opt,
    const CancelToken& cancel);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_RESTORE_EXECUTORS_H_
