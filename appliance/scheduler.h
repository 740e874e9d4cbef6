// The scheduler: havend's systemd timers. Schedules
// (appliance/schedule_store.h) say when and what; one timer thread submits
// their jobs to the JobService at the right time. Limits and queueing are the
// job service's.
//
//   loop:
//     now = clock()
//     for each enabled schedule:
//       elapse = NextElapse(calendar, min(anchor, now))  // a clock set back
//       due    = elapse + Delay(id, elapse)              //   starts from now
//     fire every schedule with due <= now, earliest first:
//       record anchor = last_triggered = now (durable), then Submit
//     submit the forget jobs of backup runs that ended (retention)
//     sleep until the earliest due, at most 30 s, or until woken by a
//     change, a run-now or an ended backup
//
// Persistent=true (the default): the anchor is kept across restarts, so a
// schedule that missed one or more elapses while havend was down is due at
// once on start and runs once, not once per missed elapse — as systemd's
// Persistent=true. Persistent=false: on start the anchor moves to now and
// missed runs are dropped. The random delay is a fixed function of the
// schedule's id and the elapse (not a fresh random number), so a restart
// does not move a pending run.
#ifndef HAVEN_APPLIANCE_SCHEDULER_H_
#define HAVEN_APPLIANCE_SCHEDULER_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "appliance/jobs.h"
#include "appliance/schedule_store.h"
#include "appliance/state_db.h"

namespace haven::appliance {

struct SchedulerOptions {
  // Wall-clock time in milliseconds since the epoch; tests inject theirs.
  std::function<int64_t()> now_ms;
  // Whether a repository is configured (schedules naming another are 400).
  RepositoryKnown repository_known;
  // Optional: the job kinds' validators, so a schedule whose parameters the
  // executor would refuse is refused when it is written, not at 02:00.
  JobValidator validate_job;
  // One line per fired schedule and per failed submission.
  std::function<void(std::string_view)> log;
  // Longest sleep between looks at the clock: a clock changed by hand or
  // by NTP is noticed within this.
  int64_t max_sleep_ms = 30000;
};

// A schedule's run: the calendar's elapse and the time it runs, the
// elapse plus its random delay (unix seconds).
struct ScheduledRun {
  int64_t elapse = 0;
  int64_t run = 0;
};

// The fixed random delay of `schedule_id`'s run for `elapse`: in
// [0, max_delay_seconds], spread evenly, the same on every start.
int64_t RunDelay(int64_t schedule_id, int64_t elapse,
                 int64_t max_delay_seconds);

class Scheduler {
 public:
  // Opens the schedules table. Does not start the thread.
  static Result<std::unique_ptr<Scheduler>> Create(StateDb& db,
                                                   JobService& jobs,
                                                   SchedulerOptions options);
  ~Scheduler();  // Stop()s
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Drops missed runs of non-persistent schedules, registers for ended
  // backups (retention) and starts the timer thread; its first look fires
  // the persistent schedules that missed a run. Stop() joins it; a stopped
  // scheduler does not start again.
  void Start();
  void Stop();

  // The API's operations. Add/Change take the request's JSON
  // (ParseScheduleSpec) and wake the thread.
  Result<Schedule> Add(const nlohmann::json& body);
  Result<Schedule> Change(int64_t id, const nlohmann::json& body);
  Status Remove(int64_t id);
  Result<Schedule> Get(int64_t id);
  Result<std::vector<Schedule>> List();
  // Submits the schedule's job now (its anchor is left alone: the next
  // timed run stays where it was). Returns the job id.
  Result<int64_t> RunNow(int64_t id, const std::string& requested_by);

  // The next `count` runs of `schedule` as the thread will fire them, the
  // first possibly already due; none when disabled or when the calendar
  // never elapses again.
  std::vector<ScheduledRun> NextRuns(const Schedule& schedule, int count);

  // Fires what is due at `now_ms` and returns when the next schedule is due
  // (ms; INT64_MAX when none). The thread's step; public for tests.
  int64_t RunDue(int64_t now_ms);

  int64_t NowMs() const { return options_.now_ms(); }

 private:
  struct EndedBackup {
    int64_t schedule_id;
    std::vector<std::string> vms;  // the VMs it backed up
  };
  // The thread's wake-up and the backups that ended, shared with the
  // JobService's OnJobEnd callback, which may outlive the scheduler.
  struct Signal {
    std::mutex mu;
    std::condition_variable cv;
    bool woken = false, stopping = false, closed = false;
    std::deque<EndedBackup> ended;
  };
  Scheduler(ScheduleStore store, JobService& jobs, SchedulerOptions options);
  Result<ScheduleSpec> Checked(const nlohmann::json& body,
                               const ScheduleSpec* base);
  void Submit(const Schedule& schedule, int64_t elapse);
  void SubmitRetention();
  void Wake();
  void Loop();
  void Say(const std::string& line);

  ScheduleStore store_;
  JobService& jobs_;
  SchedulerOptions options_;
  std::mutex mu_;  // store changes and the thread's look at the schedules
  std::shared_ptr<Signal> signal_ = std::make_shared<Signal>();
  bool started_ = false;
  std::thread thread_;
};

// The JobSpec a schedule's run submits (requested_by "schedule:NAME").
JobSpec ScheduledJob(const Schedule& schedule);

// For `havend init`: adds the schedule "nightly" (daily at 02:00, local
// time; back up every VM into `repository`; persistent; a random delay of
// 0) when no schedule exists. Returns whether it added it.
Result<bool> AddDefaultSchedule(StateDb& db, const std::string& repository,
                                int64_t now_seconds);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_SCHEDULER_H_
