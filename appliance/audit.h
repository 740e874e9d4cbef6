// The audit log: one row for every state-changing API request that got
// past authentication (allowed, or refused by role or CSRF check), and one
// for every login attempt, in the state database:
//
//   audit_log  id, time (seconds since the epoch, UTC), who (Caller::name
//              or the user name a login tried), peer ("ADDR:PORT"),
//              method, path (decoded, no query), status (HTTP), detail
//
// What is never written: request bodies, query strings, headers. The
// detail is havend's own text (the route's summary, "login refused"), not
// the client's, so no password or token can reach the log through it.
// Rows are only added; nothing in havend deletes them.
//
// Thread-safe (the StateDb serializes).
#ifndef HAVEN_APPLIANCE_AUDIT_H_
#define HAVEN_APPLIANCE_AUDIT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "appliance/api.h"
#include "appliance/state_db.h"

namespace haven::appliance {

struct AuditEntry {
  int64_t id = 0;
  int64_t time = 0;  // seconds since the epoch
  std::string who, peer, method, path;
  int status = 0;
  std::string detail;
};

// Which rows, newest first.
struct AuditQuery {
  std::optional<int64_t> since, until;  // time >= since, time < until
  std::optional<int64_t> before_id;     // id < before_id (the next page)
  int limit = 100;                      // 1..1000
};

class AuditLog {
 public:
  // Makes the table when missing. `db` must outlive the log. `now` gives
  // seconds since the epoch (tests replace it).
  static Result<std::unique_ptr<AuditLog>> Open(
      StateDb& db, std::function<int64_t()> now = nullptr);

  // Adds `entry` (its id and time are set here).
  Status Record(AuditEntry entry);
  Result<std::vector<AuditEntry>> List(const AuditQuery& query);

  // For ApiOptions::audit: records who called which route with what
  // status. A write that fails is reported to `on_error` (the daemon's log);
  // the response has been decided and is sent anyway.
  AuditSink Sink(std::function<void(const Status&)> on_error = nullptr);

 private:
  AuditLog(StateDb& db, std::function<int64_t()> now)
      : db_(db), now_(std::move(now)) {}
  StateDb& db_;
  std::function<int64_t()> now_;
};

nlohmann::json AuditEntryJson(const AuditEntry& entry);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_AUDIT_H_
