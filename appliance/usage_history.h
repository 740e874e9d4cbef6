// UsageHistory: each repository's measured usage over time, for the
// console's chart (GET /api/v1/repositories/{name}/usage, routes_usage.cc).
//
// RepositoryUsageCache (notify_monitor.h) measures a repository at
// havend's start, after each job into it and every usage_max_age; each
// measurement is offered here and kept as a sample:
//
//   usage_samples  repository, time (seconds since the epoch, UTC),
//                  logical_bytes, stored_bytes, points
//
// At most one sample per repository per kMinInterval: a measurement
// sooner than that after the repository's last sample is not kept (the
// next one after the interval is). Samples older than kKeep are deleted as
// new ones arrive.
//
// Thread-safe (the StateDb serializes).
#ifndef HAVEN_APPLIANCE_USAGE_HISTORY_H_
#define HAVEN_APPLIANCE_USAGE_HISTORY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "appliance/metrics.h"
#include "appliance/state_db.h"

namespace haven::appliance {

struct UsageSample {
  int64_t time = 0;  // seconds since the epoch
  uint64_t logical_bytes = 0, stored_bytes = 0, points = 0;
};

class UsageHistory {
 public:
  static constexpr int64_t kMinInterval = 10 * 60;   // seconds
  static constexpr int64_t kKeep = 400 * 24 * 3600;  // seconds
  static constexpr int kMaxDays = 400;

  // Makes the table when missing. `db` must outlive the history.
  static Result<std::unique_ptr<UsageHistory>> Open(StateDb& db);

  // Keeps `measured` (a measured RepositoryMetric; its measured_at is the
  // sample's time) unless the repository has a sample less than
  // kMinInterval older. Returns whether it was kept.
  Result<bool> Record(const RepositoryMetric& measured);
  // The samples of `repository` at or after `since`, oldest first.
  Result<std::vector<UsageSample>> Samples(const std::string& repository,
                                           int64_t since);

 private:
  explicit UsageHistory(StateDb& db) : db_(db) {}
  StateDb& db_;
};

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_USAGE_HISTORY_H_
