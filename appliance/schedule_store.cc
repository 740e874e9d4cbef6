#include "appliance/schedule_store.h"

#include "base/json.h"

namespace haven::appliance {
namespace {

constexpr char kTable[] = R"sql(
CREATE TABLE IF NOT EXISTS schedules (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL UNIQUE,
  calendar TEXT NOT NULL,
  normalized TEXT NOT NULL,
  kind TEXT NOT NULL,
  repository TEXT NOT NULL,
  params TEXT NOT NULL,
  retention TEXT NOT NULL DEFAULT '',
  random_delay_seconds INTEGER NOT NULL DEFAULT 0,
  persistent INTEGER NOT NULL DEFAULT 1,
  enabled INTEGER NOT NULL DEFAULT 1,
  anchor INTEGER NOT NULL,
  last_triggered INTEGER NOT NULL DEFAULT 0,
  last_elapse INTEGER NOT NULL DEFAULT 0,
  last_job_id INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '',
  created INTEGER NOT NULL,
  changed INTEGER NOT NULL);
)sql";

constexpr char kColumns[] =
    "id, name, calendar, normalized, kind, repository, params, retention, "
    "random_delay_seconds, persistent, enabled, anchor, last_triggered, "
    "last_elapse, last_job_id, last_error, created, changed";

Schedule FromRow(const SqlRow& r) {
  Schedule s;
  s.id = r.Int(0);
  s.spec.name = r.Text(1);
  s.spec.calendar = r.Text(2);
  s.normalized = r.Text(3);
  s.spec.kind = r.Text(4);
  s.spec.repository = r.Text(5);
  // Written by this file from checked JSON; a damaged cell reads as
  // "no parameters" rather than throwing on a handler thread.
  s.spec.params = nlohmann::json::parse(r.Text(6), nullptr, false);
  if (s.spec.params.is_discarded()) s.spec.params = nlohmann::json::object();
  std::string retention = r.Text(7);
  s.spec.retention = retention.empty()
                         ? nlohmann::json(nullptr)
                         : nlohmann::json::parse(retention, nullptr, false);
  if (s.spec.retention.is_discarded()) s.spec.retention = nullptr;
  s.spec.random_delay_seconds = r.Int(8);
  s.spec.persistent = r.Int(9) != 0;
  s.spec.enabled = r.Int(10) != 0;
  s.anchor = r.Int(11);
  s.last_triggered = r.Int(12);
  s.last_elapse = r.Int(13);
  s.last_job_id = r.Int(14);
  s.last_error = r.Text(15);
  s.created = r.Int(16);
  s.changed = r.Int(17);
  return s;
}

Result<std::string> NormalizedOf(const ScheduleSpec& spec) {
  HAVEN_ASSIGN_OR_RETURN(CalendarEvent event,
                         ParseScheduleCalendar(spec.calendar));
  return Normalized(event);
}

std::string RetentionText(const ScheduleSpec& spec) {
  return spec.retention.is_null() ? "" : DumpJson(spec.retention);
}

Status NameTaken(const std::string& name) {
  return AlreadyExists("a schedule named " + QuoteUntrusted(name) +
                       " already exists");
}

}  // namespace

Result<ScheduleStore> ScheduleStore::Open(StateDb& db) {
  HAVEN_RETURN_IF_ERROR(db.EnsureTable(kTable));
  return ScheduleStore(db);
}

Result<std::optional<Schedule>> ScheduleStore::Find(int64_t id) {
  HAVEN_ASSIGN_OR_RETURN(auto row,
                         db_->QueryOne(std::string("SELECT ") + kColumns +
                                           " FROM schedules WHERE id = ?1",
                                       {id}));
  if (!row) return std::optional<Schedule>();
  return std::optional<Schedule>(FromRow(*row));
}

Result<Schedule> ScheduleStore::Get(int64_t id) {
  HAVEN_ASSIGN_OR_RETURN(auto found, Find(id));
  if (!found) return NotFound("no schedule with id " + std::to_string(id));
  return *found;
}

Result<std::vector<Schedule>> ScheduleStore::List() {
  HAVEN_ASSIGN_OR_RETURN(auto rows,
                         db_->Query(std::string("SELECT ") + kColumns +
                                    " FROM schedules ORDER BY id"));
  std::vector<Schedule> out;
  out.reserve(rows.size());
  for (const SqlRow& r : rows) out.push_back(FromRow(r));
  return out;
}

