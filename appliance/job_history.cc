// SqlJobService: the job history in the state database — the tables, the
// outcome of an ended job, the log, and the queries the API reads.
#include "appliance/job_service.h"
#include "base/json.h"
#include "base/time.h"

namespace haven::appliance {
namespace {

// Times are ISO 8601 UTC strings as NowIso8601() writes them (fixed width,
// so they sort as text). A job's params and result are JSON text; sizes
// are bytes. The log keeps its lines numbered from 1 per job.
constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS jobs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  repository TEXT NOT NULL,
  params TEXT NOT NULL,
  requested_by TEXT NOT NULL,
  schedule_id INTEGER,
  state TEXT NOT NULL,  -- queued running succeeded partial failed cancelled interrupted
  queued_at TEXT NOT NULL,
  started_at TEXT,
  ended_at TEXT,
  duration_seconds REAL,
  error TEXT,
  read_bytes INTEGER NOT NULL DEFAULT 0,
  new_bytes INTEGER NOT NULL DEFAULT 0,
  stored_bytes INTEGER NOT NULL DEFAULT 0,
  result TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, id);
CREATE TABLE IF NOT EXISTS job_items (
  job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  name TEXT NOT NULL,
  outcome TEXT NOT NULL,
  error TEXT,
  read_bytes INTEGER NOT NULL DEFAULT 0,
  new_bytes INTEGER NOT NULL DEFAULT 0,
  stored_bytes INTEGER NOT NULL DEFAULT 0,
  detail TEXT,
  PRIMARY KEY (job_id, seq)
);
CREATE TABLE IF NOT EXISTS job_log (
  job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  line INTEGER NOT NULL,
  time TEXT NOT NULL,
  text TEXT NOT NULL,
  PRIMARY KEY (job_id, line)
);
)sql";

constexpr char kColumns[] =
    "SELECT id, kind, repository, params, requested_by, schedule_id, state, "
    "queued_at, started_at, ended_at, duration_seconds, error, read_bytes, "
    "new_bytes, stored_bytes, result FROM jobs ";
// A listing leaves out each job's result (the core's whole report, parsed
// per row): 100 backups' reports cost more than the rest of the listing.
constexpr char kListColumns[] =
    "SELECT id, kind, repository, params, requested_by, schedule_id, state, "
    "queued_at, started_at, ended_at, duration_seconds, error, read_bytes, "
    "new_bytes, stored_bytes, NULL FROM jobs ";

nlohmann::json ParseStored(const std::string& text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  return j.is_discarded() ? nlohmann::json::object() : j;
}

JobRecord RecordFromRow(const SqlRow& row) {
  JobRecord r;
  r.id = row.Int(0);
  r.spec.kind = row.Text(1);
  r.spec.repository = row.Text(2);
  r.spec.params = ParseStored(row.Text(3));
  r.spec.requested_by = row.Text(4);
  if (!row.IsNull(5)) r.spec.schedule_id = row.Int(5);
  r.state = ParseJobState(row.Text(6)).value_or(JobState::kFailed);
  r.queued_at = row.Text(7);
  r.started_at = row.Text(8);
  r.ended_at = row.Text(9);
  r.duration_seconds = row.Real(10);
  r.outcome.state = r.state;
  r.outcome.error = row.Text(11);
  r.outcome.read_bytes = static_cast<uint64_t>(row.Int(12));
  r.outcome.new_bytes = static_cast<uint64_t>(row.Int(13));
  r.outcome.stored_bytes = static_cast<uint64_t>(row.Int(14));
  if (!row.IsNull(15)) r.outcome.result = ParseStored(row.Text(15));
  return r;
}

}  // namespace

std::string_view JobStateName(JobState state) {
  switch (state) {
    case JobState::kQueued:
      return "queued";
    case JobState::kRunning:
      return "running";
    case JobState::kSucceeded:
      return "succeeded";
    case JobState::kPartial:
      return "partial";
    case JobState::kFailed:
      return "failed";
    case JobState::kCancelled:
      return "cancelled";
    case JobState::kInterrupted:
      return "interrupted";
  }
  return "failed";
}

