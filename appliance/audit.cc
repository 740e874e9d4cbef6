#include "appliance/audit.h"

#include <chrono>
#include <utility>

#include "base/time.h"

namespace haven::appliance {
namespace {

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS audit_log (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  time INTEGER NOT NULL,
  who TEXT NOT NULL,
  peer TEXT NOT NULL,
  method TEXT NOT NULL,
  path TEXT NOT NULL,
  status INTEGER NOT NULL,
  detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_log_time ON audit_log (time);
)sql";

int64_t SystemNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Result<std::unique_ptr<AuditLog>> AuditLog::Open(StateDb& db,
                                                 std::function<int64_t()> now) {
  HAVEN_RETURN_IF_ERROR(db.EnsureTable(kSchema));
  if (!now) now = SystemNow;
  return std::unique_ptr<AuditLog>(new AuditLog(db, std::move(now)));
}

Status AuditLog::Record(AuditEntry e) {
  return db_
      .Query(
          "INSERT INTO audit_log (time, who, peer, method, path, status,"
          " detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
          {now_(), e.who, e.peer, e.method, e.path, int64_t{e.status},
           e.detail})
      .status();
}

Result<std::vector<AuditEntry>> AuditLog::List(const AuditQuery& q) {
  if (q.limit < 1 || q.limit > 1000)
    return InvalidArgument("limit is 1 to 1000, not " +
                           std::to_string(q.limit));
  // Absent bounds become values every row passes, so there is one query.
  std::vector<SqlValue> params = {
      q.since.value_or(INT64_MIN), q.until.value_or(INT64_MAX),
      q.before_id.value_or(INT64_MAX), int64_t{q.limit}};
  HAVEN_ASSIGN_OR_RETURN(
      auto rows,
      db_.Query("SELECT id, time, who, peer, method, path, status, detail"
                " FROM audit_log WHERE time >= ?1 AND time < ?2 AND id < ?3"
                " ORDER BY id DESC LIMIT ?4",
                params));
  std::vector<AuditEntry> out;
  for (const SqlRow& r : rows) {
    out.push_back({r.Int(0), r.Int(1), r.Text(2), r.Text(3), r.Text(4),
                   r.Text(5), static_cast<int>(r.Int(6)), r.Text(7)});
  }
  return out;
}

AuditSink AuditLog::Sink(std::function<void(const Status&)> on_error) {
  return [this, on_error = std::move(on_error)](
             const Caller& caller, const Request& request, const Route& route,
             int status) {
    AuditEntry e;
    e.who = caller.name;
    e.peer = request.peer;
    e.method = request.method;
    e.path = request.path;
    e.status = status;
    e.detail = route.summary;
    Status s = Record(std::move(e));
    if (!s.ok() && on_error) on_error(s.WithContext("audit log"));
  };
}

nlohmann::json AuditEntryJson(const AuditEntry& e) {
  return {{"id", e.id},
          {"time", FormatTime(e.time * 1000000000, TimeStyle::kRfc3339Utc)},
          {"who", e.who},
          {"peer", e.peer},
          {"method", e.method},
          {"path", e.path},
          {"status", e.status},
          {"detail", e.detail}};
}

}  // namespace haven::appliance
