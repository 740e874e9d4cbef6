// What notifications and /metrics read from tables other modules own: the
// job history (jobs, job_items: appliance/job_history.cc) and the
// schedules (schedules: appliance/schedule_store.cc). Every such SQL statement
// is in history_queries.cc and nowhere else, so a change of those schemas is
// one file's edit. A table that does not exist yet (a fresh database
// before its module made it) reads as empty, not as an error.
#ifndef HAVEN_APPLIANCE_HISTORY_QUERIES_H_
#define HAVEN_APPLIANCE_HISTORY_QUERIES_H_

#include <vector>

#include "appliance/metrics.h"
#include "appliance/overdue.h"
#include "appliance/state_db.h"

namespace haven::appliance {

// Per (VM, repository): the end time and figures of its last backup job
// item with outcome "ok".
Result<std::vector<VmBackupMetric>> LoadVmLastBackups(StateDb& db);

// The VMs' last successes for overdue detection (from LoadVmLastBackups).
std::vector<VmLastSuccess> LastSuccesses(
    const std::vector<VmBackupMetric>& backups);

// Every (VM, repository) of a backup job item that was not skipped, with its
// last success (none for a VM whose backups all failed): the VMs havend
// knows, for overdue detection.
Result<std::vector<VmLastSuccess>> LoadKnownVms(StateDb& db);

// Jobs by kind and state, ended jobs' durations by kind, and how many are
// running and queued: fills those fields of `snapshot`.
Status LoadJobFigures(StateDb& db, MetricsSnapshot& snapshot);

// The enabled backup schedules with what they cover. A schedule whose
// calendar does not parse is skipped (the scheduler refuses those).
Result<std::vector<ScheduleCoverage>> LoadBackupSchedules(StateDb& db);

class RepositoryUsageCache;  // appliance/notify_monitor.h

// What GET /metrics renders: the figures above, the repositories' last
// measured usage (`usage` may be null) and this process's memory.
Result<MetricsSnapshot> CollectMetrics(StateDb& db,
                                       const RepositoryUsageCache* usage);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_HISTORY_QUERIES_H_
