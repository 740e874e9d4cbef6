#include "appliance/state_db.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <utility>

namespace haven::appliance {
namespace {

// RAII for a prepared statement.
struct StmtDeleter {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using Stmt = std::unique_ptr<sqlite3_stmt, StmtDeleter>;

}  // namespace

int64_t SqlRow::Int(size_t i) const {
  if (i >= columns.size()) return 0;
  if (auto* v = std::get_if<int64_t>(&columns[i])) return *v;
  if (auto* d = std::get_if<double>(&columns[i]))
    return static_cast<int64_t>(*d);
  return 0;
}
double SqlRow::Real(size_t i) const {
  if (i >= columns.size()) return 0;
  if (auto* d = std::get_if<double>(&columns[i])) return *d;
  if (auto* v = std::get_if<int64_t>(&columns[i]))
    return static_cast<double>(*v);
  return 0;
}
std::string SqlRow::Text(size_t i) const {
  if (i >= columns.size()) return "";
  if (auto* s = std::get_if<std::string>(&columns[i])) return *s;
  if (auto* v = std::get_if<int64_t>(&columns[i])) return std::to_string(*v);
  return "";
}
bool SqlRow::IsNull(size_t i) const {
  return i >= columns.size() ||
         std::holds_alternative<std::monostate>(columns[i]);
}

StateDb::StateDb(sqlite3* db, std::string path)
    : db_(db), path_(std::move(path)) {}

StateDb::~StateDb() { sqlite3_close_v2(db_); }

Status StateDb::Error(std::string_view what) const {
  return IoError("state database " + path_ + ": " + std::string(what) + ": " +
                 sqlite3_errmsg(db_));
}

Result<std::unique_ptr<StateDb>> StateDb::Open(const std::string& path) {
  // The database holds password and token hashes: owner-only from the
  // first byte (SQLite creates files with the umask's mode).
  mode_t old = umask(077);
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(
      path.c_str(), &raw,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
      nullptr);
  umask(old);
  std::unique_ptr<StateDb> db(new StateDb(raw, path));
  if (rc != SQLITE_OK) return db->Error("cannot open");
  sqlite3_busy_timeout(raw, 10000);
  sqlite3_extended_result_codes(raw, 1);
  // journal_mode answers with a row; Exec ignores rows.
  HAVEN_RETURN_IF_ERROR(
      db->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
               "PRAGMA foreign_keys=ON;"));
  // A file that is not a database fails here, with SQLite's words.
  HAVEN_RETURN_IF_ERROR(
      db->Query("SELECT count(*) FROM sqlite_master").status());
  return db;
}

Status StateDb::Exec(std::string_view sql) {
  std::lock_guard lock(mu_);
  std::string text(sql);
  char* err = nullptr;
  int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    return IoError("state database " + path_ + ": " + msg);
  }
  return OkStatus();
}

Result<std::vector<SqlRow>> StateDb::Query(
    std::string_view sql, const std::vector<SqlValue>& params) {
  std::lock_guard lock(mu_);
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &raw,
                         nullptr) != SQLITE_OK)
    return Error("preparing \"" + std::string(sql.substr(0, 60)) + "\"");
  Stmt stmt(raw);
  for (size_t i = 0; i < params.size(); ++i) {
    int idx = static_cast<int>(i + 1);
    int rc = SQLITE_OK;
    const SqlValue& v = params[i];
    if (auto* n = std::get_if<int64_t>(&v)) {
      rc = sqlite3_bind_int64(raw, idx, *n);
    } else if (auto* d = std::get_if<double>(&v)) {
      rc = sqlite3_bind_double(raw, idx, *d);
    } else if (auto* s = std::get_if<std::string>(&v)) {
      rc = sqlite3_bind_text(raw, idx, s->data(), static_cast<int>(s->size()),
                             SQLITE_TRANSIENT);
    } else {
      rc = sqlite3_bind_null(raw, idx);
    }
    if (rc != SQLITE_OK)
      return Error("binding parameter " + std::to_string(idx));
  }
  std::vector<SqlRow> rows;
  for (;;) {
    int rc = sqlite3_step(raw);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW)
      return Error("running \"" + std::string(sql.substr(0, 60)) + "\"");
    SqlRow row;
    int n = sqlite3_column_count(raw);
    row.columns.reserve(n);
    for (int c = 0; c < n; ++c) {
      switch (sqlite3_column_type(raw, c)) {
        case SQLITE_INTEGER:
          row.columns.emplace_back(int64_t{sqlite3_column_int64(raw, c)});
          break;
        case SQLITE_FLOAT:
          row.columns.emplace_back(sqlite3_column_double(raw, c));
          break;
        case SQLITE_NULL:
          row.columns.emplace_back(std::monostate{});
          break;
        default: {
          const auto* p =
              reinterpret_cast<const char*>(sqlite3_column_blob(raw, c));
          int len = sqlite3_column_bytes(raw, c);
          row.columns.emplace_back(std::string(p ? p : "", p ? len : 0));
        }
      }
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

Result<std::optional<SqlRow>> StateDb::QueryOne(
    std::string_view sql, const std::vector<SqlValue>& params) {
  HAVEN_ASSIGN_OR_RETURN(std::vector<SqlRow> rows, Query(sql, params));
  if (rows.empty()) return std::optional<SqlRow>();
  return std::optional<SqlRow>(std::move(rows.front()));
}

int64_t StateDb::Changes() {
  std::lock_guard lock(mu_);
  return sqlite3_changes64(db_);
}

int64_t StateDb::LastInsertId() {
  std::lock_guard lock(mu_);
  return sqlite3_last_insert_rowid(db_);
}

StateDb::Transaction::Transaction(StateDb& db) : db_(db), lock_(db.mu_) {
  begin_ = db_.Exec("BEGIN IMMEDIATE");
  done_ = !begin_.ok();
}

StateDb::Transaction::~Transaction() {
  if (!done_) (void)db_.Exec("ROLLBACK");
}

Status StateDb::Transaction::Commit() {
  HAVEN_RETURN_IF_ERROR(begin_);
  HAVEN_RETURN_IF_ERROR(db_.Exec("COMMIT"));
  done_ = true;
  return OkStatus();
}

}  // namespace haven::appliance
