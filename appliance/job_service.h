// SqlJobService: the JobService of appliance/jobs.h over the state
// database (tables jobs, job_items, job_log; schema in job_service.cc and
// docs/appliance.md, "Jobs").
//
//   Create():  tables made if missing; every job left "running" by an
//              earlier havend is marked "interrupted" (ended_at, a log
//              line); queued jobs stay queued
//   Start():   the dispatcher thread: whenever a job is queued or ends it
//              walks the queued jobs oldest first and starts each one the
//              limits allow (max_jobs in total, max_jobs_per_repository
//              per repository) on a thread of its own; the others get a
//              queue_reason ("waiting: 1 job already running on
//              repository main")
//   job:       executor(spec, context) -> outcome stored with its items in
//              one transaction; subscribers get "state" events and
//              rate-limited "progress" events; OnJobEnd callbacks run
//   Stop():    tells subscribers to finish (an "end" event), cancels the
//              running jobs, waits for them and records them interrupted
//              (havend stopped while they ran); queued ones stay queued
//
// Thread-safe. Every state change happens under one mutex, so a job is
// never both cancelled while queued and started.
#ifndef HAVEN_APPLIANCE_JOB_SERVICE_H_
#define HAVEN_APPLIANCE_JOB_SERVICE_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "appliance/jobs.h"
#include "appliance/state_db.h"

namespace haven::appliance {

struct JobServiceOptions {
  int max_jobs = 2;                 // running at once in total (>= 1)
  int max_jobs_per_repository = 1;  // ... and into one repository (>= 1)
  // Whether a repository of this name is configured; unset: any name.
  std::function<bool(std::string_view)> repository_exists;
  // Lines an executor may log per job; the rest is dropped, and the log
  // says so once. Lines longer than max_log_line are cut.
  int64_t max_log_lines = 10000;
  size_t max_log_line = 2000;
  // Progress events of one job reach subscribers at most this often (the
  // last one of an item, `final`, always does).
  std::chrono::milliseconds progress_interval{250};
  // Messages of the service itself (job started, ended); may be unset.
  std::function<void(std::string_view)> log;
};

class SqlJobService : public JobService {
 public:
  // Makes the tables and marks jobs left running as interrupted. Fails
  // with the database's error, or InvalidArgument for limits below 1.
  static Result<std::unique_ptr<SqlJobService>> Create(
      StateDb& db, JobServiceOptions options);
  ~SqlJobService() override;  // Stop()
  SqlJobService(const SqlJobService&) = delete;
  SqlJobService& operator=(const SqlJobService&) = delete;

  // Starts the dispatcher (queued jobs, including those kept from an
  // earlier run, start now). Call after every RegisterKind.
  void Start();
  // See the file comment. Idempotent; not from an executor.
  void Stop();

  void RegisterKind(std::string kind, JobValidator validate,
                    JobExecutor execute) override;
  Result<int64_t> Submit(JobSpec spec) override;
  Status Cancel(int64_t id, const std::string& by) override;
  Result<JobRecord> Get(int64_t id) override;
  Result<std::vector<JobRecord>> List(const JobFilter& filter) override;
  Result<std::vector<std::pair<int64_t, std::string>>> Log(
      int64_t id, int64_t after) override;
  std::unique_ptr<Subscription> Subscribe(
      std::function<void(const Event&)> on_event) override;
  void OnJobEnd(std::function<void(const JobRecord&)> callback) override;

  // Jobs marked interrupted by Create() (for havend's start-up message).
  int64_t interrupted_at_start() const { return interrupted_at_start_; }

 private:
  struct Kind {
    JobValidator validate;
    JobExecutor execute;
  };
  struct Running;  // a job's thread, cancel token, log count, progress
  class SubscriptionImpl;

  SqlJobService(StateDb& db, JobServiceOptions options);
  Status MarkInterruptedAtStart();
  void DispatchLoop();
  // One pass over the queued jobs (mu_ held): starts what the limits allow.
  void DispatchLocked(std::vector<Event>* events);
  void RunJob(int64_t id, JobSpec spec, std::shared_ptr<Running> running);
  Status StoreOutcome(int64_t id, const JobOutcome& outcome,
                      const std::string& ended_at, double duration);
  void AppendLog(int64_t id, const std::string& line);
  void JobLog(Running& running, int64_t id, const std::string& line);
  void JobProgress(Running& running, int64_t id, const Progress& p);
  void Emit(const std::vector<Event>& events);
  // A running job's duration so far and last progress (mu_ held).
  void FillLiveLocked(JobRecord& record,
                      std::chrono::steady_clock::time_point now);
  Result<std::vector<JobRecord>> Records(const std::string& where,
                                         const std::vector<SqlValue>& params,
                                         const std::string& tail,
                                         bool with_result);

  StateDb& db_;
  const JobServiceOptions options_;
  int64_t interrupted_at_start_ = 0;

  std::mutex mu_;  // below, and every job state change
  std::condition_variable wake_;
  std::map<std::string, Kind> kinds_;
  std::map<int64_t, std::shared_ptr<Running>> running_;
  std::map<int64_t, std::string> queue_reasons_;
  std::vector<std::thread> finished_;  // job threads to join
  std::thread dispatcher_;
  bool started_ = false, stopping_ = false, dirty_ = false;
  std::vector<std::function<void(const JobRecord&)>> on_end_;

  std::mutex subs_mu_;  // subscribers; taken after mu_, never before
  std::map<int64_t, std::function<void(const Event&)>> subs_;
  int64_t next_sub_ = 1;
};

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_JOB_SERVICE_H_
