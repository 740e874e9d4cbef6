// NotifyMonitor over a real state database: jobs run by the real
// SqlJobService reach the notifier through OnJobEnd, and overdue VMs are
// found from the job history and the schedules table (its schema as
// appliance/schedule_store.cc makes it) with the SQL of history_queries.
#include "appliance/notify_monitor.h"
#include "appliance/schedule_store.h"

#include <chrono>
#include <ctime>
#include <thread>

#include "appliance/history_queries.h"
#include "appliance/job_service.h"
#include "test_util.h"

namespace haven::appliance {
namespace {

using ::haven::testing_util::IsOk;
using ::haven::testing_util::TempDir;
using ::testing::HasSubstr;

void AddSchedule(StateDb& db, const std::string& name, const std::string& cal,
                 const std::string& kind, const std::string& params,
                 int64_t created, int enabled = 1, int64_t delay = 0) {
  auto r = db.Query(
      "INSERT INTO schedules (name, calendar, normalized, kind, repository, "
      "params, random_delay_seconds, enabled, anchor, created, changed) "
      "VALUES (?1, ?2, ?2, ?3, 'main', ?4, ?5, ?6, ?7, ?7, ?7)",
      {name, cal, kind, params, delay, int64_t{enabled}, created});
  ASSERT_THAT(r.status(), IsOk());
}

TEST(History, BackupSchedulesFromTheSchedulerTable) {
  TempDir dir;
  auto db = StateDb::Open(dir.Sub("havend.db"));
  ASSERT_THAT(db.status(), IsOk());
  auto none = LoadBackupSchedules(*db.value());
  ASSERT_THAT(none.status(), IsOk());
  EXPECT_TRUE(none->empty()) << "no table yet reads as empty";
  // The schedules table as the scheduler makes it.
  ASSERT_THAT(ScheduleStore::Open(*db.value()).status(), IsOk());
  AddSchedule(*db.value(), "nightly", "*-*-* 02:00", "backup",
              R"({"all":true,"exclude":["test-*"]})", 1000, 1, 600);
  AddSchedule(*db.value(), "some", "hourly", "backup", R"({"vms":["a","b"]})",
              2000);
  AddSchedule(*db.value(), "off", "hourly", "backup", R"({"all":true})", 1, 0);
  AddSchedule(*db.value(), "gc", "weekly", "gc", "{}", 1);
  auto s = LoadBackupSchedules(*db.value());
  ASSERT_THAT(s.status(), IsOk());
  ASSERT_EQ(s->size(), 2u);
  EXPECT_EQ((*s)[0].name, "nightly");
  EXPECT_TRUE((*s)[0].all_vms);
  EXPECT_EQ((*s)[0].exclude, std::vector<std::string>{"test-*"});
  EXPECT_EQ((*s)[0].created_at, 1000);
  EXPECT_EQ((*s)[0].random_delay_seconds, 600);
  EXPECT_EQ((*s)[0].repository, "main");
  EXPECT_EQ((*s)[1].name, "some");
  EXPECT_FALSE((*s)[1].all_vms);
  EXPECT_EQ((*s)[1].vms, (std::vector<std::string>{"a", "b"}));
}

TEST(NotifyMonitor, JobEndsReachTheNotifierAndOverdueVmsAreFound) {
  TempDir dir;
  auto db = StateDb::Open(dir.Sub("havend.db"));
  ASSERT_THAT(db.status(), IsOk());
  auto jobs = SqlJobService::Create(*db.value(), {});
  ASSERT_THAT(jobs.status(), IsOk());
  jobs.value()->RegisterKind(
      "backup", [](const JobSpec&) { return OkStatus(); },
      [](const JobSpec&, JobContext&) {
        JobOutcome o;
        o.items = {{"web1", "ok", "", 1, 1, 1, {}},
                   {"db1", "failed", "boom", 0, 0, 0, {}}};
        o.state = JobState::kPartial;
        o.error = "1 of 2 VMs failed";
        return o;
      });
  // The schedules table as the scheduler makes it.
  ASSERT_THAT(ScheduleStore::Open(*db.value()).status(), IsOk());
  int64_t now = static_cast<int64_t>(std::time(nullptr));
  // Every 2 s, made 100 s ago, all VMs: db1 has never succeeded (its one
  // backup failed), so it is due 30 s after the first elapse.
  AddSchedule(*db.value(), "often", "*:*:0/2", "backup", R"({"all":true})",
              now - 100);

  // A webhook to a closed port, no retries: each notification is one
  // refused attempt, counted as given up.
  NotifierOptions no;
  no.webhook_url = "http://127.0.0.1:9/hook";
  no.retry_delays = {};
  no.connect_timeout_seconds = 2;
  Notifier notifier(no);
  ApplianceConfig config;
  RepositoryCatalog catalog(config);
  Services services;
  services.config = &config;
  services.db = db.value().get();
  services.repositories = &catalog;
  services.jobs = jobs.value().get();
  MonitorOptions mo;
  mo.overdue.min_grace_seconds = 30;  // web1, backed up now, is not overdue
  mo.overdue.grace_fraction = 0;
  mo.check_interval_seconds =
      3600;  // checks only when told (CheckNow, job end)
  auto monitor = NotifyMonitor::Start(services, &notifier, nullptr, mo);
  ASSERT_THAT(monitor.status(), IsOk());
  jobs.value()->Start();
  JobSpec spec;
  spec.kind = "backup";
  spec.repository = "main";
  ASSERT_THAT(jobs.value()->Submit(spec).status(), IsOk());
  for (int i = 0; i < 500 && notifier.counts().given_up < 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  // The job's partial end and db1 overdue (found at the job's end).
  EXPECT_EQ(notifier.counts().given_up, 2u);
  monitor.value()->CheckNow();
  auto overdue = monitor.value()->Overdue();
  ASSERT_EQ(overdue.size(), 1u);
  EXPECT_EQ(overdue[0].vm, "db1");
  EXPECT_EQ(overdue[0].schedule, "often");
  EXPECT_FALSE(overdue[0].last_success.has_value());
  EXPECT_EQ(overdue[0].expected_interval_seconds, 2);
  EXPECT_TRUE(notifier.WaitIdle(10));
  EXPECT_EQ(notifier.counts().given_up, 2u) << "db1 is told once per episode";
  MailMessage report = monitor.value()->DailyReportNow();
  EXPECT_THAT(report.subject, HasSubstr(": 1 jobs, 1 failed, 1 VMs overdue"));
  EXPECT_THAT(report.body, HasSubstr("db1 in main: last success never"));
  monitor.value().reset();  // before the job service it listens to
  jobs.value()->Stop();
}

}  // namespace
}  // namespace haven::appliance
