// SqlJobService: the queue, the dispatcher and the job threads. The
// tables and the queries that read them are in job_history.cc.
#include "appliance/job_service.h"

#include <exception>
#include <utility>

#include "appliance/job_json.h"
#include "base/json.h"
#include "base/time.h"

namespace haven::appliance {

// A running job, shared by its thread and the service.
struct SqlJobService::Running {
  JobSpec spec;
  CancelToken cancel;
  std::thread thread;        // moved to finished_ by the job's own end
  std::string cancelled_by;  // a user's Cancel(), "" otherwise
  bool havend_stopping = false;
  std::chrono::steady_clock::time_point started =
      std::chrono::steady_clock::now();

  std::mutex mu;  // below
  int64_t lines = 0;
  bool log_cut = false;
  std::optional<Progress> progress;
  std::chrono::steady_clock::time_point last_event{};
};

class SqlJobService::SubscriptionImpl : public JobService::Subscription {
 public:
  SubscriptionImpl(SqlJobService& s, int64_t id) : s_(s), id_(id) {}
  ~SubscriptionImpl() override {
    std::lock_guard lock(s_.subs_mu_);
    s_.subs_.erase(id_);
  }

 private:
  SqlJobService& s_;
  int64_t id_;
};

namespace {

nlohmann::json StateEventData(int64_t id, const JobSpec& spec, JobState state,
                              const std::string& detail) {
  nlohmann::json d = {{"id", id},
                      {"kind", spec.kind},
                      {"repository", spec.repository},
                      {"state", std::string(JobStateName(state))}};
  if (!detail.empty())
    d[state == JobState::kQueued ? "queue_reason" : "error"] = detail;
  return d;
}

std::string Plural(size_t n, const std::string& what) {
  return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
}

}  // namespace

SqlJobService::SqlJobService(StateDb& db, JobServiceOptions options)
    : db_(db), options_(std::move(options)) {}

SqlJobService::~SqlJobService() { Stop(); }

void SqlJobService::RegisterKind(std::string kind, JobValidator validate,
                                 JobExecutor execute) {
  std::lock_guard lock(mu_);
  kinds_[std::move(kind)] = Kind{std::move(validate), std::move(execute)};
  dirty_ = true;
  wake_.notify_all();
}

void SqlJobService::Start() {
  std::lock_guard lock(mu_);
  if (started_ || stopping_) return;
  started_ = true;
  dirty_ = true;
  dispatcher_ = std::thread([this] { DispatchLoop(); });
}

void SqlJobService::Stop() {
  {
    std::unique_lock lock(mu_);
    if (stopping_ && !dispatcher_.joinable() && running_.empty()) return;
    stopping_ = true;
    for (auto& [id, r] : running_) {
      r->havend_stopping = true;
      r->cancel.Cancel();
    }
    wake_.notify_all();
  }
  // SSE streams end on this event, so the server's stop need not wait for
  // their next keep-alive to find the client gone.
  Emit({Event{0, "end", {{"reason", "havend is stopping"}}}});
  if (dispatcher_.joinable()) dispatcher_.join();
  std::vector<std::thread> threads;
  {
    std::unique_lock lock(mu_);
    wake_.wait(lock, [&] { return running_.empty(); });
    threads.swap(finished_);
  }
  for (auto& t : threads)
    if (t.joinable()) t.join();
}

Result<int64_t> SqlJobService::Submit(JobSpec spec) {
  JobValidator validate;
  {
    std::lock_guard lock(mu_);
    auto it = kinds_.find(spec.kind);
    if (it == kinds_.end())
      return NotFound("there is no job kind " + QuoteUntrusted(spec.kind));
    validate = it->second.validate;
  }
  if (spec.repository.empty())
    return InvalidArgument("a job needs a repository");
  if (options_.repository_exists &&
      !options_.repository_exists(spec.repository))
    return NotFound("no repository called " + QuoteUntrusted(spec.repository) +
                    " is configured");
  if (!spec.params.is_object())
    return InvalidArgument("the job's parameters must be a JSON object");
  if (validate) HAVEN_RETURN_IF_ERROR(validate(spec));
  int64_t id = 0;
  {
    std::lock_guard lock(mu_);
    StateDb::Transaction tx(db_);
    HAVEN_RETURN_IF_ERROR(tx.status());
    SqlValue schedule = std::monostate{};
    if (spec.schedule_id) schedule = *spec.schedule_id;
    HAVEN_RETURN_IF_ERROR(
        db_.Query("INSERT INTO jobs (kind, repository, params, requested_by, "
                  "schedule_id, state, queued_at) VALUES (?1, ?2, ?3, ?4, ?5, "
                  "'queued', ?6)",
                  {spec.kind, spec.repository, DumpJson(spec.params),
                   spec.requested_by, schedule, NowIso8601()})
            .status());
    id = db_.LastInsertId();
    HAVEN_RETURN_IF_ERROR(tx.Commit());
    queue_reasons_[id] = started_ ? "waiting for the dispatcher"
                                  : "waiting for havend to start its jobs";
    AppendLog(id, "queued by " + spec.requested_by);
    Emit({Event{
        id, "state",
        StateEventData(id, spec, JobState::kQueued, queue_reasons_[id])}});
    dirty_ = true;
    wake_.notify_all();
  }
  return id;
}

Status SqlJobService::Cancel(int64_t id, const std::string& by) {
  {
    std::lock_guard lock(mu_);
    if (auto it = running_.find(id); it != running_.end()) {
      Running& r = *it->second;
      if (r.cancelled_by.empty()) {
        r.cancelled_by = by;
        r.cancel.Cancel();
      }
      JobLog(r, id, "cancel requested by " + by);
      return OkStatus();
    }
    HAVEN_ASSIGN_OR_RETURN(
        auto row, db_.QueryOne("SELECT state, kind, repository FROM jobs "
                               "WHERE id = ?1",
                               {id}));
    if (!row) return NotFound("there is no job " + std::to_string(id));
    if (row->Text(0) != "queued")
      return FailedPrecondition("job " + std::to_string(id) +
                                " has already ended (" + row->Text(0) + ")");
    std::string why = "cancelled by " + by + " before it started";
    HAVEN_RETURN_IF_ERROR(
        db_.Query("UPDATE jobs SET state = 'cancelled', ended_at = ?2, "
                  "duration_seconds = 0, error = ?3 WHERE id = ?1 AND "
                  "state = 'queued'",
                  {id, NowIso8601(), why})
            .status());
    queue_reasons_.erase(id);
    JobSpec spec;
    spec.kind = row->Text(1);
    spec.repository = row->Text(2);
    AppendLog(id, why);
    Emit({Event{id, "state",
                StateEventData(id, spec, JobState::kCancelled, why)}});
    dirty_ = true;
    wake_.notify_all();
  }
  return OkStatus();
}

void SqlJobService::DispatchLoop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    wake_.wait(lock, [&] { return dirty_ || stopping_; });
    if (stopping_) break;
    dirty_ = false;
    std::vector<std::thread> done;
    done.swap(finished_);
    std::vector<Event> events;
    DispatchLocked(&events);
    // State events go out under mu_, so subscribers see a job's states in
    // the order they happened.
    Emit(events);
    lock.unlock();
    for (auto& t : done)
      if (t.joinable()) t.join();
    lock.lock();
  }
}

