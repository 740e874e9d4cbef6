// A JobService for unit tests of the scheduler's logic: it runs nothing,
// records every submission with the wall-clock time it arrived, and lets
// a test end a job (OnJobEnd callbacks) by hand.
#ifndef HAVEN_TESTS_UNIT_FAKE_JOB_SERVICE_H_
#define HAVEN_TESTS_UNIT_FAKE_JOB_SERVICE_H_

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <vector>

#include "appliance/jobs.h"

namespace haven::appliance {

class FakeJobService : public JobService {
 public:
  struct Submission {
    JobSpec spec;
    int64_t id;
    int64_t at_ms;  // system_clock when Submit was called
  };

  void RegisterKind(std::string, JobValidator, JobExecutor) override {}
  Result<int64_t> Submit(JobSpec spec) override {
    if (before_submit) {
      Status s = before_submit(spec);
      if (!s.ok()) return s;
    }
    std::lock_guard lock(mu_);
    int64_t id = ++next_id_;
    int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
    submissions_.push_back({std::move(spec), id, now});
    cv_.notify_all();
    return id;
  }
  Status Cancel(int64_t, const std::string&) override { return OkStatus(); }
  Result<JobRecord> Get(int64_t id) override {
    return NotFound("job " + std::to_string(id));
  }
  Result<std::vector<JobRecord>> List(const JobFilter&) override {
    return std::vector<JobRecord>{};
  }
  Result<std::vector<std::pair<int64_t, std::string>>> Log(int64_t,
                                                           int64_t) override {
    return std::vector<std::pair<int64_t, std::string>>{};
  }
  std::unique_ptr<Subscription> Subscribe(
      std::function<void(const Event&)>) override {
    return nullptr;
  }
  void OnJobEnd(std::function<void(const JobRecord&)> callback) override {
    std::lock_guard lock(mu_);
    on_end_.push_back(std::move(callback));
  }

  // Tells the OnJobEnd callbacks that `record` ended.
  void End(const JobRecord& record) {
    std::vector<std::function<void(const JobRecord&)>> callbacks;
    {
      std::lock_guard lock(mu_);
      callbacks = on_end_;
    }
    for (auto& cb : callbacks) cb(record);
  }

  std::vector<Submission> submissions() {
    std::lock_guard lock(mu_);
    return submissions_;
  }
  // Waits up to `timeout_ms` until at least `n` jobs were submitted.
  bool WaitFor(size_t n, int64_t timeout_ms) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                        [&] { return submissions_.size() >= n; });
  }

  // Called first by Submit; a non-OK status refuses the job.
  std::function<Status(const JobSpec&)> before_submit;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t next_id_ = 0;
  std::vector<Submission> submissions_;
  std::vector<std::function<void(const JobRecord&)>> on_end_;
};

}  // namespace haven::appliance

#endif  // HAVEN_TESTS_UNIT_FAKE_JOB_SERVICE_H_
