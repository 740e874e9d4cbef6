// The daily summary report mailed at notify.daily_report (a calendar
// event): the jobs of the last 24 hours with their outcomes, the VMs
// overdue, and each repository's usage. Made by a pure function from a
// plain struct, so it is tested without a database or a mail server.
#ifndef HAVEN_APPLIANCE_DAILY_REPORT_H_
#define HAVEN_APPLIANCE_DAILY_REPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "appliance/jobs.h"
#include "appliance/metrics.h"
#include "appliance/notify_message.h"

namespace haven::appliance {

struct DailyReport {
  int64_t now = 0;  // Unix seconds; the report covers [now - 24 h, now]
  std::string appliance;
  std::vector<JobRecord> jobs;  // queued in the period, newest first
  std::vector<OverdueVm> overdue;
  std::vector<RepositoryMetric> repositories;
};

// Subject "[haven] daily report for HOST: 12 jobs, 1 failed, 2 VMs
// overdue" and a plain-text body of three sections. From/To are left empty
// (the notifier fills in the configured ones).
MailMessage DailyReportMail(const DailyReport& report);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_DAILY_REPORT_H_
