// The scheduler's timing: missed runs at start, random delays, order,
// retention after a backup, clock changes, and real-time firing with the
// thread. Real SQLite (StateDb) and a fake JobService that records what it
// is given; calendars are UTC so the local zone plays no part.
#include "appliance/scheduler.h"

#include <atomic>
#include <set>
#include <thread>

#include "base/time.h"
#include "tests/unit/fake_job_service.h"
#include "tests/unit/test_util.h"

namespace haven::appliance {
namespace {

using ::haven::testing_util::IsOk;
using ::haven::testing_util::StatusIs;
using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

int64_t T(const char* iso) {
  auto t = ParseIsoTime(iso);
  EXPECT_TRUE(t.ok()) << iso;
  return t.ok() ? *t : 0;
}

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = StateDb::Open(dir_.Sub("havend.db"));
    ASSERT_THAT(db.status(), IsOk());
    db_ = std::move(*db);
    now_ms_ = T("2026-12-07T10:00:00Z") * 1000;
  }

  // A scheduler on the shared database: the fake clock, or the real one.
  std::unique_ptr<Scheduler> Make(bool real_clock = false) {
    SchedulerOptions o;
    if (!real_clock) o.now_ms = [this] { return now_ms_.load(); };
    o.repository_known = [](std::string_view n) { return n == "main"; };
    o.log = [this](std::string_view line) {
      std::lock_guard lock(log_mu_);
      log_.emplace_back(line);
    };
    auto s = Scheduler::Create(*db_, jobs_, std::move(o));
    EXPECT_THAT(s.status(), IsOk());
    return s.ok() ? std::move(*s) : nullptr;
  }

  Schedule Add(Scheduler& s, json body) {
    if (!body.contains("kind")) body["kind"] = "gc";
    if (!body.contains("repository")) body["repository"] = "main";
    auto added = s.Add(body);
    EXPECT_THAT(added.status(), IsOk()) << body.dump();
    return added.ok() ? *added : Schedule{};
  }

  std::vector<std::string> SubmittedBy() {
    std::vector<std::string> out;
    for (const auto& sub : jobs_.submissions())
      out.push_back(sub.spec.requested_by);
    return out;
  }

  testing_util::TempDir dir_;
  std::unique_ptr<StateDb> db_;
  FakeJobService jobs_;
  std::atomic<int64_t> now_ms_{0};
  std::mutex log_mu_;
  std::vector<std::string> log_;
};

TEST_F(SchedulerTest, RunMissedWhileDownRunsOnceAtStart) {
  int64_t nightly = 0, lazy = 0;
  {
    auto s = Make();
    nightly = Add(*s, {{"name", "nightly"},
                       {"calendar", "*-*-* 02:00:00 UTC"},
                       {"kind", "backup"},
                       {"params", {{"all", true}}}})
                  .id;
    lazy = Add(*s, {{"name", "lazy"},
                    {"calendar", "*-*-* 02:00:00 UTC"},
                    {"persistent", false}})
               .id;
  }
  // havend is down for three nights (three elapses missed), then starts.
  now_ms_ = T("2026-12-10T11:00:00Z") * 1000;
  auto s = Make();
  s->Start();
  ASSERT_TRUE(jobs_.WaitFor(1, 5000));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  s->Stop();
  auto subs = jobs_.submissions();
  ASSERT_EQ(subs.size(), 1u) << "one run for three missed elapses";
  EXPECT_EQ(subs[0].spec.requested_by, "schedule:nightly");
  EXPECT_EQ(subs[0].spec.kind, "backup");
  EXPECT_EQ(subs[0].spec.repository, "main");
  EXPECT_EQ(subs[0].spec.schedule_id, nightly);
  EXPECT_EQ(subs[0].spec.params, (json{{"all", true}}));

  auto n = s->Get(nightly);
  ASSERT_THAT(n.status(), IsOk());
  EXPECT_EQ(n->last_triggered, T("2026-12-10T11:00:00Z"));
  // The run was due for the first elapse it missed.
  EXPECT_EQ(n->last_elapse, T("2026-12-08T02:00:00Z"));
  EXPECT_EQ(n->last_job_id, subs[0].id);
  EXPECT_EQ(n->last_error, "");
  auto next = s->NextRuns(*n, 2);
  ASSERT_EQ(next.size(), 2u);
  EXPECT_EQ(next[0].run, T("2026-12-11T02:00:00Z"));
  EXPECT_EQ(next[1].run, T("2026-12-12T02:00:00Z"));
  // The non-persistent one dropped its missed runs and waits for the next.
  auto l = s->Get(lazy);
  ASSERT_THAT(l.status(), IsOk());
  EXPECT_EQ(l->last_triggered, 0);
  EXPECT_EQ(s->NextRuns(*l, 1)[0].run, T("2026-12-11T02:00:00Z"));

  // Nothing more is due until then.
  EXPECT_EQ(s->RunDue(now_ms_), T("2026-12-11T02:00:00Z") * 1000);
  EXPECT_EQ(jobs_.submissions().size(), 1u);
}

