// Jobs as JSON, the one spelling the API, the event stream and whoever
// reports on jobs (notifications, metrics) share.
#ifndef HAVEN_APPLIANCE_JOB_JSON_H_
#define HAVEN_APPLIANCE_JOB_JSON_H_

#include <nlohmann/json.hpp>

#include "appliance/jobs.h"

namespace haven::appliance {

// A progress event: id, phase, item, done_bytes, total_bytes, new_bytes,
// bytes_per_second, elapsed_seconds, eta_seconds (-1: not known; else the
// core's estimate, or the bytes left at the current rate), items_done,
// items_running, items_waiting, items_failed.
nlohmann::json ProgressJson(int64_t job_id, const Progress& p);

// id, kind, repository, params, requested_by, schedule_id, state,
// queued_at, started_at, ended_at (null until set), duration_seconds,
// queue_reason (queued), error, read_bytes, new_bytes, stored_bytes,
// progress (running, once reported); with `full` also items [{name,
// outcome, error, read_bytes, new_bytes, stored_bytes, detail}] and result.
nlohmann::json JobRecordJson(const JobRecord& record, bool full);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_JOB_JSON_H_
