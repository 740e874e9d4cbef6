// The schedules table of havend's state database. Each change is one
// committed statement (SQLite WAL, synchronous=FULL), so what the API
// answered and when a schedule last fired survive kill -9.
//
//   schedules(id INTEGER PRIMARY KEY AUTOINCREMENT  -- never reused: jobs
//                                                   -- keep schedule_id
//             name TEXT UNIQUE, calendar, normalized, kind, repository,
//             params TEXT (JSON), retention TEXT (JSON or ''),
//             random_delay_seconds, persistent, enabled,
//             anchor INTEGER        -- the next run is the first elapse
//                                   -- strictly after this (unix seconds)
//             last_triggered, last_elapse, last_job_id, last_error,
//             created, changed)     -- unix seconds; 0: never
#ifndef HAVEN_APPLIANCE_SCHEDULE_STORE_H_
#define HAVEN_APPLIANCE_SCHEDULE_STORE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "appliance/schedule_spec.h"
#include "appliance/state_db.h"

namespace haven::appliance {

struct Schedule {
  int64_t id = 0;
  ScheduleSpec spec;
  std::string normalized;  // the calendar as systemd-analyze prints it
  // Runs are the elapses strictly after the anchor: set to the time of
  // creation, of a change of calendar, of enabling, and of each trigger.
  int64_t anchor = 0;
  int64_t last_triggered = 0;  // when it last fired (unix s); 0: never
  int64_t last_elapse = 0;     // the calendar time that run was for
  int64_t last_job_id = 0;     // the job it submitted; 0: none
  std::string last_error;      // why the last submission failed; "" ok
  int64_t created = 0, changed = 0;
};

class ScheduleStore {
 public:
  // Creates the table when missing.
  static Result<ScheduleStore> Open(StateDb& db);

  // AlreadyExists when the name is taken. The spec must have passed
  // ParseScheduleSpec.
  Result<Schedule> Insert(const ScheduleSpec& spec, int64_t now);
  // Replaces the spec of schedule `id`; moves its anchor to `now` when the
  // calendar changed or it was enabled (so no past elapse fires because of
  // the change). NotFound / AlreadyExists (name).
  Result<Schedule> Update(int64_t id, const ScheduleSpec& spec, int64_t now);
  Status Delete(int64_t id);             // NotFound
  Result<Schedule> Get(int64_t id);      // NotFound naming the id
  Result<std::vector<Schedule>> List();  // by id
  Result<int64_t> Count();

  // Durably records that `id` fired at `at` for the elapse `elapse`: anchor
  // and last_triggered become `at`. Done before the job is submitted.
  Status MarkTriggered(int64_t id, int64_t elapse, int64_t at);
  // The submission's result: the job id, or the error.
  Status RecordSubmission(int64_t id, int64_t job_id, const std::string& error);
  // At start: a schedule with persistent=false forgets the runs it missed
  // (anchor moves to `now`).
  Status SkipMissedRuns(int64_t now);

 private:
  explicit ScheduleStore(StateDb& db) : db_(&db) {}
  Result<std::optional<Schedule>> Find(int64_t id);
  StateDb* db_;
};

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_SCHEDULE_STORE_H_
