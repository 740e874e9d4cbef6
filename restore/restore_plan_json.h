// Restore plans as JSON values that round-trip: a plan made now and run
// later (havend's "plan, then run", a reviewed plan handed to a job) is
// stored as this JSON and read back into the very VmPlan the dry run
// showed — generated names, UUID, MACs, paths, network definitions and the
// rewritten domain XML included — so ExecuteVmRestore runs what was
// approved, never a plan made again.
//
// Unlike HostRestoreResultJson (host_restore.h), which reports a result for
// people and scripts, these keep every field ExecuteVmRestore reads. The
// recovery point is kept by id and loaded again from the repository when
// the plan is read: a point forgotten since the plan makes reading it fail
// (NotFound naming the point), and the plan never carries a copy of a
// manifest that could disagree with the repository.
//
//   {"version": 1, "snapshot": ID, "source_name", "name", "uuid",
//    "new_uuid", "state", "dir", "create_dirs": [...],
//    "space": {"needed", "full", "free"}, "journal",
//    "disks": [{"target", "path", "format", "size", "data_bytes",
//               "exists", "resume"}],
//    "networks": [{"name", "from", "action", "xml", "by"}],
//    "nvram_path", "nvram_config", "replace_domain", "xml",
//    "macs": [{"old", "new"}], "conflicts": [...], "warnings": [...]}
#ifndef HAVEN_RESTORE_RESTORE_PLAN_JSON_H_
#define HAVEN_RESTORE_RESTORE_PLAN_JSON_H_

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "repository/repository.h"
#include "restore/file_restore.h"
#include "restore/host_restore.h"
#include "restore/vm_restore.h"

namespace haven::restore {

// Every field of `plan` (above); the snapshot by id.
nlohmann::json VmPlanJson(const VmPlan& plan);
// The plan VmPlanJson wrote, its snapshot loaded from `repo`.
// InvalidArgument naming the field for a malformed value; NotFound when
// the point is no longer in the repository.
Result<VmPlan> VmPlanFromJson(const nlohmann::json& j,
                              const repository::PointReader& repo);

// The options a plan was made with and its run needs (name, storage_dir,
// pool, format, network_map, new_identity, replace, start, verify_ids,
// create_networks);
// the callbacks and the cancel token are the caller's to set.
nlohmann::json VmRestoreOptionsJson(const VmRestoreOptions& options);
Result<VmRestoreOptions> VmRestoreOptionsFromJson(const nlohmann::json& j);

// {"vms": [VmPlanJson...]}
nlohmann::json HostRestorePlanJson(const HostRestorePlan& plan);
Result<HostRestorePlan> HostRestorePlanFromJson(
    const nlohmann::json& j, const repository::PointReader& repo);

// A file restore's (or its dry run's) counts, problems and planned
// entries: {"files", "dirs", "symlinks", "fifos", "devices", "hardlinks",
// "skipped", "bytes", "seconds", "complete", "problems": [{"path",
// "what"}], "planned": [{"path", "type", "size", "action"}],
// "planned_more"}; and back (how an isolated reader returns them).
nlohmann::json FileRestoreStatsJson(const FileRestoreStats& stats);
Result<FileRestoreStats> FileRestoreStatsFromJson(const nlohmann::json& j);

}  // namespace haven::restore

#endif  // HAVEN_RESTORE_RESTORE_PLAN_JSON_H_