std::optional<JobState> ParseJobState(std::string_view name) {
  for (JobState s :
       {JobState::kQueued, JobState::kRunning, JobState::kSucceeded,
        JobState::kPartial, JobState::kFailed, JobState::kCancelled,
        JobState::kInterrupted})
    if (JobStateName(s) == name) return s;
  return std::nullopt;
}

Result<std::unique_ptr<SqlJobService>> SqlJobService::Create(
    StateDb& db, JobServiceOptions options) {
  if (options.max_jobs < 1 || options.max_jobs_per_repository < 1)
    return InvalidArgument(
        "max jobs and max jobs per repository must be at least 1");
  if (options.max_log_lines < 1) options.max_log_lines = 1;
  HAVEN_RETURN_IF_ERROR(db.EnsureTable(kSchema));
  std::unique_ptr<SqlJobService> s(new SqlJobService(db, std::move(options)));
  HAVEN_RETURN_IF_ERROR(s->MarkInterruptedAtStart());
  return s;
}

Status SqlJobService::MarkInterruptedAtStart() {
  HAVEN_ASSIGN_OR_RETURN(
      auto rows, db_.Query("SELECT id FROM jobs WHERE state = 'running'"));
  if (rows.empty()) return OkStatus();
  std::string now = NowIso8601();
  const std::string why =
      "havend stopped while this job ran; its repository is as after a "
      "crash (the next backup reuses what it stored)";
  StateDb::Transaction tx(db_);
  HAVEN_RETURN_IF_ERROR(tx.status());
  for (const SqlRow& row : rows) {
    int64_t id = row.Int(0);
    HAVEN_RETURN_IF_ERROR(
        db_.Query("UPDATE jobs SET state = 'interrupted', ended_at = ?2, "
                  "error = ?3, duration_seconds = max(0, (julianday(?2) - "
                  "julianday(started_at)) * 86400.0) WHERE id = ?1",
                  {id, now, why})
            .status());
    AppendLog(id, "interrupted: " + why);
  }
  HAVEN_RETURN_IF_ERROR(tx.Commit());
  interrupted_at_start_ = static_cast<int64_t>(rows.size());
  return OkStatus();
}

void SqlJobService::AppendLog(int64_t id, const std::string& line) {
  // One statement: the line number is taken and used atomically, whichever
  // thread of the job logs.
  Status s = db_.Query(
                    "INSERT INTO job_log (job_id, line, time, text) SELECT "
                    "?1, coalesce(max(line), 0) + 1, ?2, ?3 FROM job_log "
                    "WHERE job_id = ?1",
                    {id, NowIso8601(), line})
                 .status();
  if (!s.ok() && options_.log)
    options_.log("job " + std::to_string(id) +
                 ": cannot store a log line: " + s.message());
}

Status SqlJobService::StoreOutcome(int64_t id, const JobOutcome& outcome,
                                   const std::string& ended_at,
                                   double duration) {
  StateDb::Transaction tx(db_);
  HAVEN_RETURN_IF_ERROR(tx.status());
  auto i64 = [](uint64_t v) { return static_cast<int64_t>(v); };
  HAVEN_RETURN_IF_ERROR(
      db_.Query(
             "UPDATE jobs SET state = ?2, ended_at = ?3, "
             "duration_seconds = ?4, error = ?5, read_bytes = ?6, "
             "new_bytes = ?7, stored_bytes = ?8, result = ?9 WHERE id = ?1",
             {id, std::string(JobStateName(outcome.state)), ended_at, duration,
              outcome.error, i64(outcome.read_bytes), i64(outcome.new_bytes),
              i64(outcome.stored_bytes), DumpJson(outcome.result)})
          .status());
  int64_t seq = 0;
  for (const JobItem& item : outcome.items) {
    HAVEN_RETURN_IF_ERROR(
        db_.Query("INSERT INTO job_items (job_id, seq, name, outcome, error, "
                  "read_bytes, new_bytes, stored_bytes, detail) VALUES (?1, "
                  "?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                  {id, ++seq, item.name, item.outcome, item.error,
                   i64(item.read_bytes), i64(item.new_bytes),
                   i64(item.stored_bytes), DumpJson(item.detail)})
            .status());
  }
  return tx.Commit();
}

