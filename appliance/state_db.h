// StateDb: havend's state (accounts, tokens, sessions, audit log,
// schedules, job history) in one SQLite database, <state-dir>/havend.db.
//
// One connection per process, serialized by the StateDb's own mutex: every
// call below takes it, and Transaction holds it for a group of statements.
// SQLite runs in WAL mode with synchronous=FULL, so a committed statement
// survives a crash or kill -9 of havend and readers never wait for the
// writer. Each module that keeps state creates its own tables with
// EnsureTable ("CREATE TABLE IF NOT EXISTS ..."), next to the code that
// reads them; there is no central schema file to edit.
#ifndef HAVEN_APPLIANCE_STATE_DB_H_
#define HAVEN_APPLIANCE_STATE_DB_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace haven::appliance {

// A bound parameter or a column value. std::monostate is SQL NULL.
using SqlValue = std::variant<std::monostate, int64_t, double, std::string>;

// One result row; columns in the order of the SELECT.
struct SqlRow {
  std::vector<SqlValue> columns;
  int64_t Int(size_t i) const;       // 0 for NULL
  double Real(size_t i) const;       // 0 for NULL
  std::string Text(size_t i) const;  // "" for NULL
  bool IsNull(size_t i) const;
};

class StateDb {
 public:
  // Opens (creating, 0600) the database at `path`. Fails with a Status
  // naming the path when SQLite cannot open it or it is not a database.
  static Result<std::unique_ptr<StateDb>> Open(const std::string& path);
  ~StateDb();
  StateDb(const StateDb&) = delete;
  StateDb& operator=(const StateDb&) = delete;

  // Runs one or more statements with no parameters and no rows (DDL).
  Status Exec(std::string_view sql);

  // Runs one statement with `params` bound to ?1, ?2, ...; returns every
  // row. For INSERT/UPDATE/DELETE the rows are empty.
  Result<std::vector<SqlRow>> Query(std::string_view sql,
                                    const std::vector<SqlValue>& params = {});
  // The first row, or nullopt when there is none.
  Result<std::optional<SqlRow>> QueryOne(
      std::string_view sql, const std::vector<SqlValue>& params = {});
  // Rows changed by the last INSERT/UPDATE/DELETE on this connection, and
  // the rowid of the last INSERT. Call inside a Transaction to be sure no
  // other thread ran a statement in between.
  int64_t Changes();
  int64_t LastInsertId();

  // Holds the connection for a group of statements: BEGIN IMMEDIATE on
  // construction, ROLLBACK on destruction unless Commit() succeeded.
  // Statements run through the StateDb on the same thread meanwhile (the
  // mutex is recursive).
  class Transaction {
   public:
    explicit Transaction(StateDb& db);
    ~Transaction();
    Status Commit();
    Status status() const { return begin_; }  // BEGIN's result

   private:
    StateDb& db_;
    std::unique_lock<std::recursive_mutex> lock_;
    Status begin_;
    bool done_ = false;
  };

  // Creates a table (and its indexes) when missing: `ddl` is one or more
  // "CREATE ... IF NOT EXISTS" statements.
  Status EnsureTable(std::string_view ddl) { return Exec(ddl); }

  const std::string& path() const { return path_; }

 private:
  StateDb(sqlite3* db, std::string path);
  Status Error(std::string_view what) const;
  sqlite3* db_;
  std::string path_;
  std::recursive_mutex mu_;
};

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_STATE_DB_H_