TEST_F(SchedulerTest, NoRunMissedMeansNoRunAtStart) {
  {
    auto s = Make();
    Add(*s, {{"name", "nightly"}, {"calendar", "*-*-* 02:00:00 UTC"}});
  }
  now_ms_ = T("2026-12-08T01:59:59Z") * 1000;  // down, but before 02:00
  auto s = Make();
  s->Start();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  s->Stop();
  EXPECT_TRUE(jobs_.submissions().empty());
}

TEST_F(SchedulerTest, SchedulesFireInTheOrderTheyAreDue) {
  auto s = Make();
  Add(*s, {{"name", "three"}, {"calendar", "*-*-* 03:00:00 UTC"}});
  Add(*s, {{"name", "one"}, {"calendar", "*-*-* 01:00:00 UTC"}});
  Add(*s, {{"name", "two"}, {"calendar", "*-*-* 02:00:00 UTC"}});
  Add(*s, {{"name", "off"},
           {"calendar", "*-*-* 00:30:00 UTC"},
           {"enabled", false}});
  EXPECT_EQ(s->RunDue(T("2026-12-08T00:59:59Z") * 1000),
            T("2026-12-08T01:00:00Z") * 1000);
  EXPECT_TRUE(jobs_.submissions().empty());
  EXPECT_EQ(s->RunDue(T("2026-12-08T01:00:00Z") * 1000),
            T("2026-12-08T02:00:00Z") * 1000);
  EXPECT_THAT(SubmittedBy(), ElementsAre("schedule:one"));
  // One look after a long sleep (a suspended host) fires the rest in order.
  s->RunDue(T("2026-12-08T04:00:00Z") * 1000);
  EXPECT_THAT(SubmittedBy(),
              ElementsAre("schedule:one", "schedule:two", "schedule:three"));
}

TEST_F(SchedulerTest, RandomDelayIsBoundedSpreadAndStableAcrossRestarts) {
  for (int64_t id : {1, 2, 77})
    for (int64_t e = 0; e < 200; ++e) {
      int64_t d = RunDelay(id, 1796000000 + e * 86400, 600);
      EXPECT_GE(d, 0);
      EXPECT_LE(d, 600);
    }
  EXPECT_EQ(RunDelay(5, 1796000000, 0), 0);

  std::vector<ScheduledRun> first;
  int64_t id = 0;
  {
    auto s = Make();
    Schedule sch = Add(*s, {{"name", "spread"},
                            {"calendar", "*-*-* 02:00:00 UTC"},
                            {"random_delay_seconds", 3600}});
    id = sch.id;
    first = s->NextRuns(sch, 100);
  }
  ASSERT_EQ(first.size(), 100u);
  std::set<int64_t> delays;
  int64_t sum = 0;
  for (const ScheduledRun& r : first) {
    EXPECT_GE(r.run - r.elapse, 0);
    EXPECT_LE(r.run - r.elapse, 3600);
    delays.insert(r.run - r.elapse);
    sum += r.run - r.elapse;
  }
  EXPECT_GT(delays.size(), 90u) << "delays should differ from run to run";
  EXPECT_GT(sum / 100, 1200);
  EXPECT_LT(sum / 100, 2400);

  // After a restart the same runs, to the second.
  auto s = Make();
  auto again = s->Get(id);
  ASSERT_THAT(again.status(), IsOk());
  auto second = s->NextRuns(*again, 100);
  ASSERT_EQ(second.size(), first.size());
  for (size_t i = 0; i < first.size(); ++i) {
    EXPECT_EQ(second[i].elapse, first[i].elapse);
    EXPECT_EQ(second[i].run, first[i].run);
  }
  // It fires at the elapse plus its delay, not before.
  int64_t run = first[0].run;
  if (run > first[0].elapse) {
    s->RunDue((run - 1) * 1000 + 999);
    EXPECT_TRUE(jobs_.submissions().empty());
  }
  s->RunDue(run * 1000);
  EXPECT_THAT(SubmittedBy(), ElementsAre("schedule:spread"));
}

