#include "appliance/usage_history.h"

namespace haven::appliance {
namespace {

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS usage_samples (
  repository TEXT NOT NULL,
  time INTEGER NOT NULL,
  logical_bytes INTEGER NOT NULL,
  stored_bytes INTEGER NOT NULL,
  points INTEGER NOT NULL,
  PRIMARY KEY (repository, time));
)sql";

}  // namespace

Result<std::unique_ptr<UsageHistory>> UsageHistory::Open(StateDb& db) {
  HAVEN_RETURN_IF_ERROR(db.EnsureTable(kSchema));
  return std::unique_ptr<UsageHistory>(new UsageHistory(db));
}

Result<bool> UsageHistory::Record(const RepositoryMetric& m) {
  if (!m.measured) return false;
  StateDb::Transaction tx(db_);
  HAVEN_RETURN_IF_ERROR(tx.status());
  HAVEN_ASSIGN_OR_RETURN(auto last,
                         db_.QueryOne("SELECT MAX(time) FROM usage_samples"
                                      " WHERE repository = ?1",
                                      {m.name}));
  // A clock set back (last in the future) also waits out the interval.
  if (last && !last->IsNull(0) && m.measured_at - last->Int(0) < kMinInterval &&
      m.measured_at - last->Int(0) > -kMinInterval)
    return false;
  // SQLite's integers are signed 64-bit; byte counts fit for a while yet.
  HAVEN_RETURN_IF_ERROR(
      db_.Query("INSERT OR REPLACE INTO usage_samples (repository, time,"
                " logical_bytes, stored_bytes, points) VALUES (?1, ?2, ?3,"
                " ?4, ?5)",
                {m.name, m.measured_at, static_cast<int64_t>(m.logical_bytes),
                 static_cast<int64_t>(m.stored_bytes),
                 static_cast<int64_t>(m.points)})
          .status());
  HAVEN_RETURN_IF_ERROR(db_.Query("DELETE FROM usage_samples WHERE time < ?1",
                                  {m.measured_at - kKeep})
                            .status());
  HAVEN_RETURN_IF_ERROR(tx.Commit());
  return true;
}

Result<std::vector<UsageSample>> UsageHistory::Samples(
    const std::string& repository, int64_t since) {
  HAVEN_ASSIGN_OR_RETURN(
      auto rows,
      db_.Query("SELECT time, logical_bytes, stored_bytes, points FROM"
                " usage_samples WHERE repository = ?1 AND time >= ?2"
                " ORDER BY time",
                {repository, since}));
  std::vector<UsageSample> out;
  out.reserve(rows.size());
  for (const SqlRow& r : rows)
    out.push_back({r.Int(0), static_cast<uint64_t>(r.Int(1)),
                   static_cast<uint64_t>(r.Int(2)),
                   static_cast<uint64_t>(r.Int(3))});
  return out;
}

}  // namespace haven::appliance
