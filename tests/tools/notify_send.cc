// Test driver for havend's notifier (tests/integration/notify_test.sh):
// sends one notification of a made-up job through the real Notifier —
// webhook and/or SMTP over libcurl, with its queue, retries and timeouts —
// waits until it is delivered or given up, and prints the counts as JSON.
//
//   notify_send [--webhook-url U] [--secret-file F] [--smtp-url U]
//               [--from A] [--to A]... [--smtp-user U --password-file F]
//               [--state failed|partial|interrupted|succeeded|cancelled]
//               [--on-success] [--overdue VM] [--daily-report]
//               [--retry-delays 0.5,1] [--timeout S] [--wait S]
//               [--ca-file PEM]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <string>

#include "appliance/daily_report.h"
#include "appliance/notifier.h"
#include "base/time.h"

using namespace haven;
using namespace haven::appliance;

namespace {

JobRecord MadeUpJob(JobState state) {
  JobRecord job;
  job.id = 42;
  job.spec.kind = "backup";
  job.spec.repository = "main";
  job.spec.requested_by = "schedule:nightly";
  job.state = state;
  job.queued_at = "2026-12-07T02:00:00Z";
  job.started_at = "2026-12-07T02:00:01Z";
  job.ended_at = "2026-12-07T02:12:04Z";
  job.duration_seconds = 723;
  JobItem ok{"web1", "ok", "", 10u << 20, 2u << 20, 1u << 20, {}};
  JobItem bad{
      "db\n1 \"evil\"", "failed", "disk vda: read error at 4096", 0, 0, 0, {}};
  job.outcome.state = state;
  job.outcome.items = {ok};
  if (state != JobState::kSucceeded) {
    job.outcome.items.push_back(bad);
    job.outcome.error = "1 of 2 VMs failed";
  }
  job.outcome.read_bytes = ok.read_bytes;
  job.outcome.new_bytes = ok.new_bytes;
  job.outcome.stored_bytes = ok.stored_bytes;
  return job;
}

int Usage(const char* why) {
  std::fprintf(stderr, "notify_send: %s\n", why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  NotifyConfig config;
  std::string state = "failed", overdue_vm, retry = "0.5,1", ca_file;
  bool daily = false;
  double wait = 30, timeout = 5;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    bool has_value = i + 1 < argc;
    auto next = [&] { return std::string(argv[++i]); };
    if (a == "--on-success")
      config.on_success = true;
    else if (a == "--daily-report")
      daily = true;
    else if (!has_value)
      return Usage(("missing value or unknown " + a).c_str());
    else if (a == "--webhook-url")
      config.webhook_url = next();
    else if (a == "--secret-file")
      config.webhook_secret_file = next();
    else if (a == "--smtp-url")
      config.smtp_url = next();
    else if (a == "--from")
      config.smtp_from = next();
    else if (a == "--to")
      config.smtp_to.push_back(next());
    else if (a == "--smtp-user")
      config.smtp_user = next();
    else if (a == "--password-file")
      config.smtp_password_file = next();
    else if (a == "--ca-file")
      ca_file = next();
    else if (a == "--state")
      state = next();
    else if (a == "--overdue")
      overdue_vm = next();
    else if (a == "--retry-delays")
      retry = next();
    else if (a == "--timeout")
      timeout = std::atof(next().c_str());
    else if (a == "--wait")
      wait = std::atof(next().c_str());
    else
      return Usage(("unknown option " + a).c_str());
  }
  auto options = NotifierOptionsFromConfig(config, "haven-test");
  if (!options.ok()) {
    std::fprintf(stderr, "notify_send: error: %s\n",
                 options.status().message().c_str());
    return 1;
  }
  options->retry_delays.clear();
  for (char* p = retry.data(); *p;) {
    char* end = nullptr;
    double delay = std::strtod(p, &end);
    if (end == p) return Usage("--retry-delays: seconds separated by commas");
    options->retry_delays.push_back(delay);
    p = *end == ',' ? end + 1 : end;
  }
  options->ca_file = ca_file;
  options->timeout_seconds = static_cast<long>(timeout);
  options->connect_timeout_seconds = static_cast<long>(timeout);
  options->log = [](const std::string& line) {
    std::fprintf(stderr, "%s\n", line.c_str());
  };
  auto job_state = ParseJobState(state);
  if (!job_state) return Usage("bad --state");

  int64_t now = static_cast<int64_t>(std::time(nullptr));
  Notifier notifier(std::move(options.value()));
  double t0 = MonotonicSeconds();
  if (daily) {
    DailyReport report;
    report.now = now;
    report.appliance = "haven-test";
    report.jobs = {MadeUpJob(*job_state)};
    report.overdue = {
        {"web2", "main", "nightly", now - 3 * 86400, 86400, now - 3600}};
    report.repositories = {{"main", true, 5ull << 30, 40ull << 30, 12, now}};
    notifier.SendMail(DailyReportMail(report));
  } else if (!overdue_vm.empty()) {
    notifier.Notify(OverdueEvent(
        {overdue_vm, "main", "nightly", now - 2 * 86400, 86400, now - 60}, now,
        "haven-test"));
  } else {
    notifier.NotifyJobEnd(MadeUpJob(*job_state));
  }
  double enqueue = MonotonicSeconds() - t0;
  bool idle = notifier.WaitIdle(wait);
  Notifier::Counts c = notifier.counts();
  nlohmann::json out = {{"enqueue_seconds", enqueue},
                        {"idle", idle},
                        {"sent", c.sent},
                        {"retried", c.retried},
                        {"given_up", c.given_up}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