void SqlJobService::DispatchLocked(std::vector<Event>* events) {
  auto rows = db_.Query(
      "SELECT id, kind, repository, params, requested_by, schedule_id FROM "
      "jobs WHERE state = 'queued' ORDER BY id");
  if (!rows.ok()) {
    if (options_.log)
      options_.log("jobs: cannot read the queue: " + rows.status().message());
    return;
  }
  std::map<std::string, int> per_repository;
  for (const auto& [id, r] : running_) ++per_repository[r->spec.repository];
  const auto max_total = static_cast<size_t>(options_.max_jobs);
  std::map<int64_t, std::string> reasons;
  for (const SqlRow& row : *rows) {
    int64_t id = row.Int(0);
    JobSpec spec;
    spec.kind = row.Text(1);
    spec.repository = row.Text(2);
    spec.params = nlohmann::json::parse(row.Text(3), nullptr, false);
    if (!spec.params.is_object()) spec.params = nlohmann::json::object();
    spec.requested_by = row.Text(4);
    if (!row.IsNull(5)) spec.schedule_id = row.Int(5);
    int on_repo = per_repository[spec.repository];
    std::string reason;
    if (running_.size() >= max_total) {
      reason = "waiting: " + Plural(running_.size(), "job") +
               " running, at most " + std::to_string(max_total) + " at once";
    } else if (on_repo >= options_.max_jobs_per_repository) {
      reason = "waiting: " + Plural(on_repo, "job") +
               " already running on "
               "repository " +
               spec.repository;
    }
    if (!reason.empty()) {
      if (queue_reasons_[id] != reason)
        events->push_back(Event{
            id, "state", StateEventData(id, spec, JobState::kQueued, reason)});
      reasons[id] = reason;
      continue;
    }
    auto kind = kinds_.find(spec.kind);
    std::string now = NowIso8601();
    if (kind == kinds_.end()) {
      // A job queued by an earlier havend for a kind this one lacks.
      std::string why = "this havend cannot run jobs of kind " + spec.kind;
      (void)db_.Query(
          "UPDATE jobs SET state = 'failed', started_at = ?2, ended_at = ?2, "
          "duration_seconds = 0, error = ?3 WHERE id = ?1",
          {id, now, why});
      events->push_back(
          Event{id, "state", StateEventData(id, spec, JobState::kFailed, why)});
      continue;
    }
    Status s = db_.Query(
                      "UPDATE jobs SET state = 'running', started_at = ?2 "
                      "WHERE id = ?1 AND state = 'queued'",
                      {id, now})
                   .status();
    if (!s.ok()) {
      reasons[id] = "waiting: the state database failed: " + s.message();
      continue;
    }
    auto running = std::make_shared<Running>();
    running->spec = spec;
    running_[id] = running;
    ++per_repository[spec.repository];
    AppendLog(id, "started");
    events->push_back(
        Event{id, "state", StateEventData(id, spec, JobState::kRunning, "")});
    running->thread =
        std::thread([this, id, spec, running] { RunJob(id, spec, running); });
  }
  queue_reasons_ = std::move(reasons);
}

