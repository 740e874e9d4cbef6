// What a schedule says: when (a systemd calendar event), what (a job kind,
// a repository and the kind's parameters) and how (random delay,
// Persistent=, enabled). Parsed from the API's JSON and from `havend init`,
// checked here once, so the routes, the scheduler and init agree.
//
// Every value comes from a client: names, calendar texts, VM names and
// parameters are bounded and checked, and errors quote them with
// QuoteUntrusted.
#ifndef HAVEN_APPLIANCE_SCHEDULE_SPEC_H_
#define HAVEN_APPLIANCE_SCHEDULE_SPEC_H_

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "base/calendar.h"
#include "base/status.h"

namespace haven::appliance {

// The job kinds a schedule may run.
// --- agents: jobs --- "agent-backup": a file backup an agent runs.
// --- copies --- "sync": points copied to or from a remote appliance.
inline constexpr const char* kScheduleKinds[] = {
    "backup", "forget", "gc", "check", "agent-backup", "sync"};
// A schedule's random delay, at most a day (seconds).
inline constexpr int64_t kMaxRandomDelaySeconds = 86400;

struct ScheduleSpec {
  std::string name;      // [A-Za-z0-9][A-Za-z0-9._-]{0,63}, unique
  std::string calendar;  // as written ("Mon..Fri 02:00")
  std::string kind;      // backup | forget | gc | check
  std::string repository;
  // The job's parameters, as JobSpec::params (appliance/job_kinds.h):
  //   backup: {"all": true} | {"vms": [..]}, optional "exclude": [globs],
  //           "parallel" (1..32), "limit_read" (MB/s), "adaptive", "full"
  //   forget: a retention policy: keep_last, keep_hourly, keep_daily,
  //           keep_weekly, keep_monthly, keep_yearly (counts), keep_within
  //           ("7d", "1y6m"), at least one rule; optional "name", "dry_run"
  //   check:  optional "read_data_percent" (0..100)
  //   gc:     optional "repack_below", "max_unused" (percent), "dry_run"
  //   agent-backup: {"agent": ID or NAME, "paths": [absolute paths]},
  //           optional "name", "excludes", "exclude_caches",
  //           "one_file_system" (appliance/agent_jobs.h)
  //   sync:   {"remote": NAME, "direction": "pull" | "push"}, optional
  //           "names", "refs", keep_* counts, "bytes_per_second",
  //           "dry_run" (appliance/sync_jobs.h)
  nlohmann::json params = nlohmann::json::object();
  // Backup schedules only: a retention policy (forget's keep_* rules)
  // applied after each run by one forget job per VM the run backed up
  // (forget's "name"). null: none.
  nlohmann::json retention = nullptr;
  int64_t random_delay_seconds = 0;  // 0..kMaxRandomDelaySeconds
  bool persistent = true;            // a run missed while down runs at start
  bool enabled = true;
};

// Whether a repository of that name is configured.
using RepositoryKnown = std::function<bool(std::string_view name)>;

// Parses a schedule from a JSON object. With `base` null (create) name,
// calendar, kind and repository are required; with `base` (a change) the
// body's fields replace base's and the rest stay. The result is checked as a
// whole: InvalidArgument naming the field and what is wrong for an unknown
// field, a wrong type, a bad name, calendar event, kind, parameter or
// retention rule, and for a repository `known` does not know.
Result<ScheduleSpec> ParseScheduleSpec(const nlohmann::json& body,
                                       const ScheduleSpec* base,
                                       const RepositoryKnown& known);

// Checks a kind's parameters (see ScheduleSpec::params). InvalidArgument
// naming the parameter ("params.vms[2]: ...").
Status CheckScheduleParams(std::string_view kind, const nlohmann::json& params);

// Checks a retention policy object (forget's params, a backup schedule's
// retention); `field` names it in errors ("params", "retention").
Status CheckRetention(const nlohmann::json& policy, std::string_view field);

// The calendar event of `text`, its error prefixed with "calendar: ".
Result<CalendarEvent> ParseScheduleCalendar(std::string_view text);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_SCHEDULE_SPEC_H_
