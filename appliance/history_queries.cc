#include "appliance/history_queries.h"

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "appliance/notify_monitor.h"
#include "base/time.h"

namespace haven::appliance {
namespace {

Result<bool> TableExists(StateDb& db, const char* table) {
  HAVEN_ASSIGN_OR_RETURN(
      auto row, db.QueryOne("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                            "AND name = ?1",
                            {std::string(table)}));
  return row.has_value();
}

// A time column: ISO 8601 text (as JobRecord shows it) or Unix seconds.
std::optional<double> TimeOf(const SqlRow& row, size_t i) {
  if (row.IsNull(i)) return std::nullopt;
  if (const auto* n = std::get_if<int64_t>(&row.columns[i]))
    return static_cast<double>(*n);
  if (const auto* d = std::get_if<double>(&row.columns[i])) return *d;
  auto t = ParseIsoInstant(row.Text(i));
  if (!t.ok()) return std::nullopt;
  return static_cast<double>(t->seconds) + t->nanos / 1e9;
}

std::vector<std::string> Strings(const nlohmann::json& j) {
  std::vector<std::string> out;
  if (!j.is_array()) return out;
  for (const auto& v : j)
    if (v.is_string()) out.push_back(v.get<std::string>());
  return out;
}

}  // namespace

Result<std::vector<VmBackupMetric>> LoadVmLastBackups(StateDb& db) {
  std::vector<VmBackupMetric> out;
  HAVEN_ASSIGN_OR_RETURN(bool jobs, TableExists(db, "jobs"));
  HAVEN_ASSIGN_OR_RETURN(bool items, TableExists(db, "job_items"));
  if (!jobs || !items) return out;
  // SQLite takes the bare columns from the row holding MAX(j.id): the
  // latest successful item of each (VM, repository).
  HAVEN_ASSIGN_OR_RETURN(
      auto rows,
      db.Query("SELECT i.name, j.repository, MAX(j.id), j.ended_at, "
               "i.read_bytes, i.stored_bytes FROM job_items i "
               "JOIN jobs j ON j.id = i.job_id "
               "WHERE j.kind = 'backup' AND i.outcome = 'ok' "
               "GROUP BY i.name, j.repository ORDER BY j.repository, i.name"));
  for (const SqlRow& r : rows) {
    VmBackupMetric m;
    m.vm = r.Text(0);
    m.repository = r.Text(1);
    m.last_success = static_cast<int64_t>(TimeOf(r, 3).value_or(0));
    m.read_bytes = static_cast<uint64_t>(r.Int(4));
    m.stored_bytes = static_cast<uint64_t>(r.Int(5));
    out.push_back(std::move(m));
  }
  return out;
}

std::vector<VmLastSuccess> LastSuccesses(
    const std::vector<VmBackupMetric>& backups) {
  std::vector<VmLastSuccess> out;
  for (const VmBackupMetric& b : backups)
    out.push_back({b.vm, b.repository,
                   b.last_success > 0 ? std::optional<int64_t>(b.last_success)
                                      : std::nullopt});
  return out;
}

Result<std::vector<VmLastSuccess>> LoadKnownVms(StateDb& db) {
  HAVEN_ASSIGN_OR_RETURN(auto backups, LoadVmLastBackups(db));
  std::vector<VmLastSuccess> out = LastSuccesses(backups);
  HAVEN_ASSIGN_OR_RETURN(bool jobs, TableExists(db, "jobs"));
  HAVEN_ASSIGN_OR_RETURN(bool items, TableExists(db, "job_items"));
  if (!jobs || !items) return out;
  HAVEN_ASSIGN_OR_RETURN(
      auto rows,
      db.Query("SELECT DISTINCT i.name, j.repository FROM job_items i "
               "JOIN jobs j ON j.id = i.job_id "
               "WHERE j.kind = 'backup' AND i.outcome != 'skipped'"));
  std::set<std::pair<std::string, std::string>> have;
  for (const VmLastSuccess& v : out) have.insert({v.vm, v.repository});
  for (const SqlRow& r : rows)
    if (have.insert({r.Text(0), r.Text(1)}).second)
      out.push_back({r.Text(0), r.Text(1), std::nullopt});
  return out;
}

Status LoadJobFigures(StateDb& db, MetricsSnapshot& s) {
  HAVEN_ASSIGN_OR_RETURN(bool jobs, TableExists(db, "jobs"));
  if (!jobs) return OkStatus();
  HAVEN_ASSIGN_OR_RETURN(auto counts,
                         db.Query("SELECT kind, state, COUNT(*) FROM jobs "
                                  "GROUP BY kind, state ORDER BY kind, state"));
  for (const SqlRow& r : counts) {
    s.jobs.push_back({r.Text(0), r.Text(1), static_cast<uint64_t>(r.Int(2))});
    if (r.Text(1) == "running") s.jobs_running += r.Int(2);
    if (r.Text(1) == "queued") s.jobs_queued += r.Int(2);
  }
  HAVEN_ASSIGN_OR_RETURN(
      auto ended, db.Query("SELECT kind, duration_seconds FROM jobs "
                           "WHERE started_at IS NOT NULL AND ended_at IS NOT "
                           "NULL AND duration_seconds IS NOT NULL "
                           "ORDER BY kind"));
  std::map<std::string, std::vector<double>> by_kind;
  for (const SqlRow& r : ended)
    if (r.Real(1) >= 0) by_kind[r.Text(0)].push_back(r.Real(1));
  for (auto& [kind, seconds] : by_kind)
    s.durations.push_back({kind, std::move(seconds)});
  return OkStatus();
}

Result<std::vector<ScheduleCoverage>> LoadBackupSchedules(StateDb& db) {
  std::vector<ScheduleCoverage> out;
  HAVEN_ASSIGN_OR_RETURN(bool exists, TableExists(db, "schedules"));
  if (!exists) return out;
  HAVEN_ASSIGN_OR_RETURN(
      auto rows, db.Query("SELECT name, calendar, repository, params, "
                          "created, random_delay_seconds FROM schedules "
                          "WHERE kind = 'backup' AND enabled != 0 "
                          "ORDER BY name"));
  for (const SqlRow& r : rows) {
    auto calendar = ParseCalendar(r.Text(1));
    if (!calendar.ok()) continue;
    ScheduleCoverage s;
    s.name = r.Text(0);
    s.calendar = std::move(calendar.value());
    s.repository = r.Text(2);
    // The backup job's params (appliance/job_kinds.cc): "vms" chosen, or
    // "all" with "exclude".
    auto params = nlohmann::json::parse(r.Text(3), nullptr, false);
    if (params.is_object()) {
      s.vms = Strings(params.value("vms", nlohmann::json()));
      s.exclude = Strings(params.value("exclude", nlohmann::json()));
      auto all = params.find("all");
      s.all_vms = all != params.end() && all->is_boolean() ? all->get<bool>()
                                                           : s.vms.empty();
    }
    s.created_at = static_cast<int64_t>(TimeOf(r, 4).value_or(0));
    s.random_delay_seconds = r.Int(5);
    out.push_back(std::move(s));
  }
  return out;
}

Result<MetricsSnapshot> CollectMetrics(StateDb& db,
                                       const RepositoryUsageCache* usage) {
  MetricsSnapshot s;
  HAVEN_ASSIGN_OR_RETURN(s.vms, LoadVmLastBackups(db));
  HAVEN_RETURN_IF_ERROR(LoadJobFigures(db, s));
  if (usage) s.repositories = usage->Get();
  s.rss_bytes = ProcessRssBytes();
  s.start_time = ProcessStartTime();
  return s;
}

}  // namespace haven::appliance
