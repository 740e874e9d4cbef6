#include "appliance/metrics.h"

#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

namespace haven::appliance {
namespace {

std::string Num(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

std::string Num(uint64_t v) { return std::to_string(v); }
std::string Num(int64_t v) { return std::to_string(v); }

// The length of the UTF-8 sequence at `s[i]`, or 0 when it is not one
// (overlong forms, surrogates and values past U+10FFFF included).
size_t Utf8Length(std::string_view s, size_t i) {
  auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return 1;
  size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
  if (n == 0 || c > 0xf4 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return 0;
  auto c1 = static_cast<unsigned char>(s[i + 1]);
  if (c == 0xe0 && c1 < 0xa0) return 0;   // overlong
  if (c == 0xed && c1 >= 0xa0) return 0;  // surrogate
  if (c == 0xf0 && c1 < 0x90) return 0;   // overlong
  if (c == 0xf4 && c1 >= 0x90) return 0;  // past U+10FFFF
  return n;
}

class Writer {
 public:
  void Family(std::string_view name, std::string_view type,
              std::string_view help) {
    out_ += "# HELP " + std::string(name) + " " + std::string(help) + "\n";
    out_ += "# TYPE " + std::string(name) + " " + std::string(type) + "\n";
  }
  // `labels` are name/value pairs; values are escaped here.
  void Sample(
      std::string_view name,
      std::initializer_list<std::pair<std::string_view, std::string_view>>
          labels,
      const std::string& value) {
    out_ += name;
    if (labels.size() > 0) {
      out_ += "{";
      bool first = true;
      for (auto& [k, v] : labels) {
        if (!first) out_ += ",";
        first = false;
        out_ += std::string(k) + "=\"" + EscapeLabelValue(v) + "\"";
      }
      out_ += "}";
    }
    out_ += " " + value + "\n";
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

void JobDurations(Writer& w, const std::vector<JobDurationMetric>& all) {
  w.Family("haven_job_duration_seconds", "histogram",
           "How long ended jobs ran, from start to end, by kind.");
  for (const JobDurationMetric& d : all) {
    double sum = 0;
    for (double s : d.seconds) sum += s;
    for (double bound : kJobDurationBuckets) {
      uint64_t n = 0;
      for (double s : d.seconds) n += s <= bound;
      w.Sample("haven_job_duration_seconds_bucket",
               {{"kind", d.kind}, {"le", Num(bound)}}, Num(n));
    }
    w.Sample("haven_job_duration_seconds_bucket",
             {{"kind", d.kind}, {"le", "+Inf"}},
             Num(uint64_t{d.seconds.size()}));
    w.Sample("haven_job_duration_seconds_sum", {{"kind", d.kind}}, Num(sum));
    w.Sample("haven_job_duration_seconds_count", {{"kind", d.kind}},
             Num(uint64_t{d.seconds.size()}));
  }
}

void Repositories(Writer& w, const std::vector<RepositoryMetric>& all) {
  struct Family {
    const char* name;
    const char* help;
    uint64_t RepositoryMetric::*field;
  };
  static const Family kFamilies[] = {
      {"haven_repository_stored_bytes",
       "Bytes the repository's packs take on its storage.",
       &RepositoryMetric::stored_bytes},
      {"haven_repository_logical_bytes",
       "Bytes its recovery points hold, before deduplication and compression.",
       &RepositoryMetric::logical_bytes},
      {"haven_repository_points", "Recovery points in the repository.",
       &RepositoryMetric::points},
  };
  for (const Family& f : kFamilies) {
    w.Family(f.name, "gauge", f.help);
    for (const RepositoryMetric& r : all)
      if (r.measured)
        w.Sample(f.name, {{"repository", r.name}}, Num(r.*f.field));
  }
  w.Family("haven_repository_usage_timestamp_seconds", "gauge",
           "When the repository's usage figures were measured.");
  for (const RepositoryMetric& r : all)
    if (r.measured)
      w.Sample("haven_repository_usage_timestamp_seconds",
               {{"repository", r.name}}, Num(r.measured_at));
}

}  // namespace

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  for (size_t i = 0; i < value.size();) {
    char c = value[i];
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    size_t n = Utf8Length(value, i);
    if (c == '\\' || c == '"' || c == '\n') {
      ++i;
    } else if (n == 0) {
      out += "\xef\xbf\xbd";  // U+FFFD
      ++i;
    } else {
      out.append(value.substr(i, n));
      i += n;
    }
  }
  return out;
}

std::string RenderMetrics(const MetricsSnapshot& s) {
  Writer w;
  w.Family("haven_vm_last_success_timestamp_seconds", "gauge",
           "When the VM's last successful backup into the repository ended.");
  for (const VmBackupMetric& v : s.vms)
    w.Sample("haven_vm_last_success_timestamp_seconds",
             {{"vm", v.vm}, {"repository", v.repository}}, Num(v.last_success));
  w.Family("haven_vm_last_backup_bytes", "gauge",
           "Bytes the VM's last successful backup read from its disks.");
  for (const VmBackupMetric& v : s.vms)
    w.Sample("haven_vm_last_backup_bytes",
             {{"vm", v.vm}, {"repository", v.repository}}, Num(v.read_bytes));
  w.Family("haven_vm_last_backup_stored_bytes", "gauge",
           "Bytes the VM's last successful backup added to the repository.");
  for (const VmBackupMetric& v : s.vms)
    w.Sample("haven_vm_last_backup_stored_bytes",
             {{"vm", v.vm}, {"repository", v.repository}}, Num(v.stored_bytes));
  w.Family("haven_jobs_total", "counter",
           "Jobs in havend's history by kind and state.");
  for (const JobCountMetric& j : s.jobs)
    w.Sample("haven_jobs_total", {{"kind", j.kind}, {"state", j.state}},
             Num(j.count));
  JobDurations(w, s.durations);
  w.Family("haven_jobs_running", "gauge", "Jobs running now.");
  w.Sample("haven_jobs_running", {}, Num(s.jobs_running));
  w.Family("haven_jobs_queued", "gauge", "Jobs waiting to run.");
  w.Sample("haven_jobs_queued", {}, Num(s.jobs_queued));
  Repositories(w, s.repositories);
  if (s.rss_bytes) {
    w.Family("process_resident_memory_bytes", "gauge",
             "Resident memory size in bytes.");
    w.Sample("process_resident_memory_bytes", {}, Num(*s.rss_bytes));
  }
  if (s.start_time) {
    w.Family("process_start_time_seconds", "gauge",
             "Start time of the process since the epoch in seconds.");
    w.Sample("process_start_time_seconds", {}, Num(*s.start_time));
  }
  return w.Take();
}

std::optional<uint64_t> ProcessRssBytes() {
  std::ifstream in("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  if (!(in >> size >> resident)) return std::nullopt;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

std::optional<double> ProcessStartTime() {
  std::ifstream stat("/proc/self/stat");
  std::string line;
  if (!std::getline(stat, line)) return std::nullopt;
  // Fields after the command (which may hold spaces and parentheses).
  size_t close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  uint64_t start_ticks = 0;
  for (int i = 3; i <= 22 && rest >> field; ++i)
    if (i == 22) start_ticks = std::stoull(field);
  std::ifstream proc_stat("/proc/stat");
  uint64_t boot = 0;
  while (std::getline(proc_stat, line))
    if (line.rfind("btime ", 0) == 0) boot = std::stoull(line.substr(6));
  if (boot == 0 || start_ticks == 0) return std::nullopt;
  return static_cast<double>(boot) +
         static_cast<double>(start_ticks) /
             static_cast<double>(sysconf(_SC_CLK_TCK));
}

}  // namespace haven::appliance