void SqlJobService::RunJob(int64_t id, JobSpec spec,
                           std::shared_ptr<Running> running) {
  JobExecutor execute;
  {
    std::lock_guard lock(mu_);
    execute = kinds_.at(spec.kind).execute;
  }
  if (options_.log)
    options_.log("job " + std::to_string(id) + " (" + spec.kind + " on " +
                 spec.repository + ") started");
  JobContext ctx;
  ctx.job_id = id;
  ctx.cancel = running->cancel;
  Running* r = running.get();
  ctx.log = [this, r, id](const std::string& line) { JobLog(*r, id, line); };
  ctx.progress = [this, r, id](const Progress& p) { JobProgress(*r, id, p); };
  JobOutcome outcome;
  try {
    outcome = execute(spec, ctx);
  } catch (const std::exception& e) {
    // Executors do not throw; should one, the daemon outlives it.
    outcome = JobOutcome{};
    outcome.error = std::string("the job failed unexpectedly: ") + e.what();
  }
  double duration = std::chrono::duration<double>(
                        std::chrono::steady_clock::now() - running->started)
                        .count();
  {
    std::lock_guard lock(mu_);
    if (running->havend_stopping && (outcome.state == JobState::kCancelled ||
                                     outcome.state == JobState::kFailed)) {
      outcome.state = JobState::kInterrupted;
      outcome.error = "havend stopped while this job ran" +
                      (outcome.error.empty() ? "" : ": " + outcome.error);
    } else if (!running->cancelled_by.empty() &&
               outcome.state == JobState::kFailed) {
      outcome.state = JobState::kCancelled;
    }
    if (outcome.state == JobState::kCancelled && !running->cancelled_by.empty())
      outcome.error = "cancelled by " + running->cancelled_by +
                      (outcome.error.empty() ? "" : ": " + outcome.error);
    if (outcome.state == JobState::kQueued ||
        outcome.state == JobState::kRunning)
      outcome.state = JobState::kFailed;  // an executor's mistake
    std::string line = "ended: " + std::string(JobStateName(outcome.state));
    if (!outcome.error.empty()) line += ": " + outcome.error;
    AppendLog(id, line);
    Status s = StoreOutcome(id, outcome, NowIso8601(), duration);
    if (!s.ok() && options_.log)
      options_.log("job " + std::to_string(id) +
                   ": cannot store its outcome: " + s.message());
    Emit({Event{id, "state",
                StateEventData(id, spec, outcome.state, outcome.error)}});
    finished_.push_back(std::move(running->thread));
    running_.erase(id);
    dirty_ = true;
    wake_.notify_all();
  }
  if (options_.log)
    options_.log("job " + std::to_string(id) + " ended " +
                 std::string(JobStateName(outcome.state)));
  std::vector<std::function<void(const JobRecord&)>> callbacks;
  {
    std::lock_guard lock(mu_);
    callbacks = on_end_;
  }
  if (callbacks.empty()) return;
  auto record = Get(id);
  if (!record.ok()) return;
  for (const auto& cb : callbacks) cb(*record);
}

