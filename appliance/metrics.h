// /metrics: havend's figures in the Prometheus text exposition format
// 0.0.4, built by a pure function from a plain snapshot (so it is tested
// without a database); appliance/history_queries.h fills the snapshot from
// the state database.
//
//   haven_vm_last_success_timestamp_seconds{vm,repository}  gauge
//   haven_vm_last_backup_bytes{vm,repository}      bytes read from the VM
//   haven_vm_last_backup_stored_bytes{vm,repository}  bytes it added
//   haven_jobs_total{kind,state}                   counter (history)
//   haven_job_duration_seconds{kind}               histogram (ended jobs)
//   haven_jobs_running, haven_jobs_queued          gauges
//   haven_repository_stored_bytes{repository}      packs on storage
//   haven_repository_logical_bytes{repository}     what the points hold
//   haven_repository_points{repository}
//   haven_repository_usage_timestamp_seconds{repository}  when measured
//   process_resident_memory_bytes, process_start_time_seconds
//
// Label values (VM names are untrusted: any bytes a libvirt domain name may
// hold) are escaped as the format says: \ as \\, " as \", newline as \n;
// bytes that are not UTF-8 would break a scraper, so they become U+FFFD.
#ifndef HAVEN_APPLIANCE_METRICS_H_
#define HAVEN_APPLIANCE_METRICS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace haven::appliance {

inline constexpr char kMetricsContentType[] =
    "text/plain; version=0.0.4; charset=utf-8";

struct VmBackupMetric {
  std::string vm, repository;
  int64_t last_success = 0;  // Unix seconds
  uint64_t read_bytes = 0, stored_bytes = 0;
};

struct JobCountMetric {
  std::string kind, state;
  uint64_t count = 0;
};

// Upper bounds of haven_job_duration_seconds's buckets (then +Inf).
inline constexpr double kJobDurationBuckets[] = {
    10, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400};

struct JobDurationMetric {
  std::string kind;
  std::vector<double> seconds;  // one per ended job with start and end
};

struct RepositoryMetric {
  std::string name;
  bool measured = false;  // false: only the name is known yet
  uint64_t stored_bytes = 0, logical_bytes = 0, points = 0;
  int64_t measured_at = 0;  // Unix seconds
};

struct MetricsSnapshot {
  std::vector<VmBackupMetric> vms;
  std::vector<JobCountMetric> jobs;
  std::vector<JobDurationMetric> durations;
  uint64_t jobs_running = 0, jobs_queued = 0;
  std::vector<RepositoryMetric> repositories;
  std::optional<uint64_t> rss_bytes;
  std::optional<double> start_time;  // Unix seconds
};

// The exposition text: HELP and TYPE for each family, then its samples;
// ends with a newline.
std::string RenderMetrics(const MetricsSnapshot& snapshot);

// A label value as the format wants it inside its double quotes.
std::string EscapeLabelValue(std::string_view value);

// This process's resident set size (/proc/self/statm), or nullopt.
std::optional<uint64_t> ProcessRssBytes();
// When this process started (/proc/self/stat), Unix seconds, or nullopt.
std::optional<double> ProcessStartTime();

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_METRICS_H_
