// Remote appliances this havend copies points to and from (sync jobs,
// appliance/sync_jobs.h): each a name, the remote's URL and certificate
// fingerprint (pinned), and an admin API token of the remote.
//
//   remotes  name (primary key), url, fingerprint, created, changed,
//            changed_by   (times: seconds since the epoch, UTC)
//
// The token is never in the database, an answer or a log line: it is
// written to <state-dir>/remotes/<name>.token (directory 0700, file 0600,
// written whole or not at all) and read only to make a request.
//
// Thread-safe (the StateDb serializes; files are written atomically).
#ifndef HAVEN_APPLIANCE_REMOTES_H_
#define HAVEN_APPLIANCE_REMOTES_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/appliance_copy.h"
#include "appliance/state_db.h"
#include "base/status.h"

namespace haven::appliance {

struct RemoteInfo {
  std::string name, url, fingerprint;
  bool token_set = false;
  int64_t created = 0, changed = 0;
  std::string changed_by;
};

// A POST: a new remote (token required) or a change of one (token kept
// when not given).
struct RemoteUpdate {
  std::string name, url, fingerprint;
  std::optional<std::string> token;
};

class RemoteStore {
 public:
  // Makes the table when missing; tokens go under `state_dir`/remotes.
  static Result<std::unique_ptr<RemoteStore>> Open(
      StateDb& db, std::string state_dir,
      std::function<int64_t()> now = nullptr);

  // Checks the fields (InvalidArgument naming the field, never the token's
  // value), writes the token, then the row. Returns whether it was made now
  // (false: changed).
  Result<bool> Put(const RemoteUpdate& update, std::string_view by);
  Result<std::vector<RemoteInfo>> List();
  // NotFound naming `name` when there is none.
  Result<RemoteInfo> Get(std::string_view name);
  // NotFound when there is none; removes the row and the token file.
  Status Remove(std::string_view name);
  // What a request to the remote needs, token included (read from its
  // file now). NotFound for an unknown name.
  Result<agent::RemoteAppliance> Connection(std::string_view name);

 private:
  RemoteStore(StateDb& db, std::string state_dir, std::function<int64_t()> now)
      : db_(db), state_dir_(std::move(state_dir)), now_(std::move(now)) {}
  std::string TokenPath(std::string_view name) const;

  StateDb& db_;
  std::string state_dir_;
  std::function<int64_t()> now_;
};

// Whether `name` may name a remote: [A-Za-z0-9][A-Za-z0-9._-]{0,63}.
bool ValidRemoteName(std::string_view name);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_REMOTES_H_