void SqlJobService::JobLog(Running& running, int64_t id,
                           const std::string& line) {
  {
    std::lock_guard lock(running.mu);
    if (running.log_cut) return;
    if (++running.lines > options_.max_log_lines) {
      running.log_cut = true;
      AppendLog(id, "the log is cut here: a job keeps at most " +
                        std::to_string(options_.max_log_lines) +
                        " lines; later lines are dropped");
      return;
    }
  }
  if (line.size() > options_.max_log_line)
    AppendLog(id, line.substr(0, options_.max_log_line) + " [line cut]");
  else
    AppendLog(id, line);
}

void SqlJobService::JobProgress(Running& running, int64_t id,
                                const Progress& p) {
  Event event{id, "progress", {}};
  {
    std::lock_guard lock(running.mu);
    running.progress = p;
    auto now = std::chrono::steady_clock::now();
    if (!p.final && now - running.last_event < options_.progress_interval)
      return;
    running.last_event = now;
  }
  event.data = ProgressJson(id, p);
  Emit({event});
}

void SqlJobService::FillLiveLocked(JobRecord& record,
                                   std::chrono::steady_clock::time_point now) {
  auto it = running_.find(record.id);
  if (it == running_.end()) return;
  Running& run = *it->second;
  record.duration_seconds =
      std::chrono::duration<double>(now - run.started).count();
  std::lock_guard lock(run.mu);
  record.progress = run.progress;
}

std::unique_ptr<JobService::Subscription> SqlJobService::Subscribe(
    std::function<void(const Event&)> on_event) {
  std::lock_guard lock(mu_);  // stopping_; subs_mu_ is taken after it
  std::lock_guard subs_lock(subs_mu_);
  // A subscriber that comes while havend stops is told at once, not left
  // waiting for events that will not come.
  if (stopping_) on_event(Event{0, "end", {{"reason", "havend is stopping"}}});
  int64_t id = next_sub_++;
  subs_[id] = std::move(on_event);
  return std::make_unique<SubscriptionImpl>(*this, id);
}

void SqlJobService::OnJobEnd(std::function<void(const JobRecord&)> callback) {
  std::lock_guard lock(mu_);
  on_end_.push_back(std::move(callback));
}

void SqlJobService::Emit(const std::vector<Event>& events) {
  if (events.empty()) return;
  std::lock_guard lock(subs_mu_);
  for (const Event& e : events)
    for (const auto& [id, fn] : subs_) fn(e);
}

}  // namespace haven::appliance
