// NotifyMonitor: havend's watch for things to tell and to measure.
//
//   JobService::OnJobEnd(job)  -> Notifier::NotifyJobEnd (queued, returns
//                                 at once) and the job's repository marked
//                                 for measuring
//   every check_interval:  VMs overdue (FindOverdueVms over the history and
//                          the backup schedules) -> a notification for each
//                          VM that became overdue since the last check;
//                          repositories stale or older than usage_max_age
//                          measured (repository::MeasureUsage);
//                          at notify.daily_report's elapse: the daily
//                          report mailed (a report missed while havend was
//                          down is not sent late)
//
// The notifier and the daily report's event are asked of a NotifierHolder
// (notify_settings.h) at each use: settings saved through the API apply at
// the next job end, overdue check or report (within check_interval).
//
// Overdue episodes are kept in memory: after a restart a VM still overdue
// is told once more.
#ifndef HAVEN_APPLIANCE_NOTIFY_MONITOR_H_
#define HAVEN_APPLIANCE_NOTIFY_MONITOR_H_

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "appliance/metrics.h"
#include "appliance/notifier.h"
#include "appliance/overdue.h"
#include "appliance/services.h"
#include "base/calendar.h"

namespace haven::appliance {

// Each configured repository's last measured usage, for /metrics and the
// daily report. Thread-safe.
class RepositoryUsageCache {
 public:
  explicit RepositoryUsageCache(const RepositoryCatalog& repositories)
      : repositories_(repositories) {}
  // Every configured repository, measured or not, in the config's order.
  std::vector<RepositoryMetric> Get() const;
  void MarkStale(const std::string& repository);
  // `f` hears of each measurement that succeeded (outside the cache's lock,
  // on the thread that measured): the usage history's samples
  // (usage_history.h). Set before the first Refresh.
  void OnMeasured(std::function<void(const RepositoryMetric&)> f) {
    on_measured_ = std::move(f);
  }
  // Measures each repository marked stale or tried longer ago than
  // `max_age_seconds` (opening it read-only, not waiting for its lock: a
  // repository busy with gc keeps its old figures until the next try). A
  // failure is logged when its reason changes.
  void Refresh(double max_age_seconds,
               const std::function<void(const std::string&)>& log);

 private:
  const RepositoryCatalog& repositories_;
  mutable std::mutex mu_;
  std::map<std::string, RepositoryMetric> measured_;
  std::map<std::string, bool> stale_;
  std::map<std::string, int64_t> attempted_;   // Unix seconds
  std::map<std::string, std::string> errors_;  // the last failure's reason
  std::function<void(const RepositoryMetric&)> on_measured_;
};

struct MonitorOptions {
  double check_interval_seconds = 60;
  double usage_max_age_seconds = 600;
  OverduePolicy overdue;
  std::string daily_report;  // calendar event; "" : no report
  std::function<void(const std::string&)> log;
};

class NotifierHolder;  // appliance/notify_settings.h

class NotifyMonitor {
 public:
  // Hooks into services.jobs (OnJobEnd) and starts the thread. `notifier`
  // may be null (nothing configured: figures are still measured).
  // InvalidArgument when options.daily_report does not parse.
  static Result<std::unique_ptr<NotifyMonitor>> Start(
      Services& services, Notifier* notifier, RepositoryUsageCache* usage,
      MonitorOptions options);
  // The same, asking `notifiers` (notify_settings.h; must outlive the
  // monitor) for the notifier and the daily report's calendar event at
  // each use, so settings changed through the API apply without a restart
  // (options.daily_report is not used).
  static Result<std::unique_ptr<NotifyMonitor>> Start(
      Services& services, NotifierHolder* notifiers,
      RepositoryUsageCache* usage, MonitorOptions options);
  ~NotifyMonitor();

  // The VMs overdue at the last check.
  std::vector<OverdueVm> Overdue() const;
  // Runs a check now (overdue, usage), as the thread does; for tests.
  void CheckNow();
  // The daily report as it would be mailed now.
  MailMessage DailyReportNow();

 private:
  NotifyMonitor(Services& services, NotifierHolder* notifiers,
                RepositoryUsageCache* usage, MonitorOptions options);
  // Hooks into the job service and starts the thread.
  void Launch();
  // Follows the holder's daily report event when it changed.
  void FollowDailyReport(int64_t now);
  void Run();
  void OnJobEnd(const JobRecord& job);
  void CheckOverdue(int64_t now);
  void Log(const std::string& line) const;

  Services& services_;
  NotifierHolder* notifiers_;
  std::unique_ptr<NotifierHolder> own_notifiers_;  // Start(Notifier*)
  // The daily report's event that report_event_ was parsed from.
  std::optional<std::string> report_spec_;
  RepositoryUsageCache* usage_;
  MonitorOptions options_;
  std::optional<CalendarEvent> report_event_;
  std::optional<int64_t> next_report_;
  std::string last_error_;  // logged once until it changes
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false, wake_ = false;
  OverdueTracker tracker_;
  // The OnJobEnd callback outlives this monitor inside the JobService: it
  // reaches the monitor only through the hook, which ~NotifyMonitor clears.
  struct Hook {
    std::mutex mu;
    NotifyMonitor* monitor = nullptr;
  };
  std::shared_ptr<Hook> hook_;
  std::thread thread_;
};

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_NOTIFY_MONITOR_H_
