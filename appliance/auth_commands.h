// The account and token commands of havend, run on the state directory
// (they work while havend serves: SQLite in WAL mode takes both):
//
//   havend admin password [--password-file FILE]   reads it from stdin
//   havend token create --role R --name N [--expires DAYS]
//   havend token list
//   havend token revoke ID
//
// A password is never taken from the command line (other users see argv).
#ifndef HAVEN_APPLIANCE_AUTH_COMMANDS_H_
#define HAVEN_APPLIANCE_AUTH_COMMANDS_H_

#include <cstdio>
#include <string>

#include "appliance/state_db.h"
#include "base/status.h"

namespace haven::appliance {

// Sets the local admin account's password in `db` (making the account when
// missing) and ends its console sessions. What `havend init` calls.
Status SetAdminPassword(StateDb& db, std::string_view password);

// `havend admin password`: the password is the first line of
// `password_file`, or of stdin when it is "" or "-" (asked twice, without
// echo, when stdin is a terminal).
Status AdminPasswordCommand(const std::string& state_dir,
                            const std::string& password_file);

// `havend token create`: prints the token alone on `out` (so a script can
// capture it) and what it is on stderr.
Status TokenCreateCommand(const std::string& state_dir, const std::string& name,
                          const std::string& role, int expires_days,
                          std::FILE* out);
Status TokenListCommand(const std::string& state_dir, std::FILE* out);
Status TokenRevokeCommand(const std::string& state_dir, int64_t id);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_AUTH_COMMANDS_H_
