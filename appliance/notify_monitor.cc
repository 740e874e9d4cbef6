#include "appliance/notify_monitor.h"

#include <malloc.h>

#include <ctime>

#include "appliance/daily_report.h"
#include "appliance/history_queries.h"
#include "appliance/notify_settings.h"
#include "base/time.h"
#include "repository/usage.h"

namespace haven::appliance {
namespace {

int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

}  // namespace

std::vector<RepositoryMetric> RepositoryUsageCache::Get() const {
  std::lock_guard lock(mu_);
  std::vector<RepositoryMetric> out;
  for (const RepositoryConfig& r : repositories_.config().repositories) {
    auto it = measured_.find(r.name);
    out.push_back(it != measured_.end() ? it->second
                                        : RepositoryMetric{.name = r.name});
  }
  return out;
}

void RepositoryUsageCache::MarkStale(const std::string& repository) {
  std::lock_guard lock(mu_);
  stale_[repository] = true;
}

void RepositoryUsageCache::Refresh(
    double max_age_seconds,
    const std::function<void(const std::string&)>& log) {
  for (const RepositoryConfig& r : repositories_.config().repositories) {
    {
      std::lock_guard lock(mu_);
      // A repository that cannot be opened is tried again after the same
      // age as a measured one, not at every check.
      auto it = attempted_.find(r.name);
      bool fresh =
          it != attempted_.end() && Now() - it->second < max_age_seconds;
      if (fresh && !stale_[r.name]) continue;
      stale_[r.name] = false;
      attempted_[r.name] = Now();
    }
    repository::OpenOptions options;
    options.lock_wait_seconds = 0;
    auto repo = repositories_.Open(r.name, options);
    Result<repository::RepositoryUsage> usage =
        repo.ok() ? repository::MeasureUsage(*repo.value())
                  : Result<repository::RepositoryUsage>(repo.status());
    std::unique_lock lock(mu_);
    if (!usage.ok()) {
      // Logged when the reason changes, not every time.
      std::string& last = errors_[r.name];
      if (log && last != usage.status().message())
        log("repository " + r.name +
            ": usage not measured: " + usage.status().message());
      last = usage.status().message();
      continue;
    }
    errors_.erase(r.name);
    RepositoryMetric m{
        r.name,        true, usage->stored_bytes, usage->logical_bytes,
        usage->points, Now()};
    measured_[r.name] = m;
    lock.unlock();
    if (on_measured_) on_measured_(m);
  }
}

Result<std::unique_ptr<NotifyMonitor>> NotifyMonitor::Start(
    Services& services, Notifier* notifier, RepositoryUsageCache* usage,
    MonitorOptions options) {
  if (!options.daily_report.empty()) {
    auto parsed = ParseCalendar(options.daily_report);
    if (!parsed.ok()) return parsed.status().WithContext("notify daily_report");
  }
  auto own = std::make_unique<NotifierHolder>();
  // Not owned: the caller keeps `notifier` alive longer than the monitor.
  own->Set(std::shared_ptr<Notifier>(std::shared_ptr<Notifier>(), notifier),
           options.daily_report);
  std::unique_ptr<NotifyMonitor> m(
      new NotifyMonitor(services, own.get(), usage, std::move(options)));
  m->own_notifiers_ = std::move(own);
  m->Launch();
  return m;
}

Result<std::unique_ptr<NotifyMonitor>> NotifyMonitor::Start(
    Services& services, NotifierHolder* notifiers, RepositoryUsageCache* usage,
    MonitorOptions options) {
  std::unique_ptr<NotifyMonitor> m(
      new NotifyMonitor(services, notifiers, usage, std::move(options)));
  m->Launch();
  return m;
}

void NotifyMonitor::Launch() {
  FollowDailyReport(Now());
  hook_ = std::make_shared<Hook>();
  hook_->monitor = this;
  if (services_.jobs) {
    services_.jobs->OnJobEnd([hook = hook_](const JobRecord& job) {
      std::lock_guard lock(hook->mu);
      if (hook->monitor) hook->monitor->OnJobEnd(job);
    });
  }
  thread_ = std::thread([this] { Run(); });
}

void NotifyMonitor::FollowDailyReport(int64_t now) {
  std::string spec = notifiers_->daily_report();
  if (report_spec_ && *report_spec_ == spec) return;
  report_spec_ = spec;
  report_event_.reset();
  next_report_.reset();
  if (spec.empty()) return;
  auto parsed = ParseCalendar(spec);
  if (!parsed.ok()) {
    Log("no daily report: notify daily_report: " + parsed.status().message());
    return;
  }
  report_event_ = std::move(parsed.value());
  next_report_ = NextElapse(*report_event_, now);
}

NotifyMonitor::NotifyMonitor(Services& services, NotifierHolder* notifiers,
                             RepositoryUsageCache* usage,
                             MonitorOptions options)
    : services_(services),
      notifiers_(notifiers),
      usage_(usage),
      options_(std::move(options)) {}

NotifyMonitor::~NotifyMonitor() {
  if (hook_) {
    std::lock_guard lock(hook_->mu);
    hook_->monitor = nullptr;
  }
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void NotifyMonitor::Log(const std::string& line) const {
  if (options_.log) options_.log(line);
}

void NotifyMonitor::OnJobEnd(const JobRecord& job) {
  if (auto notifier = notifiers_->Get()) notifier->NotifyJobEnd(job);
  if (usage_ && !job.spec.repository.empty())
    usage_->MarkStale(job.spec.repository);
  {
    std::lock_guard lock(mu_);
    wake_ = true;  // a success may end an overdue episode
  }
  cv_.notify_all();
}

void NotifyMonitor::CheckOverdue(int64_t now) {
  if (!services_.db) return;
  auto known = LoadKnownVms(*services_.db);
  auto schedules = LoadBackupSchedules(*services_.db);
  Status status = !known.ok() ? known.status() : schedules.status();
  if (!status.ok()) {
    if (status.message() != last_error_)
      Log("overdue check: " + status.message());
    last_error_ = status.message();
    return;
  }
  last_error_.clear();
  auto overdue =
      FindOverdueVms(known.value(), schedules.value(), now, options_.overdue);
  std::vector<OverdueVm> fresh;
  {
    std::lock_guard lock(mu_);
    fresh = tracker_.Update(overdue);
  }
  for (const OverdueVm& vm : fresh) {
    Log("VM " + QuoteUntrusted(vm.vm) + " overdue in repository " +
        vm.repository + " (schedule " + QuoteUntrusted(vm.schedule) + ")");
    if (auto notifier = notifiers_->Get())
      notifier->Notify(OverdueEvent(vm, now, notifier->options().appliance));
  }
}

std::vector<OverdueVm> NotifyMonitor::Overdue() const {
  std::lock_guard lock(mu_);
  return tracker_.current();
}

void NotifyMonitor::CheckNow() {
  CheckOverdue(Now());
  if (usage_) usage_->Refresh(options_.usage_max_age_seconds, options_.log);
}

MailMessage NotifyMonitor::DailyReportNow() {
  DailyReport r;
  r.now = Now();
  auto notifier = notifiers_->Get();
  r.appliance = notifier ? notifier->options().appliance : "";
  if (services_.jobs) {
    JobFilter filter;
    filter.since =
        FormatTime((r.now - 86400) * 1000000000, TimeStyle::kRfc3339Utc);
    filter.limit = 1000;
    auto jobs = services_.jobs->List(filter);
    if (jobs.ok())
      r.jobs = std::move(jobs.value());
    else
      Log("daily report: jobs not listed: " + jobs.status().message());
  }
  r.overdue = Overdue();
  if (usage_) r.repositories = usage_->Get();
  return DailyReportMail(r);
}

void NotifyMonitor::Run() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    lock.unlock();
    CheckNow();
    // Give back the heap that measuring (scrypt's 32 MiB, RocksDB's caches),
    // jobs and requests freed: glibc keeps freed memory in each thread's
    // arena, which left an idle havend at 53 MiB RSS instead of 36 MiB
    // (bench/havend.sh, docs/benchmark-results.md). Cheap: once a check.
    malloc_trim(0);
    int64_t now = Now();
    FollowDailyReport(now);
    if (next_report_ && now >= *next_report_) {
      auto notifier = notifiers_->Get();
      if (notifier && notifier->has_mail()) {
        Log("daily report mailed");
        notifier->SendMail(DailyReportNow());
      }
      next_report_ = NextElapse(*report_event_, now);
    }
    lock.lock();
    double wait = options_.check_interval_seconds;
    if (next_report_)
      wait = std::min(
          wait, std::max(0.5, static_cast<double>(*next_report_ - Now())));
    cv_.wait_for(lock, std::chrono::duration<double>(wait),
                 [this] { return stop_ || wake_; });
    wake_ = false;
  }
}

}  // namespace haven::appliance
