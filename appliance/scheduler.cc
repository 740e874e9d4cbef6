#include "appliance/scheduler.h"

#include <algorithm>
#include <chrono>
#include <climits>

#include "base/time.h"

namespace haven::appliance {
namespace {

int64_t SystemNowMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch())
      .count();
}

int64_t FloorSeconds(int64_t ms) {
  return ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
}

std::string Iso(int64_t seconds) {
  return FormatTime(seconds * 1000000000, TimeStyle::kRfc3339Utc);
}

// SplitMix64's finalizer: a well-mixed, fixed function of its input.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// The first run of `s` whose elapse is strictly after `after`.
std::optional<ScheduledRun> RunAfter(const Schedule& s,
                                     const CalendarEvent& event,
                                     int64_t after) {
  std::optional<int64_t> elapse = NextElapse(event, after);
  if (!elapse) return std::nullopt;
  return ScheduledRun{
      *elapse, *elapse + RunDelay(s.id, *elapse, s.spec.random_delay_seconds)};
}

// The run of `s` the thread waits for at `now`: the first elapse after its
// anchor, or, when the clock was set back behind the anchor, the first from
// now on; never the elapse it last ran for again.
std::optional<ScheduledRun> NextDue(const Schedule& s,
                                    const CalendarEvent& event, int64_t now) {
  int64_t from = s.anchor > now ? now - 1 : s.anchor;
  auto run = RunAfter(s, event, from);
  if (run && s.last_elapse != 0 && run->elapse == s.last_elapse)
    run = RunAfter(s, event, run->elapse);
  return run;
}

}  // namespace

int64_t RunDelay(int64_t schedule_id, int64_t elapse,
                 int64_t max_delay_seconds) {
  if (max_delay_seconds <= 0) return 0;
  uint64_t h = Mix(Mix(static_cast<uint64_t>(schedule_id)) ^
                   static_cast<uint64_t>(elapse));
  return static_cast<int64_t>(h % static_cast<uint64_t>(max_delay_seconds + 1));
}

JobSpec ScheduledJob(const Schedule& schedule) {
  JobSpec job;
  job.kind = schedule.spec.kind;
  job.repository = schedule.spec.repository;
  job.params = schedule.spec.params;
  job.requested_by = "schedule:" + schedule.spec.name;
  job.schedule_id = schedule.id;
  return job;
}

Result<std::unique_ptr<Scheduler>> Scheduler::Create(StateDb& db,
                                                     JobService& jobs,
                                                     SchedulerOptions options) {
  HAVEN_ASSIGN_OR_RETURN(ScheduleStore store, ScheduleStore::Open(db));
  if (!options.now_ms) options.now_ms = SystemNowMs;
  if (!options.repository_known)
    options.repository_known = [](std::string_view) { return false; };
  if (options.max_sleep_ms <= 0) options.max_sleep_ms = 30000;
  return std::unique_ptr<Scheduler>(
      new Scheduler(std::move(store), jobs, std::move(options)));
}

Scheduler::Scheduler(ScheduleStore store, JobService& jobs,
                     SchedulerOptions options)
    : store_(std::move(store)), jobs_(jobs), options_(std::move(options)) {}

Scheduler::~Scheduler() {
  Stop();
  std::lock_guard lock(signal_->mu);
  signal_->closed = true;  // an OnJobEnd after this finds nobody to tell
}

void Scheduler::Say(const std::string& line) {
  if (options_.log) options_.log(line);
}

void Scheduler::Start() {
  {
    std::lock_guard lock(signal_->mu);
    if (started_ || signal_->stopping) return;
    started_ = true;
  }
  Status s = store_.SkipMissedRuns(FloorSeconds(options_.now_ms()));
  if (!s.ok()) Say("scheduler: " + s.message());
  // Backups of a schedule with a retention policy are followed by a forget
  // of the VMs they backed up; the thread submits it (never this callback,
  // which runs inside the job service).
  jobs_.OnJobEnd([signal = signal_](const JobRecord& r) {
    if (r.spec.kind != "backup" || !r.spec.schedule_id) return;
    if (r.state != JobState::kSucceeded && r.state != JobState::kPartial)
      return;
    EndedBackup ended{*r.spec.schedule_id, {}};
    for (const JobItem& item : r.outcome.items)
      if (item.outcome == "ok") ended.vms.push_back(item.name);
    std::lock_guard lock(signal->mu);
    if (signal->closed) return;
    signal->ended.push_back(std::move(ended));
    signal->woken = true;
    signal->cv.notify_all();
  });
  thread_ = std::thread([this] { Loop(); });
}

