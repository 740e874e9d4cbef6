// Notifications as pure functions: which job ends are told, the webhook
// body and its HMAC signature (RFC 4231 and openssl dgst), the mail
// message (headers, quoted-printable, header injection), overdue VMs over
// several schedules and the episodes, and the daily report.
#include "appliance/notifier.h"

#include <cstdio>

#include "appliance/daily_report.h"
#include "appliance/notify_message.h"
#include "appliance/overdue.h"
#include "test_util.h"

namespace haven::appliance {
namespace {

using ::haven::testing_util::IsOk;
using ::haven::testing_util::StatusIs;
using ::haven::testing_util::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;

JobRecord Job(JobState state) {
  JobRecord job;
  job.id = 42;
  job.spec.kind = "backup";
  job.spec.repository = "main";
  job.spec.requested_by = "schedule:nightly";
  job.state = state;
  job.started_at = "2026-12-07T02:00:01Z";
  job.ended_at = "2026-12-07T02:12:04Z";
  job.duration_seconds = 723;
  job.outcome.state = state;
  job.outcome.items = {{"web1", "ok", "", 100, 10, 5, {}},
                       {"db1", "failed", "disk vda: read error", 0, 0, 0, {}}};
  job.outcome.error = "1 of 2 VMs failed";
  return job;
}

TEST(NotifyEvent, FailuresAlwaysSuccessOnlyWhenAskedCancelledNever) {
  for (JobState s :
       {JobState::kFailed, JobState::kPartial, JobState::kInterrupted}) {
    auto e = JobEndEvent(Job(s), false, 1000, "host");
    ASSERT_TRUE(e.has_value()) << JobStateName(s);
    EXPECT_EQ(e->type, "job." + std::string(JobStateName(s)));
    EXPECT_EQ(e->id.size(), 32u);
  }
  EXPECT_FALSE(JobEndEvent(Job(JobState::kSucceeded), false, 1000, "h"));
  EXPECT_TRUE(JobEndEvent(Job(JobState::kSucceeded), true, 1000, "h"));
  EXPECT_FALSE(JobEndEvent(Job(JobState::kCancelled), true, 1000, "h"));
  EXPECT_FALSE(JobEndEvent(Job(JobState::kRunning), true, 1000, "h"));
  EXPECT_NE(JobEndEvent(Job(JobState::kFailed), false, 1, "h")->id,
            JobEndEvent(Job(JobState::kFailed), false, 1, "h")->id);
}

TEST(Webhook, BodyNamesJobOutcomesAndTimes) {
  auto e = JobEndEvent(Job(JobState::kPartial), false, 1796637600, "host1");
  nlohmann::json b = WebhookBody(*e);
  EXPECT_EQ(b["event"], "job.partial");
  EXPECT_EQ(b["time"], "2026-12-07T10:00:00Z");
  EXPECT_EQ(b["appliance"], "host1");
  EXPECT_EQ(b["job"]["id"], 42);
  EXPECT_EQ(b["job"]["kind"], "backup");
  EXPECT_EQ(b["job"]["repository"], "main");
  EXPECT_EQ(b["job"]["state"], "partial");
  EXPECT_EQ(b["job"]["started_at"], "2026-12-07T02:00:01Z");
  EXPECT_EQ(b["job"]["items"][1]["name"], "db1");
  EXPECT_EQ(b["job"]["items"][1]["outcome"], "failed");
  EXPECT_EQ(b["job"]["items"][1]["error"], "disk vda: read error");
  std::string summary = b["summary"];
  EXPECT_THAT(summary, HasSubstr("Backup job 42 (repository main) partial "
                                 "after 12m 03s: 1 of 2 VMs failed."));
  EXPECT_THAT(
      summary,
      HasSubstr(
          " Failed VMs (1 of 2): \"db1\" (failed: disk vda: read error)."));
  EXPECT_THAT(summary, Not(HasSubstr("http")));
}

TEST(Webhook, HmacMatchesRfc4231) {
  // RFC 4231, test case 2.
  EXPECT_EQ(HmacSha256Hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(Webhook, SignatureCoversTimestampAndBodyAsOpensslComputesIt) {
  std::string body = R"({"event":"job.failed","id":"abc"})";
  std::string sig = WebhookSignature("s3cret key", 1796637600, body);
  ASSERT_EQ(sig.substr(0, 7), "sha256=");
  EXPECT_EQ(sig, "sha256=" + HmacSha256Hex("s3cret key", "1796637600." + body));
  EXPECT_NE(sig, WebhookSignature("s3cret key", 1796637601, body));
  EXPECT_NE(sig, WebhookSignature("s3cret key", 1796637600, body + " "));
  // The same bytes through openssl dgst, as a receiver's script would.
  TempDir dir;
  std::string file = dir.Sub("signed");
  FILE* f = std::fopen(file.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::string signed_bytes = "1796637600." + body;
  std::fwrite(signed_bytes.data(), 1, signed_bytes.size(), f);
  std::fclose(f);
  FILE* p = popen(
      ("openssl dgst -sha256 -hmac 's3cret key' -r " + file).c_str(), "r");
  ASSERT_NE(p, nullptr);
  char out[200] = {};
  ASSERT_NE(std::fgets(out, sizeof out, p), nullptr);
  pclose(p);
  EXPECT_EQ("sha256=" + std::string(out).substr(0, 64), sig);
}

// Undoes QuotedPrintable, checking its rules on the way.
std::string DecodeQp(const std::string& qp) {
  std::string out;
  size_t pos = 0;
  while (pos < qp.size()) {
    size_t end = qp.find("\r\n", pos);
    EXPECT_NE(end, std::string::npos) << "line without CRLF";
    std::string line = qp.substr(pos, end - pos);
    EXPECT_LE(line.size(), 76u) << line;
    pos = end + 2;
    bool soft = !line.empty() && line.back() == '=';
    if (soft) line.pop_back();
    for (size_t i = 0; i < line.size(); ++i) {
      auto c = static_cast<unsigned char>(line[i]);
      EXPECT_TRUE(c == '\t' || (c >= 32 && c < 127)) << "raw byte " << int(c);
      if (line[i] == '=') {
        out += static_cast<char>(std::stoi(line.substr(i + 1, 2), nullptr, 16));
        i += 2;
      } else {
        out += line[i];
      }
    }
    if (!soft) out += '\n';
  }
  return out;
}

TEST(Mail, QuotedPrintableRoundTripsAndKeepsItsRules) {
  std::string text = "plain line\nan = sign and trailing space \n" +
                     std::string(200, 'x') + "\nUTF-8: Grüße, 数据\n\x01\x7f";
  std::string qp = QuotedPrintable(text);
  EXPECT_THAT(qp, HasSubstr("an =3D sign"));
  EXPECT_THAT(qp, HasSubstr("trailing space=20\r\n"));
  EXPECT_THAT(qp, HasSubstr("Gr=C3=BC=C3=9Fe"));
  EXPECT_EQ(DecodeQp(qp), text + "\n");
}

TEST(Mail, MessageHasDateIdSubjectAndNoInjectedHeaders) {
  OverdueVm o{"evil\r\nBcc: victim@example.org",
              "main",
              "nightly",
              1796551200,
              86400,
              1796637600};
  NotifyEvent e = OverdueEvent(o, 1796637600, "host1");
  MailMessage m = EventMail(e, "haven@example.org", {"ops@example.org"});
  EXPECT_THAT(m.subject, HasSubstr("[haven] VM evil??Bcc: victim@example.org "
                                   "overdue: no successful backup since "
                                   "2026-12-06T10:00:00Z"));
  std::string text = FormatMail(m, 0, "0123abcd", "host1");
  EXPECT_THAT(text, HasSubstr("Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n"));
  EXPECT_THAT(text, HasSubstr("Message-ID: <0123abcd.0@host1>\r\n"));
  EXPECT_THAT(text,
              HasSubstr("From: haven@example.org\r\nTo: ops@example.org\r\n"));
  EXPECT_THAT(text,
              HasSubstr("Content-Transfer-Encoding: quoted-printable\r\n"));
  // Headers end at the first blank line; none of them is a Bcc.
  std::string head = text.substr(0, text.find("\r\n\r\n") + 2);
  EXPECT_THAT(head, Not(HasSubstr("\r\nBcc:")));
  for (size_t i = 0; i < head.size(); ++i)
    if (head[i] == '\n') {
      EXPECT_EQ(head[i - 1], '\r');
    }
  std::string body = DecodeQp(text.substr(text.find("\r\n\r\n") + 4));
  EXPECT_THAT(body, HasSubstr("Last success:  2026-12-06T10:00:00Z"));
  EXPECT_THAT(body, HasSubstr("Expected:      every 24h 00m 00s"));
  EXPECT_THAT(body, Not(HasSubstr("\nBcc:")));
  EXPECT_EQ(MailDate(1796637600), "Mon, 07 Dec 2026 10:00:00 +0000");
}

TEST(Mail, JobMailNamesJobAndOutcome) {
  auto e = JobEndEvent(Job(JobState::kFailed), false, 1796637600, "host1");
  MailMessage m = EventMail(*e, "a@b", {"c@d"});
  EXPECT_EQ(m.subject, "[haven] backup job 42 failed (repository main)");
  EXPECT_THAT(m.body, HasSubstr("Job:           42 (backup)\n"));
  EXPECT_THAT(m.body, HasSubstr("Error:         1 of 2 VMs failed\n"));
  EXPECT_THAT(
      m.body,
      HasSubstr("  failed     db1\n               disk vda: read error\n"));
}

TEST(Mail, AddressesAreChecked) {
  EXPECT_THAT(ValidateMailAddress("ops@example.org"), IsOk());
  for (const char* bad : {"", "ops", "@x", "x@", "a@b@c", "a b@c", "<a@b>",
                          "a@b\r\nRCPT TO:<x@y>", "a\"@b"})
    EXPECT_THAT(
        ValidateMailAddress(bad),
        StatusIs(Code::kInvalidArgument, HasSubstr("not a mail address")))
        << bad;
}

TEST(NotifierOptions, SecretsFromFilesAndBadFieldsNamed) {
  TempDir dir;
  std::string secret = dir.Sub("secret");
  FILE* f = std::fopen(secret.c_str(), "w");
  std::fputs("hook-secret\n", f);
  std::fclose(f);
  NotifyConfig c;
  c.webhook_url = "https://hooks.example.org/x?token=t0ken";
  c.webhook_secret_file = secret;
  auto o = NotifierOptionsFromConfig(c, "h");
  ASSERT_THAT(o.status(), IsOk());
  EXPECT_EQ(o->webhook_secret, "hook-secret");
  c.webhook_url = "ftp://x/";
  EXPECT_THAT(NotifierOptionsFromConfig(c, "h"),
              StatusIs(Code::kInvalidArgument, HasSubstr("webhook_url")));
  c.webhook_url = "";
  c.smtp_url = "smtp://127.0.0.1:2525";
  c.smtp_from = "haven@example.org";
  EXPECT_THAT(NotifierOptionsFromConfig(c, "h"),
              StatusIs(Code::kInvalidArgument, HasSubstr("smtp_to")));
  c.smtp_to = {"ops@example.org", "x\r\n"};
  EXPECT_THAT(NotifierOptionsFromConfig(c, "h"),
              StatusIs(Code::kInvalidArgument, HasSubstr("notify smtp_to")));
  c.smtp_to = {"ops@example.org"};
  c.smtp_user = "u";
  EXPECT_THAT(
      NotifierOptionsFromConfig(c, "h"),
      StatusIs(Code::kInvalidArgument, HasSubstr("smtp_password_file")));
}

// ------------------------------------------------------------ overdue

constexpr int64_t kMon1000 = 1796637600;  // Mon 2026-12-07 10:00:00 UTC
constexpr int64_t kHour = 3600, kDay = 86400;

ScheduleCoverage Schedule(const char* name, const char* calendar,
                          const char* repository = "main") {
  ScheduleCoverage s;
  s.name = name;
  auto c = ParseCalendar(calendar);
  EXPECT_THAT(c.status(), IsOk()) << calendar;
  if (c.ok()) s.calendar = c.value();
  s.repository = repository;
  return s;
}

TEST(Overdue, LastTwoElapses) {
  auto daily =
      LastTwoElapses(Schedule("d", "*-*-* 02:00 UTC").calendar, kMon1000);
  ASSERT_TRUE(daily);
  EXPECT_EQ(daily->second, kMon1000 - 8 * kHour);
  EXPECT_EQ(daily->first, kMon1000 - 8 * kHour - kDay);
  auto tensec =
      LastTwoElapses(Schedule("t", "*:*:0/10 UTC").calendar, kMon1000 + 5);
  ASSERT_TRUE(tensec);
  EXPECT_EQ(tensec->second, kMon1000);
  EXPECT_EQ(tensec->first, kMon1000 - 10);
  // Weekdays: on Monday morning the last two are Friday and Monday.
  auto weekdays =
      LastTwoElapses(Schedule("w", "Mon..Fri 02:00 UTC").calendar, kMon1000);
  ASSERT_TRUE(weekdays);
  EXPECT_EQ(weekdays->second - weekdays->first, 3 * kDay);
  EXPECT_FALSE(
      LastTwoElapses(Schedule("y", "2020-01-01 UTC").calendar, kMon1000));
}

TEST(Overdue, DailyScheduleMissedRunIsOverdueAfterGrace) {
  std::vector<ScheduleCoverage> schedules = {
      Schedule("nightly", "*-*-* 02:00 UTC")};
  // web1 backed up this morning, web2 yesterday morning (this morning's run
  // failed for it). Grace: a quarter of a day.
  std::vector<VmLastSuccess> vms = {
      {"web1", "main", kMon1000 - 7 * kHour - 1800},
      {"web2", "main", kMon1000 - 31 * kHour - 1800}};
  auto overdue = FindOverdueVms(vms, schedules, kMon1000);
  ASSERT_EQ(overdue.size(), 1u);
  EXPECT_EQ(overdue[0].vm, "web2");
  EXPECT_EQ(overdue[0].schedule, "nightly");
  EXPECT_EQ(overdue[0].expected_interval_seconds, kDay);
  EXPECT_EQ(overdue[0].overdue_since,
            kMon1000 - 31 * kHour - 1800 + kDay + 6 * kHour);
  EXPECT_EQ(overdue[0].last_success, kMon1000 - 31 * kHour - 1800);
  // Two hours earlier it was still within the grace.
  EXPECT_TRUE(FindOverdueVms(vms, schedules, kMon1000 - 2 * kHour).empty());
  // A random delay of up to 3 h adds to the grace.
  schedules[0].random_delay_seconds = 3 * kHour;
  EXPECT_TRUE(FindOverdueVms(vms, schedules, kMon1000).empty());
  EXPECT_EQ(FindOverdueVms(vms, schedules, kMon1000 + 2 * kHour).size(), 1u);
}

TEST(Overdue, WeekdayScheduleNotOverdueAtTheWeekend) {
  std::vector<ScheduleCoverage> schedules = {
      Schedule("work", "Mon..Fri 02:00 UTC")};
  int64_t friday_run = kMon1000 - 3 * kDay - 7 * kHour - 1800;  // Fri 02:30
  std::vector<VmLastSuccess> vms = {{"db1", "main", friday_run}};
  int64_t sunday_noon = kMon1000 - kDay + 2 * kHour;
  EXPECT_TRUE(FindOverdueVms(vms, schedules, sunday_noon).empty());
  // Monday's run failed: overdue once Monday's elapse + interval + grace
  // from Friday's success have passed (Fri 02:30 + 3 d + 18 h).
  EXPECT_TRUE(FindOverdueVms(vms, schedules, kMon1000).empty());
  auto overdue = FindOverdueVms(vms, schedules, kMon1000 + kDay);
  ASSERT_EQ(overdue.size(), 1u);
  EXPECT_EQ(overdue[0].vm, "db1");
}

TEST(Overdue, SelectionsExclusionsNewSchedulesAndRepositories) {
  ScheduleCoverage all = Schedule("all", "hourly");
  all.exclude = {"test-*"};
  ScheduleCoverage listed = Schedule("listed", "hourly", "offsite");
  listed.all_vms = false;
  listed.vms = {"never"};
  ScheduleCoverage fresh = Schedule("fresh", "hourly", "third");
  fresh.all_vms = false;
  fresh.vms = {"brand-new"};
  fresh.created_at = kMon1000 - 60;  // after its last elapse
  std::vector<VmLastSuccess> vms = {{"web1", "main", kMon1000 - 3 * kHour},
                                    {"test-a", "main", kMon1000 - 30 * kDay},
                                    {"web1", "offsite", kMon1000 - 30 * kDay},
                                    {"ok1", "main", kMon1000 - 1800}};
  auto overdue = FindOverdueVms(vms, {all, listed, fresh}, kMon1000 + 1);
  ASSERT_EQ(overdue.size(), 2u);
  EXPECT_EQ(overdue[0].vm, "web1");
  EXPECT_EQ(overdue[0].repository, "main");
  EXPECT_EQ(overdue[0].expected_interval_seconds, kHour);
  EXPECT_EQ(overdue[1].vm, "never");
  EXPECT_EQ(overdue[1].repository, "offsite");
  EXPECT_FALSE(overdue[1].last_success.has_value());
}

TEST(Overdue, OneNotificationPerEpisode) {
  OverdueTracker t;
  OverdueVm a{"a", "main", "s", 1, 3600, 2}, b{"b", "main", "s", 1, 3600, 2};
  EXPECT_EQ(t.Update({a}), std::vector<OverdueVm>{a});
  EXPECT_TRUE(t.Update({a}).empty());
  EXPECT_EQ(t.Update({a, b}), std::vector<OverdueVm>{b});
  EXPECT_TRUE(t.Update({b}).empty());  // a had a success: its episode ended
  EXPECT_EQ(t.Update({a, b}), std::vector<OverdueVm>{a});
  EXPECT_EQ(t.current().size(), 2u);
}

TEST(DailyReport, JobsOverdueAndRepositories) {
  DailyReport r;
  r.now = kMon1000;
  r.appliance = "host1";
  r.jobs = {Job(JobState::kFailed), Job(JobState::kSucceeded)};
  r.jobs[1].id = 43;
  r.jobs[1].outcome = {};
  r.overdue = {{"web2", "main", "nightly", std::nullopt, kDay, kMon1000}};
  r.repositories = {{"main", true, 5ull << 30, 40ull << 30, 12, kMon1000},
                    {"offsite", false, 0, 0, 0, 0}};
  MailMessage m = DailyReportMail(r);
  EXPECT_EQ(m.subject,
            "[haven] daily report for host1: 2 jobs, 1 failed, 1 VMs overdue");
  EXPECT_THAT(m.body,
              HasSubstr("2026-12-06T10:00:00Z to 2026-12-07T10:00:00Z"));
  EXPECT_THAT(m.body, HasSubstr("Jobs (2): 1 failed, 1 succeeded\n"));
  EXPECT_THAT(m.body, HasSubstr("      42  backup       main         failed"));
  EXPECT_THAT(m.body, HasSubstr("db1: failed - disk vda: read error"));
  EXPECT_THAT(m.body, HasSubstr("  web2 in main: last success never, schedule "
                                "nightly expects every 24h 00m 00s\n"));
  EXPECT_THAT(m.body,
              HasSubstr("  main: 12 points, 40.0 GiB logical, 5.0 GiB stored"));
  EXPECT_THAT(m.body, HasSubstr("  offsite: not measured yet\n"));
}

}  // namespace
}  // namespace haven::appliance
