#include "appliance/daily_report.h"

#include <cstdio>
#include <map>

#include "base/bytes.h"
#include "base/time.h"

namespace haven::appliance {
namespace {

std::string IsoUtc(int64_t unix_seconds) {
  return FormatTime(unix_seconds * 1000000000, TimeStyle::kRfc3339Utc);
}

bool Bad(JobState s) {
  return s == JobState::kFailed || s == JobState::kPartial ||
         s == JobState::kInterrupted;
}

std::string JobLine(const JobRecord& job) {
  char head[160];
  std::snprintf(head, sizeof head, "  %6lld  %-12s %-12s %-12s ",
                static_cast<long long>(job.id),
                CleanText(job.spec.kind, 12).c_str(),
                CleanText(job.spec.repository, 12).c_str(),
                std::string(JobStateName(job.state)).c_str());
  std::string line =
      head + (job.started_at.empty() ? job.queued_at : job.started_at);
  if (job.duration_seconds > 0)
    line += "  " + HumanDuration(job.duration_seconds);
  size_t failed = 0;
  for (const JobItem& item : job.outcome.items) failed += !ItemOk(item);
  if (!job.outcome.items.empty())
    line += "  VMs " + std::to_string(job.outcome.items.size() - failed) +
            " ok" + (failed ? ", " + std::to_string(failed) + " failed" : "");
  line += "\n";
  if (!job.outcome.error.empty())
    line += "          " + CleanText(job.outcome.error, 300) + "\n";
  for (const JobItem& item : job.outcome.items)
    if (!ItemOk(item))
      line += "          " + CleanText(item.name, 80) + ": " +
              CleanText(item.outcome, 20) +
              (item.error.empty() ? "" : " - " + CleanText(item.error, 200)) +
              "\n";
  return line;
}

}  // namespace

MailMessage DailyReportMail(const DailyReport& r) {
  size_t bad = 0;
  std::map<std::string, size_t> by_state;
  for (const JobRecord& job : r.jobs) {
    bad += Bad(job.state);
    ++by_state[std::string(JobStateName(job.state))];
  }
  MailMessage m;
  m.subject = "[haven] daily report for " + CleanText(r.appliance, 80) + ": " +
              std::to_string(r.jobs.size()) + " jobs, " + std::to_string(bad) +
              " failed, " + std::to_string(r.overdue.size()) + " VMs overdue";
  std::string& b = m.body;
  b += "Haven appliance " + CleanText(r.appliance, 80) + ", " +
       IsoUtc(r.now - 86400) + " to " + IsoUtc(r.now) + "\n\n";
  b += "Jobs (" + std::to_string(r.jobs.size()) + ")";
  std::string counts;
  for (auto& [state, n] : by_state)
    counts += (counts.empty() ? "" : ", ") + std::to_string(n) + " " + state;
  b += counts.empty() ? ": none\n" : ": " + counts + "\n";
  for (const JobRecord& job : r.jobs) b += JobLine(job);
  b += "\nVMs overdue (" + std::to_string(r.overdue.size()) + ")";
  b += r.overdue.empty() ? ": none\n" : "\n";
  for (const OverdueVm& o : r.overdue)
    b += "  " + CleanText(o.vm, 80) + " in " + CleanText(o.repository, 40) +
         ": last success " +
         (o.last_success ? IsoUtc(*o.last_success) : std::string("never")) +
         ", schedule " + CleanText(o.schedule, 60) + " expects every " +
         HumanDuration(static_cast<double>(o.expected_interval_seconds)) + "\n";
  b += "\nRepositories (" + std::to_string(r.repositories.size()) + ")\n";
  for (const RepositoryMetric& repo : r.repositories) {
    b += "  " + CleanText(repo.name, 40) + ": ";
    if (!repo.measured) {
      b += "not measured yet\n";
      continue;
    }
    b += std::to_string(repo.points) + " points, " +
         HumanBytes(repo.logical_bytes) + " logical, " +
         HumanBytes(repo.stored_bytes) + " stored (measured " +
         IsoUtc(repo.measured_at) + ")\n";
  }
  return m;
}

}  // namespace haven::appliance
