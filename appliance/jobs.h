// Jobs in havend: every piece of long work (a backup, forget, gc, check, a
// restore) is a job with an id, a state, a log, live progress and a typed
// result, kept in the state database so history survives restarts.
//
//   Submit(spec) -> id at once (state queued)
//   a runner thread takes queued jobs in order while the limits allow
//   (jobs at once in total, and per repository), runs the kind's executor
//   (which calls the core library: agent::BackupHost, repository::Forget,
//   ...), streams its progress to subscribers and its log lines to the
//   database, and stores the outcome.
//
// States: queued -> running -> succeeded | partial | failed | cancelled;
// a job found running or queued-and-started when havend starts is marked
// interrupted (its repository is as after any crash). Queued jobs that
// never started are kept queued across a restart.
#ifndef HAVEN_APPLIANCE_JOBS_H_
#define HAVEN_APPLIANCE_JOBS_H_

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/progress.h"
#include "base/status.h"

namespace haven::appliance {

enum class JobState {
  kQueued,
  kRunning,
  kSucceeded,
  kPartial,  // finished, some items (VMs) failed: exit code 3's meaning
  kFailed,
  kCancelled,
  kInterrupted,  // havend stopped or died while it ran
};
std::string_view JobStateName(JobState state);
std::optional<JobState> ParseJobState(std::string_view name);

// What to run. `kind` names a registered executor: "backup", "forget",
// "gc", "check", "restore-vm", "restore-host", "restore-files".
struct JobSpec {
  std::string kind;
  std::string repository;  // a configured repository's name
  nlohmann::json params = nlohmann::json::object();  // the kind's request
  std::string requested_by;  // Caller::name or "schedule:NAME"
  std::optional<int64_t> schedule_id;
};

// One item of a job's result (a VM of a host backup, a restored VM).
struct JobItem {
  std::string name;
  std::string outcome;  // base/outcome.h names: "ok", "failed", ...
  std::string error;    // empty when ok
  uint64_t read_bytes = 0, new_bytes = 0, stored_bytes = 0;
  nlohmann::json detail = nlohmann::json::object();  // the core's report
};

struct JobOutcome {
  JobState state = JobState::kFailed;
  std::string error;  // one sentence for failed / partial / cancelled
  std::vector<JobItem> items;
  uint64_t read_bytes = 0, new_bytes = 0, stored_bytes = 0;
  nlohmann::json result = nlohmann::json::object();  // the core's JSON
};

// What an executor gets while it runs.
struct JobContext {
  int64_t job_id = 0;
  CancelToken cancel;
  // Thread-safe; each line is stored with the job and shown by /log.
  std::function<void(const std::string&)> log;
  // Thread-safe; forwarded to SSE subscribers (rate-limited there).
  ProgressFn progress;
};

// Runs one job of a kind to the end and says how it went; never throws.
using JobExecutor = std::function<JobOutcome(const JobSpec&, JobContext&)>;
// Checks a spec's params before it is queued (InvalidArgument naming the
// bad field), so a bad request is refused with 400, not queued to fail.
using JobValidator = std::function<Status(const JobSpec&)>;

// A job as the API shows it.
struct JobRecord {
  int64_t id = 0;
  JobSpec spec;
  JobState state = JobState::kQueued;
  std::string queued_at, started_at, ended_at;  // ISO 8601 UTC, "" unset
  double duration_seconds = 0;
  std::string queue_reason;          // while queued: why it waits
  JobOutcome outcome;                // once ended
  std::optional<Progress> progress;  // while running: the last event
};

struct JobFilter {
  std::optional<JobState> state;
  std::string kind, repository;
  std::string since;        // ISO 8601: jobs queued at or after
  int64_t schedule_id = 0;  // 0: any
  size_t limit = 100;
  int64_t before_id = 0;  // paging: jobs with a smaller id; 0: newest
};

class JobService {
 public:
  virtual ~JobService() = default;
  virtual void RegisterKind(std::string kind, JobValidator validate,
                            JobExecutor execute) = 0;
  // Validates and queues; the id at once. NotFound for an unknown kind or
  // repository, InvalidArgument from the validator.
  virtual Result<int64_t> Submit(JobSpec spec) = 0;
  // Cancels a queued job (it never runs) or asks a running one to stop.
  // NotFound for an unknown id; FailedPrecondition for an ended job.
  virtual Status Cancel(int64_t id, const std::string& by) = 0;
  virtual Result<JobRecord> Get(int64_t id) = 0;
  // Newest first; each record without its items and result (Get has them).
  virtual Result<std::vector<JobRecord>> List(const JobFilter& filter) = 0;
  // Log lines after line number `after` (0: from the start), with numbers.
  virtual Result<std::vector<std::pair<int64_t, std::string>>> Log(
      int64_t id, int64_t after) = 0;
  // Progress of running jobs and state changes of every job, as they
  // happen, until the returned handle is destroyed.
  struct Event {
    int64_t job_id;
    std::string type;  // "progress" | "state" | "end" (havend stops)
    nlohmann::json data;
  };
  class Subscription {
   public:
    virtual ~Subscription() = default;
  };
  virtual std::unique_ptr<Subscription> Subscribe(
      std::function<void(const Event&)> on_event) = 0;
  // Called when a job ends (notifications, metrics).
  virtual void OnJobEnd(std::function<void(const JobRecord&)> callback) = 0;
};

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_JOBS_H_