TEST_F(SchedulerTest, TriggerIsRecordedBeforeTheJobIsSubmitted) {
  auto s = Make();
  int64_t id = Add(*s, {{"name", "n"}, {"calendar", "*-*-* 02:00:00 UTC"}}).id;
  int64_t seen = -1;
  jobs_.before_submit = [&](const JobSpec&) {
    auto row = db_->QueryOne(
        "SELECT last_triggered FROM schedules WHERE id = ?1", {id});
    seen = row.ok() && *row ? (*row)->Int(0) : -2;
    return OkStatus();
  };
  s->RunDue(T("2026-12-08T02:00:00Z") * 1000);
  EXPECT_EQ(seen, T("2026-12-08T02:00:00Z"));
}

TEST_F(SchedulerTest, RefusedSubmissionIsRecordedAndNotRetriedInALoop) {
  auto s = Make();
  int64_t id = Add(*s, {{"name", "n"}, {"calendar", "*-*-* 02:00:00 UTC"}}).id;
  int calls = 0;
  jobs_.before_submit = [&](const JobSpec&) {
    ++calls;
    return Unavailable("the job queue is full");
  };
  s->RunDue(T("2026-12-08T02:00:00Z") * 1000);
  s->RunDue(T("2026-12-08T02:00:01Z") * 1000);
  EXPECT_EQ(calls, 1);
  auto got = s->Get(id);
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(got->last_error, "the job queue is full");
  EXPECT_EQ(got->last_job_id, 0);
  EXPECT_EQ(got->last_triggered, T("2026-12-08T02:00:00Z"));
}

TEST_F(SchedulerTest, ClockSetBackOrForwardIsRecomputed) {
  auto s = Make();
  int64_t id = Add(*s, {{"name", "h"}, {"calendar", "hourly UTC"}}).id;
  s->RunDue(T("2026-12-07T11:00:00Z") * 1000);
  ASSERT_EQ(jobs_.submissions().size(), 1u);
  // Set back to 09:30: the next run is 10:00, not 12:00.
  now_ms_ = T("2026-12-07T09:30:00Z") * 1000;
  auto got = s->Get(id);
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(s->NextRuns(*got, 1)[0].run, T("2026-12-07T10:00:00Z"));
  EXPECT_EQ(s->RunDue(now_ms_), T("2026-12-07T10:00:00Z") * 1000);
  s->RunDue(T("2026-12-07T10:00:00Z") * 1000);
  EXPECT_EQ(jobs_.submissions().size(), 2u);
  // Forward five hours: one run for the five elapses, then the next hour.
  EXPECT_EQ(s->RunDue(T("2026-12-07T15:00:30Z") * 1000),
            T("2026-12-07T16:00:00Z") * 1000);
  EXPECT_EQ(jobs_.submissions().size(), 3u);
  EXPECT_EQ(s->RunDue(T("2026-12-07T15:00:31Z") * 1000),
            T("2026-12-07T16:00:00Z") * 1000);
  EXPECT_EQ(jobs_.submissions().size(), 3u);
}

TEST_F(SchedulerTest, BackupRetentionIsAppliedToTheVmsItBackedUp) {
  auto s = Make();
  int64_t id = Add(*s, {{"name", "nightly"},
                        {"calendar", "*-*-* 02:00:00 UTC"},
                        {"kind", "backup"},
                        {"params", {{"all", true}}},
                        {"retention", {{"keep_daily", 7}}}})
                   .id;
  int64_t plain = Add(*s, {{"name", "plain"},
                           {"calendar", "*-*-* 03:00:00 UTC"},
                           {"kind", "backup"},
                           {"params", {{"vms", {"c"}}}}})
                      .id;
  s->Start();
  auto ended = [&](int64_t schedule, JobState state) {
    JobRecord r;
    r.spec.kind = "backup";
    r.spec.schedule_id = schedule;
    r.state = state;
    for (auto [name, outcome] : {std::pair{"a", "ok"}, std::pair{"b", "failed"},
                                 std::pair{"c", "ok"}}) {
      JobItem item;
      item.name = name;
      item.outcome = outcome;
      r.outcome.items.push_back(item);
    }
    jobs_.End(r);
  };
  ended(id, JobState::kFailed);        // a failed run: nothing to forget
  ended(plain, JobState::kSucceeded);  // no retention policy
  ended(id, JobState::kPartial);
  ASSERT_TRUE(jobs_.WaitFor(2, 5000));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  s->Stop();
  auto subs = jobs_.submissions();
  ASSERT_EQ(subs.size(), 2u) << "one forget per VM backed up, b failed";
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(subs[i].spec.kind, "forget");
    EXPECT_EQ(subs[i].spec.repository, "main");
    EXPECT_EQ(subs[i].spec.requested_by, "schedule:nightly");
    EXPECT_EQ(subs[i].spec.schedule_id, id);
  }
  EXPECT_EQ(subs[0].spec.params, (json{{"keep_daily", 7}, {"name", "a"}}));
  EXPECT_EQ(subs[1].spec.params, (json{{"keep_daily", 7}, {"name", "c"}}));
}