Result<std::vector<JobRecord>> SqlJobService::Records(
    const std::string& where, const std::vector<SqlValue>& params,
    const std::string& tail, bool with_result) {
  HAVEN_ASSIGN_OR_RETURN(
      auto rows,
      db_.Query((with_result ? kColumns : kListColumns) + where + tail,
                params));
  std::vector<JobRecord> out;
  out.reserve(rows.size());
  std::lock_guard lock(mu_);
  auto now = std::chrono::steady_clock::now();
  for (const SqlRow& row : rows) {
    JobRecord r = RecordFromRow(row);
    if (r.state == JobState::kQueued) {
      auto it = queue_reasons_.find(r.id);
      r.queue_reason = it != queue_reasons_.end()
                           ? it->second
                           : "waiting for havend to start its jobs";
    } else {
      FillLiveLocked(r, now);
    }
    out.push_back(std::move(r));
  }
  return out;
}

Result<JobRecord> SqlJobService::Get(int64_t id) {
  HAVEN_ASSIGN_OR_RETURN(
      auto records, Records("WHERE id = ?1", {id}, "", /*with_result=*/true));
  if (records.empty()) return NotFound("there is no job " + std::to_string(id));
  JobRecord r = std::move(records.front());
  HAVEN_ASSIGN_OR_RETURN(
      auto items,
      db_.Query("SELECT name, outcome, error, read_bytes, new_bytes, "
                "stored_bytes, detail FROM job_items WHERE job_id = ?1 ORDER "
                "BY seq",
                {id}));
  for (const SqlRow& row : items) {
    JobItem item;
    item.name = row.Text(0);
    item.outcome = row.Text(1);
    item.error = row.Text(2);
    item.read_bytes = static_cast<uint64_t>(row.Int(3));
    item.new_bytes = static_cast<uint64_t>(row.Int(4));
    item.stored_bytes = static_cast<uint64_t>(row.Int(5));
    item.detail = ParseStored(row.Text(6));
    r.outcome.items.push_back(std::move(item));
  }
  return r;
}

Result<std::vector<JobRecord>> SqlJobService::List(const JobFilter& filter) {
  std::string where = "WHERE 1";
  std::vector<SqlValue> params;
  auto add = [&](const std::string& clause, SqlValue v) {
    params.push_back(std::move(v));
    std::string n = "?" + std::to_string(params.size());
    std::string c = clause;
    c.replace(c.find('?'), 1, n);
    where += " AND " + c;
  };
  if (filter.state) add("state = ?", std::string(JobStateName(*filter.state)));
  if (!filter.kind.empty()) add("kind = ?", filter.kind);
  if (!filter.repository.empty()) add("repository = ?", filter.repository);
  if (!filter.since.empty()) {
    HAVEN_ASSIGN_OR_RETURN(
        auto ok, db_.QueryOne("SELECT julianday(?1)", {filter.since}));
    if (!ok || ok->IsNull(0))
      return InvalidArgument("since: " + QuoteUntrusted(filter.since) +
                             " is not an ISO 8601 time such as "
                             "2026-12-07T02:00:00Z or a date 2026-12-07");
    add("julianday(queued_at) >= julianday(?)", filter.since);
  }
  if (filter.schedule_id) add("schedule_id = ?", filter.schedule_id);
  if (filter.before_id > 0) add("id < ?", filter.before_id);
  size_t limit = std::min<size_t>(std::max<size_t>(filter.limit, 1), 1000);
  return Records(where, params,
                 " ORDER BY id DESC LIMIT " + std::to_string(limit),
                 /*with_result=*/false);
}

Result<std::vector<std::pair<int64_t, std::string>>> SqlJobService::Log(
    int64_t id, int64_t after) {
  HAVEN_ASSIGN_OR_RETURN(
      auto job, db_.QueryOne("SELECT 1 FROM jobs WHERE id = ?1", {id}));
  if (!job) return NotFound("there is no job " + std::to_string(id));
  HAVEN_ASSIGN_OR_RETURN(
      auto rows,
      db_.Query("SELECT line, time, text FROM job_log WHERE job_id = ?1 AND "
                "line > ?2 ORDER BY line LIMIT 5000",
                {id, after}));
  std::vector<std::pair<int64_t, std::string>> out;
  out.reserve(rows.size());
  for (const SqlRow& row : rows)
    out.emplace_back(row.Int(0), row.Text(1) + " " + row.Text(2));
  return out;
}

}  // namespace haven::appliance
