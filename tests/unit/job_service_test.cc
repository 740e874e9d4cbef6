// The job service's logic (appliance/job_service.h) over a real SQLite
// state database, with small fake executors that wait on a gate: the
// limits and queue_reason, cancel of queued and running jobs, interrupted
// marking at reopen, history and log surviving reopen, the log cap,
// rate-limited progress, and stop.
#include "appliance/job_service.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "tests/unit/test_util.h"

namespace haven::appliance {
namespace {

using ::testing::HasSubstr;
using testing_util::StatusIs;
using testing_util::TempDir;

// Opened by the test; a job waiting on it also stops when cancelled.
class Gate {
 public:
  void Open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  // True when opened, false when `cancel` fired first.
  bool Wait(const CancelToken& cancel) {
    std::unique_lock lock(mu_);
    while (!open_) {
      if (cancel.cancelled()) return false;
      cv_.wait_for(lock, std::chrono::milliseconds(5));
    }
    return true;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

struct Fixture {
  TempDir dir;
  std::unique_ptr<StateDb> db;
  std::unique_ptr<SqlJobService> jobs;
  std::map<std::string, std::shared_ptr<Gate>> gates;  // by repository
  std::atomic<int> runs{0};

  void Open(JobServiceOptions o = {}) {
    auto d = StateDb::Open(dir.Sub("havend.db"));
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    db = std::move(*d);
    if (!o.repository_exists)
      o.repository_exists = [](std::string_view n) { return n != "nope"; };
    auto j = SqlJobService::Create(*db, o);
    ASSERT_TRUE(j.ok()) << j.status().ToString();
    jobs = std::move(*j);
    // "wait": waits for its repository's gate; ends with one item.
    jobs->RegisterKind(
        "wait",
        [](const JobSpec& s) {
          return s.params.contains("bad") ? InvalidArgument("bad is bad")
                                          : OkStatus();
        },
        [this](const JobSpec& s, JobContext& ctx) {
          ++runs;
          ctx.log("waiting on " + s.repository);
          JobOutcome o;
          if (!GateOf(s.repository)->Wait(ctx.cancel)) {
            o.state = JobState::kCancelled;
            return o;
          }
          o.state = JobState::kSucceeded;
          o.items.push_back({"vm1", "ok", "", 10, 4, 2, {{"k", 1}}});
          o.read_bytes = 10;
          o.new_bytes = 4;
          o.stored_bytes = 2;
          o.result = {{"done", true}};
          return o;
        });
  }
  void Close() {
    jobs.reset();
    db.reset();
  }
  std::shared_ptr<Gate> GateOf(const std::string& repo) {
    static std::mutex mu;
    std::lock_guard lock(mu);
    auto& g = gates[repo];
    if (!g) g = std::make_shared<Gate>();
    return g;
  }
  int64_t Submit(const std::string& repo, nlohmann::json params = {}) {
    JobSpec s;
    s.kind = "wait";
    s.repository = repo;
    s.params = params.is_null() ? nlohmann::json::object() : params;
    s.requested_by = "test";
    auto id = jobs->Submit(s);
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    return id.ok() ? *id : -1;
  }
  JobRecord Get(int64_t id) {
    auto r = jobs->Get(id);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : JobRecord{};
  }
  // Waits up to 5 s for job `id` to reach `state`.
  JobRecord WaitFor(int64_t id, JobState state) {
    JobRecord r;
    for (int i = 0; i < 500; ++i) {
      r = Get(id);
      if (r.state == state) return r;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ADD_FAILURE() << "job " << id << " is " << JobStateName(r.state) << ", not "
                  << JobStateName(state);
    return r;
  }
  std::string LogText(int64_t id) {
    auto lines = jobs->Log(id, 0);
    EXPECT_TRUE(lines.ok());
    std::string all;
    if (lines.ok())
      for (const auto& [n, t] : *lines) all += t + "\n";
    return all;
  }
};

TEST(JobService, LimitsQueueWithReasonAndStartInOrder) {
  Fixture f;
  JobServiceOptions o;
  o.max_jobs = 2;
  o.max_jobs_per_repository = 1;
  f.Open(o);
  int64_t a = f.Submit("r1"), b = f.Submit("r1"), c = f.Submit("r2"),
          d = f.Submit("r3");
  EXPECT_EQ(f.Get(a).state, JobState::kQueued);
  EXPECT_THAT(f.Get(a).queue_reason, HasSubstr("havend to start"));
  f.jobs->Start();
  f.WaitFor(a, JobState::kRunning);
  f.WaitFor(c, JobState::kRunning);
  JobRecord rb = f.Get(b), rd = f.Get(d);
  EXPECT_EQ(rb.state, JobState::kQueued);
  EXPECT_EQ(rb.queue_reason, "waiting: 1 job already running on repository r1");
  EXPECT_EQ(rd.state, JobState::kQueued);
  EXPECT_EQ(rd.queue_reason, "waiting: 2 jobs running, at most 2 at once");
  // a ends: b (first in line, its repository now free) starts, d waits.
  f.GateOf("r1")->Open();
  f.WaitFor(a, JobState::kSucceeded);
  f.WaitFor(b, JobState::kSucceeded);  // r1's gate is open: b ends too
  f.WaitFor(d, JobState::kRunning);
  f.GateOf("r2")->Open();
  f.GateOf("r3")->Open();
  f.WaitFor(c, JobState::kSucceeded);
  f.WaitFor(d, JobState::kSucceeded);
  EXPECT_EQ(f.runs, 4);
  JobRecord ra = f.Get(a);
  EXPECT_FALSE(ra.started_at.empty());
  EXPECT_FALSE(ra.ended_at.empty());
  ASSERT_EQ(ra.outcome.items.size(), 1u);
  EXPECT_EQ(ra.outcome.items[0].stored_bytes, 2u);
}

TEST(JobService, SubmitRefusesBadRequestsWithTheReason) {
  Fixture f;
  f.Open();
  JobSpec s;
  s.kind = "nosuch";
  s.repository = "r";
  EXPECT_THAT(f.jobs->Submit(s).status(),
              StatusIs(Code::kNotFound, HasSubstr("no job kind")));
  s.kind = "wait";
  s.repository = "nope";
  EXPECT_THAT(f.jobs->Submit(s).status(),
              StatusIs(Code::kNotFound, HasSubstr("nope")));
  s.repository = "r";
  s.params = {{"bad", 1}};
  EXPECT_THAT(f.jobs->Submit(s).status(),
              StatusIs(Code::kInvalidArgument, HasSubstr("bad is bad")));
  auto all = f.jobs->List({});
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->empty());  // nothing refused was queued
}

TEST(JobService, CancelQueuedNeverRunsCancelRunningStops) {
  Fixture f;
  f.Open();
  f.jobs->Start();
  int64_t running = f.Submit("r"), queued = f.Submit("r");
  f.WaitFor(running, JobState::kRunning);
  ASSERT_TRUE(f.jobs->Cancel(queued, "alice").ok());
  JobRecord q = f.Get(queued);
  EXPECT_EQ(q.state, JobState::kCancelled);
  EXPECT_THAT(q.outcome.error,
              HasSubstr("cancelled by alice before it started"));
  ASSERT_TRUE(f.jobs->Cancel(running, "bob").ok());
  JobRecord r = f.WaitFor(running, JobState::kCancelled);
  EXPECT_THAT(r.outcome.error, HasSubstr("cancelled by bob"));
  EXPECT_THAT(f.LogText(running), HasSubstr("cancel requested by bob"));
  EXPECT_EQ(f.runs, 1);  // the queued one never ran
  EXPECT_THAT(f.jobs->Cancel(running, "bob"),
              StatusIs(Code::kFailedPrecondition, HasSubstr("already ended")));
  EXPECT_THAT(f.jobs->Cancel(999, "bob"),
              StatusIs(Code::kNotFound, HasSubstr("999")));
}

TEST(JobService, RunningJobsAreInterruptedAtReopenQueuedOnesKept) {
  Fixture f;
  f.Open();
  f.jobs->Start();
  int64_t running = f.Submit("r");
  f.WaitFor(running, JobState::kRunning);
  // What a kill -9 leaves: the row says running. Copy the database file
  // as it is now (WAL mode: checkpointed first) and reopen the copy.
  ASSERT_TRUE(f.db->Exec("PRAGMA wal_checkpoint(FULL)").ok());
  std::string copy = f.dir.Sub("copy.db");
  ASSERT_EQ(std::system(("cp " + f.dir.Sub("havend.db") + " " + copy).c_str()),
            0);
  f.GateOf("r")->Open();
  f.WaitFor(running, JobState::kSucceeded);
  f.Close();
  ASSERT_EQ(std::system(("mv " + copy + " " + f.dir.Sub("havend.db") +
                         " && rm -f " + f.dir.Sub("havend.db-wal") + " " +
                         f.dir.Sub("havend.db-shm"))
                            .c_str()),
            0);
  f.Open();
  int64_t queued = f.Submit("r");
  JobRecord r = f.Get(running);
  EXPECT_EQ(r.state, JobState::kInterrupted);
  EXPECT_FALSE(r.ended_at.empty());
  EXPECT_THAT(r.outcome.error, HasSubstr("havend stopped while this job ran"));
  EXPECT_THAT(f.LogText(running), HasSubstr("interrupted: havend stopped"));
  EXPECT_EQ(f.jobs->interrupted_at_start(), 1);
  EXPECT_EQ(f.Get(queued).state, JobState::kQueued);
  f.jobs->Start();
  f.WaitFor(queued, JobState::kSucceeded);
}

TEST(JobService, QueuedJobsSurviveARestartAndRun) {
  Fixture f;
  f.Open();  // not started: jobs stay queued
  int64_t id = f.Submit("r");
  f.Close();
  f.Open();
  EXPECT_EQ(f.Get(id).state, JobState::kQueued);
  f.GateOf("r")->Open();
  f.jobs->Start();
  f.WaitFor(id, JobState::kSucceeded);
}

TEST(JobService, OnJobEndGetsTheEndedRecord) {
  Fixture f;
  f.Open();
  std::mutex mu;
  std::vector<JobRecord> ended;
  f.jobs->OnJobEnd([&](const JobRecord& r) {
    std::lock_guard lock(mu);
    ended.push_back(r);
  });
  f.jobs->Start();
  f.GateOf("r")->Open();
  int64_t id = f.Submit("r");
  f.WaitFor(id, JobState::kSucceeded);
  for (int i = 0; i < 100; ++i) {
    {
      std::lock_guard lock(mu);
      if (!ended.empty()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::lock_guard lock(mu);
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0].id, id);
  EXPECT_EQ(ended[0].state, JobState::kSucceeded);
  ASSERT_EQ(ended[0].outcome.items.size(), 1u);  // with its items
  EXPECT_FALSE(ended[0].ended_at.empty());
}

TEST(JobService, HistorySurvivesReopen) {
  Fixture f;
  f.Open();
  f.jobs->Start();
  f.GateOf("r")->Open();
  int64_t id = f.Submit("r", {{"x", 1}});
  f.WaitFor(id, JobState::kSucceeded);
  f.Close();
  f.Open();
  JobRecord r = f.Get(id);
  EXPECT_EQ(r.state, JobState::kSucceeded);
  EXPECT_EQ(r.spec.params, nlohmann::json({{"x", 1}}));
  EXPECT_EQ(r.spec.requested_by, "test");
  EXPECT_EQ(r.outcome.read_bytes, 10u);
  ASSERT_EQ(r.outcome.items.size(), 1u);
  EXPECT_EQ(r.outcome.items[0].name, "vm1");
  EXPECT_EQ(r.outcome.items[0].new_bytes, 4u);
  EXPECT_EQ(r.outcome.items[0].detail["k"], 1);
  EXPECT_EQ(r.outcome.result["done"], true);
  std::string log = f.LogText(id);
  EXPECT_THAT(log, HasSubstr("queued by test"));
  EXPECT_THAT(log, HasSubstr("waiting on r"));
  EXPECT_THAT(log, HasSubstr("ended: succeeded"));
  auto after = f.jobs->Log(id, 2);
  ASSERT_TRUE(after.ok());
  ASSERT_FALSE(after->empty());
  EXPECT_EQ(after->front().first, 3);
}

TEST(JobService, ListFiltersAndPages) {
  Fixture f;
  f.Open();
  for (int i = 0; i < 5; ++i) f.Submit(i % 2 ? "a" : "b");
  JobFilter filter;
  filter.repository = "a";
  auto a = f.jobs->List(filter);
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(a->size(), 2u);
  EXPECT_GT((*a)[0].id, (*a)[1].id);  // newest first
  JobFilter page;
  page.limit = 2;
  auto p1 = f.jobs->List(page);
  ASSERT_TRUE(p1.ok());
  ASSERT_EQ(p1->size(), 2u);
  page.before_id = p1->back().id;
  auto p2 = f.jobs->List(page);
  ASSERT_TRUE(p2.ok());
  ASSERT_EQ(p2->size(), 2u);
  EXPECT_LT(p2->front().id, p1->back().id);
  JobFilter running;
  running.state = JobState::kRunning;
  EXPECT_TRUE(f.jobs->List(running)->empty());
  JobFilter bad;
  bad.since = "yesterday";
  EXPECT_THAT(f.jobs->List(bad).status(),
              StatusIs(Code::kInvalidArgument, HasSubstr("yesterday")));
  JobFilter since;
  since.since = "2000-01-01";
  EXPECT_EQ(f.jobs->List(since)->size(), 5u);
  since.since = "2999-01-01T00:00:00Z";
  EXPECT_TRUE(f.jobs->List(since)->empty());
}

TEST(JobService, LogIsCappedAndSaysSo) {
  Fixture f;
  JobServiceOptions o;
  o.max_log_lines = 5;
  f.Open(o);
  f.jobs->RegisterKind("chatty", nullptr, [](const JobSpec&, JobContext& c) {
    for (int i = 0; i < 50; ++i) c.log("line " + std::to_string(i));
    return JobOutcome{JobState::kSucceeded, "", {}, 0, 0, 0, {}};
  });
  f.jobs->Start();
  JobSpec s{"chatty", "r", nlohmann::json::object(), "t", std::nullopt};
  auto id = f.jobs->Submit(s);
  ASSERT_TRUE(id.ok());
  f.WaitFor(*id, JobState::kSucceeded);
  std::string log = f.LogText(*id);
  EXPECT_THAT(log, HasSubstr("line 4\n"));
  EXPECT_THAT(log, ::testing::Not(HasSubstr("line 5\n")));
  EXPECT_THAT(log, HasSubstr("the log is cut here"));
  EXPECT_THAT(log, HasSubstr("ended: succeeded"));  // the end is kept
}

TEST(JobService, ProgressIsRateLimitedAndShownWhileRunning) {
  Fixture f;
  JobServiceOptions o;
  o.progress_interval = std::chrono::milliseconds(200);
  f.Open(o);
  auto gate = std::make_shared<Gate>();
  f.jobs->RegisterKind("busy", nullptr, [gate](const JobSpec&, JobContext& c) {
    for (int i = 0; i < 1000; ++i)
      c.progress(ByteProgress(i, 1000, 0, 1, false));
    Progress p = ByteProgress(999, 1000, 0, 1, false);
    p.phase = "backup";
    p.item = "vm9";
    c.progress(p);
    gate->Wait(c.cancel);
    return JobOutcome{JobState::kSucceeded, "", {}, 0, 0, 0, {}};
  });
  std::mutex mu;
  std::vector<JobService::Event> seen;
  auto sub = f.jobs->Subscribe([&](const JobService::Event& e) {
    std::lock_guard lock(mu);
    seen.push_back(e);
  });
  f.jobs->Start();
  JobSpec s{"busy", "r", nlohmann::json::object(), "t", std::nullopt};
  auto id = f.jobs->Submit(s);
  ASSERT_TRUE(id.ok());
  JobRecord r = f.WaitFor(*id, JobState::kRunning);
  for (int i = 0; i < 200 && !(r.progress && r.progress->item == "vm9"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    r = f.Get(*id);
  }
  ASSERT_TRUE(r.progress);
  EXPECT_EQ(r.progress->item, "vm9");
  gate->Open();
  f.WaitFor(*id, JobState::kSucceeded);
  std::lock_guard lock(mu);
  int progress = 0;
  std::vector<std::string> states;
  for (const auto& e : seen) {
    if (e.type == "progress") ++progress;
    if (e.type == "state") states.push_back(e.data["state"]);
  }
  EXPECT_GE(progress, 1);
  EXPECT_LE(progress, 3);  // 1001 reports in well under 200 ms
  EXPECT_EQ(states,
            (std::vector<std::string>{"queued", "running", "succeeded"}));
}

TEST(JobService, StopInterruptsRunningJobsAndKeepsQueuedOnes) {
  Fixture f;
  f.Open();
  f.jobs->Start();
  int64_t running = f.Submit("r"), queued = f.Submit("r");
  f.WaitFor(running, JobState::kRunning);
  f.jobs->Stop();
  EXPECT_EQ(f.Get(running).state, JobState::kInterrupted);
  EXPECT_EQ(f.Get(queued).state, JobState::kQueued);
  f.Close();
  f.Open();
  EXPECT_EQ(f.Get(queued).state, JobState::kQueued);
}

}  // namespace
}  // namespace haven::appliance