TEST_F(SchedulerTest, RunNowSubmitsAndLeavesTheTimedRunsAlone) {
  auto s = Make();
  Schedule sch = Add(*s, {{"name", "n"}, {"calendar", "*-*-* 02:00:00 UTC"}});
  auto job = s->RunNow(sch.id, "token:ops");
  ASSERT_THAT(job.status(), IsOk());
  auto subs = jobs_.submissions();
  ASSERT_EQ(subs.size(), 1u);
  EXPECT_EQ(subs[0].spec.requested_by, "token:ops");
  EXPECT_EQ(subs[0].spec.schedule_id, sch.id);
  auto after = s->Get(sch.id);
  ASSERT_THAT(after.status(), IsOk());
  EXPECT_EQ(after->anchor, sch.anchor);
  EXPECT_EQ(after->last_triggered, 0);
  EXPECT_THAT(s->RunNow(999, "x").status(),
              StatusIs(Code::kNotFound, HasSubstr("no schedule with id 999")));
}

TEST_F(SchedulerTest, DefaultScheduleIsAddedOnce) {
  auto added = AddDefaultSchedule(*db_, "main", T("2026-12-07T10:00:00Z"));
  ASSERT_THAT(added.status(), IsOk());
  EXPECT_TRUE(*added);
  auto again = AddDefaultSchedule(*db_, "main", T("2026-12-07T10:00:00Z"));
  ASSERT_THAT(again.status(), IsOk());
  EXPECT_FALSE(*again);
  auto s = Make();
  auto list = s->List();
  ASSERT_THAT(list.status(), IsOk());
  ASSERT_EQ(list->size(), 1u);
  const Schedule& n = (*list)[0];
  EXPECT_EQ(n.spec.name, "nightly");
  EXPECT_EQ(n.normalized, "*-*-* 02:00:00");
  EXPECT_EQ(n.spec.kind, "backup");
  EXPECT_EQ(n.spec.repository, "main");
  EXPECT_EQ(n.spec.params, (json{{"all", true}}));
  EXPECT_TRUE(n.spec.persistent);
  EXPECT_TRUE(n.spec.enabled);
}

// Real time, with the thread: a schedule every 2 s fires within 1 s of
// each elapse.
TEST_F(SchedulerTest, TwoSecondScheduleFiresOnTimeInRealTime) {
  auto s = Make(/*real_clock=*/true);
  s->Start();
  Schedule sch = Add(*s, {{"name", "fast"}, {"calendar", "*:*:0/2"}});
  ASSERT_TRUE(jobs_.WaitFor(3, 10000));
  s->Stop();
  auto subs = jobs_.submissions();
  for (size_t i = 0; i < 3; ++i) {
    int64_t elapse_ms = subs[i].at_ms / 2000 * 2000;
    EXPECT_LT(subs[i].at_ms - elapse_ms, 1000)
        << "job " << i << " submitted " << subs[i].at_ms - elapse_ms
        << " ms after its elapse";
    EXPECT_GT(elapse_ms / 1000, sch.created) << "strictly after creation";
    std::printf("run %zu submitted %lld ms after its elapse\n", i,
                static_cast<long long>(subs[i].at_ms - elapse_ms));
    if (i > 0) {
      EXPECT_EQ(elapse_ms - subs[i - 1].at_ms / 2000 * 2000, 2000)
          << "one run per elapse";
    }
  }
}

// Changes wake the sleeping thread: it sleeps up to 30 s otherwise.
TEST_F(SchedulerTest, ChangesWakeTheThread) {
  auto s = Make(/*real_clock=*/true);
  Schedule sch = Add(*s, {{"name", "n"}, {"calendar", "*-01-01 00:00:00"}});
  s->Start();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_THAT(s->Change(sch.id, {{"calendar", "*:*:*"}}).status(), IsOk());
  ASSERT_TRUE(jobs_.WaitFor(1, 3000)) << "a change did not wake the thread";
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  ASSERT_THAT(s->Change(sch.id, {{"enabled", false}}).status(), IsOk());
  size_t before = jobs_.submissions().size();
  Add(*s, {{"name", "m"}, {"calendar", "*:*:*"}});
  ASSERT_TRUE(jobs_.WaitFor(before + 1, 3000)) << "an addition did not wake it";
  s->Stop();
}

}  // namespace
}  // namespace haven::appliance
