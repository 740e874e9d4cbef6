#include "appliance/restore_plans.h"

#include <openssl/rand.h>

#include <ctime>

#include "base/json.h"
#include "base/time.h"

namespace haven::appliance {
namespace {

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS restore_plans (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  repository TEXT NOT NULL,
  request TEXT NOT NULL,
  plan TEXT NOT NULL,
  view TEXT NOT NULL,
  conflicts INTEGER NOT NULL,
  created_by TEXT NOT NULL,
  created_at TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  job_id INTEGER
);
CREATE INDEX IF NOT EXISTS restore_plans_expires ON restore_plans(expires_at);
)sql";

constexpr char kColumns[] =
    "SELECT id, kind, repository, request, plan, view, conflicts, "
    "created_by, created_at, expires_at, job_id FROM restore_plans "
    "WHERE id = ?1";

int64_t Now(int64_t now) {
  return now != 0 ? now : static_cast<int64_t>(std::time(nullptr));
}

Result<std::string> NewId() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1)
    return Internal("the random generator failed to make a plan id");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  for (unsigned char b : bytes) {
    id += kHex[b >> 4];
    id += kHex[b & 15];
  }
  return id;
}

Result<nlohmann::json> ParseColumn(const std::string& text, const char* what) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded())
    return DataLoss(std::string("the stored restore plan's ") + what +
                    " is not JSON");
  return j;
}

Result<StoredPlan> FromRow(const SqlRow& row) {
  StoredPlan p;
  p.id = row.Text(0);
  p.kind = row.Text(1);
  p.repository = row.Text(2);
  HAVEN_ASSIGN_OR_RETURN(p.request, ParseColumn(row.Text(3), "request"));
  HAVEN_ASSIGN_OR_RETURN(p.plan, ParseColumn(row.Text(4), "plan"));
  HAVEN_ASSIGN_OR_RETURN(p.view, ParseColumn(row.Text(5), "view"));
  p.conflicts = row.Int(6);
  p.created_by = row.Text(7);
  p.created_at = row.Text(8);
  p.expires_at = row.Int(9);
  p.job_id = row.IsNull(10) ? -1 : row.Int(10);
  return p;
}

// Plan ids are 32 lower-case hex digits; anything else is not looked up.
bool ValidId(const std::string& id) {
  if (id.size() != 32) return false;
  for (char c : id)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

Status UnknownPlan(const std::string& id) {
  return NotFound("no restore plan " + QuoteUntrusted(id) +
                  " (plans are kept for " +
                  std::to_string(kRestorePlanLifetimeSeconds / 60) +
                  " minutes; make a new one)");
}

}  // namespace

std::string IsoUtc(int64_t unix_seconds) {
  return FormatTime(unix_seconds * 1000000000, TimeStyle::kRfc3339Utc);
}

Result<RestorePlanStore> RestorePlanStore::Open(StateDb& db) {
  HAVEN_RETURN_IF_ERROR(db.EnsureTable(kSchema));
  return RestorePlanStore(db);
}

Status RestorePlanStore::Put(StoredPlan& plan, int64_t now) {
  now = Now(now);
  HAVEN_ASSIGN_OR_RETURN(plan.id, NewId());
  plan.created_at = IsoUtc(now);
  plan.expires_at = now + kRestorePlanLifetimeSeconds;
  plan.job_id = -1;
  // Expired plans nobody ran are of no use; a plan that ran stays while its
  // job's history may point at it (a day).
  HAVEN_RETURN_IF_ERROR(
      db_->Query("DELETE FROM restore_plans WHERE expires_at < ?1 AND "
                 "(job_id IS NULL OR expires_at < ?2)",
                 {now, now - 86400})
          .status());
  return db_
      ->Query(
          "INSERT INTO restore_plans (id, kind, repository, request, plan, "
          "view, conflicts, created_by, created_at, expires_at) VALUES "
          "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
          {plan.id, plan.kind, plan.repository, DumpJson(plan.request),
           DumpJson(plan.plan), DumpJson(plan.view), plan.conflicts,
           plan.created_by, plan.created_at, plan.expires_at})
      .status();
}

Result<StoredPlan> RestorePlanStore::Get(const std::string& id) {
  if (!ValidId(id)) return UnknownPlan(id);
  HAVEN_ASSIGN_OR_RETURN(auto row, db_->QueryOne(kColumns, {id}));
  if (!row) return UnknownPlan(id);
  return FromRow(*row);
}

Result<StoredPlan> RestorePlanStore::Claim(const std::string& id, int64_t now) {
  now = Now(now);
  StateDb::Transaction tx(*db_);
  HAVEN_RETURN_IF_ERROR(tx.status());
  HAVEN_ASSIGN_OR_RETURN(StoredPlan plan, Get(id));
  if (plan.job_id > 0)
    return FailedPrecondition("restore plan " + id + " already ran as job " +
                              std::to_string(plan.job_id) +
                              "; a plan runs once: make a new one");
  if (plan.job_id == 0)
    return FailedPrecondition("restore plan " + id +
                              " is being submitted by another request");
  if (plan.expires_at <= now)
    return FailedPrecondition("restore plan " + id + " expired at " +
                              IsoUtc(plan.expires_at) +
                              "; the host may have changed since: make a "
                              "new plan");
  HAVEN_RETURN_IF_ERROR(
      db_->Query("UPDATE restore_plans SET job_id = 0 WHERE id = ?1", {id})
          .status());
  HAVEN_RETURN_IF_ERROR(tx.Commit());
  plan.job_id = 0;
  return plan;
}

Status RestorePlanStore::SetJob(const std::string& id, int64_t job_id) {
  if (job_id < 0)
    return db_
        ->Query("UPDATE restore_plans SET job_id = NULL WHERE id = ?1", {id})
        .status();
  return db_
      ->Query("UPDATE restore_plans SET job_id = ?2 WHERE id = ?1",
              {id, job_id})
      .status();
}

}  // namespace haven::appliance