void Scheduler::Stop() {
  {
    std::lock_guard lock(signal_->mu);
    signal_->stopping = true;
    signal_->cv.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void Scheduler::Wake() {
  std::lock_guard lock(signal_->mu);
  signal_->woken = true;
  signal_->cv.notify_all();
}

void Scheduler::Loop() {
  for (;;) {
    {
      std::lock_guard lock(signal_->mu);
      if (signal_->stopping) return;
    }
    int64_t next = RunDue(options_.now_ms());
    int64_t wait = options_.max_sleep_ms;
    if (next != INT64_MAX)
      wait = std::clamp<int64_t>(next - options_.now_ms(), 0, wait);
    std::unique_lock lock(signal_->mu);
    signal_->cv.wait_for(lock, std::chrono::milliseconds(wait),
                         [&] { return signal_->stopping || signal_->woken; });
    signal_->woken = false;
  }
}

int64_t Scheduler::RunDue(int64_t now_ms) {
  SubmitRetention();
  int64_t now = FloorSeconds(now_ms);
  int64_t next = INT64_MAX;
  std::vector<std::pair<ScheduledRun, Schedule>> due;
  {
    std::lock_guard lock(mu_);
    auto list = store_.List();
    if (!list.ok()) {
      Say("scheduler: " + list.status().message());
      return now_ms + 1000;  // look again soon
    }
    for (const Schedule& s : *list) {
      if (!s.spec.enabled) continue;
      auto event = ParseCalendar(s.spec.calendar);
      if (!event.ok()) continue;  // checked when written
      auto run = NextDue(s, *event, now);
      if (!run) continue;
      if (run->run > now) {
        next = std::min(next, run->run * 1000);
        continue;
      }
      due.emplace_back(*run, s);
      // Fired now, it counts its next run from now.
      if (auto after = RunAfter(s, *event, now))
        next = std::min(next, after->run * 1000);
    }
    std::sort(due.begin(), due.end(), [](const auto& a, const auto& b) {
      return a.first.run != b.first.run ? a.first.run < b.first.run
                                        : a.second.id < b.second.id;
    });
    // Durable before the job exists: a crash in between loses this run
    // rather than running it twice.
    for (auto it = due.begin(); it != due.end();) {
      Status s = store_.MarkTriggered(it->second.id, it->first.elapse, now);
      if (s.ok()) {
        ++it;
        continue;
      }
      Say("schedule " + it->second.spec.name + ": not run: " + s.message());
      next = std::min(next, now_ms + 1000);
      it = due.erase(it);
    }
  }
  for (const auto& [run, schedule] : due) Submit(schedule, run.elapse);
  return next;
}

void Scheduler::Submit(const Schedule& schedule, int64_t elapse) {
  auto job = jobs_.Submit(ScheduledJob(schedule));
  std::string what = schedule.spec.kind + " of repository " +
                     schedule.spec.repository + " for " + Iso(elapse);
  Status recorded;
  if (job.ok()) {
    Say("schedule " + schedule.spec.name + ": job " + std::to_string(*job) +
        ", " + what);
    recorded = store_.RecordSubmission(schedule.id, *job, "");
  } else {
    Say("schedule " + schedule.spec.name + ": could not submit the " + what +
        ": " + job.status().message());
    recorded = store_.RecordSubmission(schedule.id, 0, job.status().message());
  }
  if (!recorded.ok()) Say("scheduler: " + recorded.message());
}

void Scheduler::SubmitRetention() {
  std::deque<EndedBackup> ended;
  {
    std::lock_guard lock(signal_->mu);
    ended.swap(signal_->ended);
  }
  for (const EndedBackup& e : ended) {
    auto s = store_.Get(e.schedule_id);
    if (!s.ok() || s->spec.retention.is_null() || s->spec.kind != "backup")
      continue;
    if (e.vms.empty()) {
      Say("schedule " + s->spec.name +
          ": no VM backed up, retention not applied");
      continue;
    }
    // One forget per VM: retention applies per backup name, and only to
    // the VMs this schedule backs up, never to the repository's others.
    for (const std::string& vm : e.vms) {
      JobSpec forget;
      forget.kind = "forget";
      forget.repository = s->spec.repository;
      forget.params = s->spec.retention;
      forget.params["name"] = vm;
      forget.requested_by = "schedule:" + s->spec.name;
      forget.schedule_id = s->id;
      auto job = jobs_.Submit(std::move(forget));
      if (job.ok()) {
        Say("schedule " + s->spec.name + ": retention: job " +
            std::to_string(*job) + ", forget of " + vm);
        continue;
      }
      Say("schedule " + s->spec.name + ": retention of " + vm +
          ": could not submit: " + job.status().message());
      (void)store_.RecordSubmission(s->id, s->last_job_id,
                                    "retention: " + job.status().message());
    }
  }
}

Result<ScheduleSpec> Scheduler::Checked(const nlohmann::json& body,
                                        const ScheduleSpec* base) {
  HAVEN_ASSIGN_OR_RETURN(
      ScheduleSpec spec,
      ParseScheduleSpec(body, base, options_.repository_known));
  if (options_.validate_job) {
    Schedule probe;
    probe.spec = spec;
    Status s = options_.validate_job(ScheduledJob(probe));
    if (!s.ok()) return InvalidArgument("params: " + s.message());
  }
  return spec;
}

Result<Schedule> Scheduler::Add(const nlohmann::json& body) {
  HAVEN_ASSIGN_OR_RETURN(ScheduleSpec spec, Checked(body, nullptr));
  Result<Schedule> added = [&]() -> Result<Schedule> {
    std::lock_guard lock(mu_);
    return store_.Insert(spec, FloorSeconds(options_.now_ms()));
  }();
  if (added.ok()) Wake();
  return added;
}

Result<Schedule> Scheduler::Change(int64_t id, const nlohmann::json& body) {
  std::unique_lock lock(mu_);
  HAVEN_ASSIGN_OR_RETURN(Schedule old, store_.Get(id));
  lock.unlock();
  HAVEN_ASSIGN_OR_RETURN(ScheduleSpec spec, Checked(body, &old.spec));
  lock.lock();
  auto changed = store_.Update(id, spec, FloorSeconds(options_.now_ms()));
  lock.unlock();
  if (changed.ok()) Wake();
  return changed;
}

Status Scheduler::Remove(int64_t id) {
  std::lock_guard lock(mu_);
  return store_.Delete(id);
}

Result<Schedule> Scheduler::Get(int64_t id) {
  std::lock_guard lock(mu_);
  return store_.Get(id);
}

Result<std::vector<Schedule>> Scheduler::List() {
  std::lock_guard lock(mu_);
  return store_.List();
}

Result<int64_t> Scheduler::RunNow(int64_t id, const std::string& requested_by) {
  HAVEN_ASSIGN_OR_RETURN(Schedule s, Get(id));
  JobSpec job = ScheduledJob(s);
  job.requested_by = requested_by;
  HAVEN_ASSIGN_OR_RETURN(int64_t job_id, jobs_.Submit(std::move(job)));
  Say("schedule " + s.spec.name + ": job " + std::to_string(job_id) +
      " run now by " + requested_by);
  return job_id;
}

std::vector<ScheduledRun> Scheduler::NextRuns(const Schedule& schedule,
                                              int count) {
  std::vector<ScheduledRun> out;
  if (!schedule.spec.enabled) return out;
  auto event = ParseCalendar(schedule.spec.calendar);
  if (!event.ok()) return out;
  int64_t now = FloorSeconds(options_.now_ms());
  auto run = NextDue(schedule, *event, now);
  while (run && static_cast<int>(out.size()) < count) {
    out.push_back(*run);
    // The thread fires it at its run time (or now, when already due) and
    // counts the next elapse from then.
    run = RunAfter(schedule, *event, std::max(run->run, now));
  }
  return out;
}

Result<bool> AddDefaultSchedule(StateDb& db, const std::string& repository,
                                int64_t now_seconds) {
  HAVEN_ASSIGN_OR_RETURN(ScheduleStore store, ScheduleStore::Open(db));
  HAVEN_ASSIGN_OR_RETURN(int64_t count, store.Count());
  if (count > 0) return false;
  nlohmann::json body = {{"name", "nightly"},
                         {"calendar", "*-*-* 02:00:00"},
                         {"kind", "backup"},
                         {"repository", repository},
                         {"params", {{"all", true}}}};
  HAVEN_ASSIGN_OR_RETURN(
      ScheduleSpec spec,
      ParseScheduleSpec(body, nullptr, [&](std::string_view name) {
        return name == repository;
      }));
  HAVEN_RETURN_IF_ERROR(store.Insert(spec, now_seconds).status());
  return true;
}

}  // namespace haven::appliance