Result<int64_t> ScheduleStore::Count() {
  HAVEN_ASSIGN_OR_RETURN(auto row,
                         db_->QueryOne("SELECT COUNT(*) FROM schedules"));
  return row ? row->Int(0) : 0;
}

Result<Schedule> ScheduleStore::Insert(const ScheduleSpec& spec, int64_t now) {
  HAVEN_ASSIGN_OR_RETURN(std::string normalized, NormalizedOf(spec));
  StateDb::Transaction tx(*db_);
  HAVEN_RETURN_IF_ERROR(tx.status());
  HAVEN_ASSIGN_OR_RETURN(
      auto taken,
      db_->QueryOne("SELECT id FROM schedules WHERE name = ?1", {spec.name}));
  if (taken) return NameTaken(spec.name);
  HAVEN_RETURN_IF_ERROR(
      db_->Query(
             "INSERT INTO schedules (name, calendar, normalized, kind, "
             "repository, params, retention, random_delay_seconds, "
             "persistent, enabled, anchor, created, changed) VALUES (?1, ?2, "
             "?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?11)",
             {spec.name, spec.calendar, normalized, spec.kind, spec.repository,
              DumpJson(spec.params), RetentionText(spec),
              spec.random_delay_seconds, int64_t{spec.persistent},
              int64_t{spec.enabled}, now})
          .status());
  int64_t id = db_->LastInsertId();
  HAVEN_RETURN_IF_ERROR(tx.Commit());
  return Get(id);
}

Result<Schedule> ScheduleStore::Update(int64_t id, const ScheduleSpec& spec,
                                       int64_t now) {
  HAVEN_ASSIGN_OR_RETURN(std::string normalized, NormalizedOf(spec));
  StateDb::Transaction tx(*db_);
  HAVEN_RETURN_IF_ERROR(tx.status());
  HAVEN_ASSIGN_OR_RETURN(Schedule old, Get(id));
  HAVEN_ASSIGN_OR_RETURN(
      auto taken,
      db_->QueryOne("SELECT id FROM schedules WHERE name = ?1 AND id != ?2",
                    {spec.name, id}));
  if (taken) return NameTaken(spec.name);
  // A new calendar, or a schedule enabled again, starts from now: the
  // elapses it "missed" before the change were never its runs.
  bool restart =
      old.normalized != normalized || (spec.enabled && !old.spec.enabled);
  int64_t anchor = restart ? now : old.anchor;
  HAVEN_RETURN_IF_ERROR(
      db_->Query("UPDATE schedules SET name = ?1, calendar = ?2, "
                 "normalized = ?3, kind = ?4, repository = ?5, params = ?6, "
                 "retention = ?7, random_delay_seconds = ?8, persistent = ?9, "
                 "enabled = ?10, anchor = ?11, changed = ?12 WHERE id = ?13",
                 {spec.name, spec.calendar, normalized, spec.kind,
                  spec.repository, DumpJson(spec.params), RetentionText(spec),
                  spec.random_delay_seconds, int64_t{spec.persistent},
                  int64_t{spec.enabled}, anchor, now, id})
          .status());
  HAVEN_RETURN_IF_ERROR(tx.Commit());
  return Get(id);
}

Status ScheduleStore::Delete(int64_t id) {
  StateDb::Transaction tx(*db_);
  HAVEN_RETURN_IF_ERROR(tx.status());
  HAVEN_RETURN_IF_ERROR(
      db_->Query("DELETE FROM schedules WHERE id = ?1", {id}).status());
  if (db_->Changes() == 0)
    return NotFound("no schedule with id " + std::to_string(id));
  return tx.Commit();
}

Status ScheduleStore::MarkTriggered(int64_t id, int64_t elapse, int64_t at) {
  return db_
      ->Query(
          "UPDATE schedules SET anchor = ?1, last_triggered = ?1, "
          "last_elapse = ?2 WHERE id = ?3",
          {at, elapse, id})
      .status();
}

Status ScheduleStore::RecordSubmission(int64_t id, int64_t job_id,
                                       const std::string& error) {
  return db_
      ->Query(
          "UPDATE schedules SET last_job_id = ?1, last_error = ?2 "
          "WHERE id = ?3",
          {job_id, error, id})
      .status();
}

Status ScheduleStore::SkipMissedRuns(int64_t now) {
  return db_
      ->Query(
          "UPDATE schedules SET anchor = ?1 WHERE persistent = 0 AND "
          "anchor < ?1",
          {now})
      .status();
}

}  // namespace haven::appliance
