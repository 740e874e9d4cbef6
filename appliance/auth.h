// Who may call havend: the local accounts (the admin account made at setup
// and those an admin adds, auth_accounts.cc), console sessions and API
// tokens, all kept in the state database, and the Authenticator that
// api.h's dispatcher asks.
//
// Tables (made in auth.cc, CREATE TABLE IF NOT EXISTS):
//   auth_accounts  name, role, password_hash (credentials.h), changed
//   auth_tokens    id, name, role, sha256 of the token, created, expires,
//                  revoked, last_used, created_by
//   auth_sessions  sha256 of the session id, user, role, created,
//                  last_seen, peer
// Times are seconds since the epoch (UTC). No secret is stored in clear:
// a token is shown once, when it is made; a session id lives only in the
// client's cookie.
//
// A request is authenticated by, in this order:
//   Authorization: Bearer haven_...   a token that exists, is not revoked
//                                     and not expired; no CSRF token needed
//                                     (a browser never adds this header)
//   Cookie: haven_session=...         a session within its idle and
//                                     absolute lifetime; a state-changing
//                                     request must also carry
//                                     X-CSRF-Token (403 without it), or,
//                                     only for a route with
//                                     Route::csrf_from_form, the same
//                                     token as the form field csrf_token
// and anything else is 401. Nothing is cached: a token revoked by
// `havend token revoke` in another process is refused at once.
//
// Thread-safe (the StateDb serializes; the limiter has its own lock).
#ifndef HAVEN_APPLIANCE_AUTH_H_
#define HAVEN_APPLIANCE_AUTH_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <semaphore>
#include <string>
#include <string_view>
#include <vector>

#include "appliance/api.h"
#include "appliance/credentials.h"
#include "appliance/login_limiter.h"
#include "appliance/state_db.h"

namespace haven::appliance {

class AgentRegistry;  // appliance/agents.h

inline constexpr char kAdminUser[] = "admin";
inline constexpr char kSessionCookie[] = "haven_session";
inline constexpr char kCsrfHeader[] = "x-csrf-token";

struct AuthOptions {
  int64_t session_idle_seconds = 30 * 60;
  int64_t session_absolute_seconds = 12 * 3600;
  PasswordHashParams password_hash;
  LoginLimits login_limits;
  // Seconds since the epoch; tests replace it.
  std::function<int64_t()> now;
};

struct TokenInfo {
  int64_t id = 0;
  std::string name;
  Role role = Role::kNone;
  int64_t created = 0;
  std::optional<int64_t> expires, revoked, last_used;
  std::string created_by;
};

struct NewToken {
  TokenInfo info;
  std::string secret;  // "haven_...": shown once, never stored
};

// A local account as ListAccounts shows it.
struct AccountInfo {
  std::string name;
  Role role = Role::kNone;
  int64_t changed = 0;   // password or role last set, seconds since the epoch
  int64_t sessions = 0;  // console sessions within their lifetimes now
};

// A session as its holder sees it.
struct SessionInfo {
  std::string user;
  Role role = Role::kNone;
  std::string csrf_token;
  int64_t expires = 0;  // the earlier of idle and absolute expiry
};

struct LoginResult {
  enum class Outcome { kOk, kRefused, kLimited } outcome = Outcome::kRefused;
  std::string session_id;   // with kOk: the cookie's value
  SessionInfo session;      // with kOk
  int64_t retry_after = 0;  // with kLimited: seconds
};

class AuthService {
 public:
  // Makes the tables when missing. `db` must outlive the service.
  static Result<std::unique_ptr<AuthService>> Open(StateDb& db,
                                                   AuthOptions options = {});

  // Sets (or makes) `user`'s password and role; ends the user's sessions.
  // InvalidArgument for a bad user name or a too short/long password.
  Status SetPassword(std::string_view user, std::string_view password,
                     Role role);
  // Whether an account named `user` exists.
  Result<bool> HasAccount(std::string_view user);

  // Makes a token; `expires_days` 0 means never (1..3650 otherwise).
  // InvalidArgument for a bad name ([A-Za-z0-9._-], 1..64) or days;
  // AlreadyExists when an unrevoked token has that name.
  Result<NewToken> CreateToken(std::string_view name, Role role,
                               int expires_days, std::string_view created_by);
  Result<std::vector<TokenInfo>> ListTokens();
  // NotFound when there is no token `id`; revoking twice is OK.
  Status RevokeToken(int64_t id);

  // --- Accounts beyond the first (appliance/auth_accounts.cc) ---
  // Every account, by name. Never a password hash.
  Result<std::vector<AccountInfo>> ListAccounts();
  // Makes an account. InvalidArgument for a bad name, role or password;
  // AlreadyExists when `user` has an account.
  Status CreateAccount(std::string_view user, std::string_view password,
                       Role role);
  // Changes `user`'s role and/or password (each when set) and ends the
  // user's sessions (a session carries the role it was started with).
  // NotFound when there is no such account; FailedPrecondition when it
  // would leave no admin account.
  Status UpdateAccount(std::string_view user, std::optional<Role> role,
                       std::optional<std::string> password);
  // Deletes `user`'s account and ends its sessions. NotFound when there is
  // none; FailedPrecondition when `user` is `acting_user` (nobody deletes
  // the account they are logged in with) or the last admin account.
  Status DeleteAccount(std::string_view user, std::string_view acting_user);

  // Checks `password` for `user` from `peer` (Request::peer), within the
  // LoginLimiter's limits; on success makes a session. A user that does
  // not exist costs the same hash as a wrong password.
  Result<LoginResult> Login(std::string_view user, std::string_view password,
                            std::string_view peer);
  // Ends the session whose id is `session_id`; OK if there is none.
  Status Logout(std::string_view session_id);
  // The session the request's cookie names, when valid now.
  Result<std::optional<SessionInfo>> SessionOf(const Request& request);

  // For ApiOptions::authenticate (see the file comment). `on_refusal`, when
  // set, hears of a caller who was authenticated but refused (a session's
  // state-changing request without the CSRF token), for the audit log.
  Authenticator MakeAuthenticator(
      std::function<void(const Caller&, const Request&, int status,
                         const std::string& why)>
          on_refusal = nullptr);

  // The value of the haven_session cookie in `request`, or "".
  static std::string SessionCookie(const Request& request);

  // --- agents: registry ---
  // Authorization: Bearer havenagent_... is an enrolled agent's credential
  // (docs/agents.md), checked by `agents`: unknown 401, revoked 401 saying
  // when, else Role::kAgent with the agent's id; every such request is
  // recorded as the agent's last contact (from Request::peer). Without a
  // registry (null, the default) such credentials are unknown. Set it
  // before the authenticator serves; `agents` must outlive the service.
  void SetAgentRegistry(AgentRegistry* agents) { agents_ = agents; }

 private:
  AuthService(StateDb& db, AuthOptions options);
  int64_t Now() const { return options_.now(); }
  std::variant<Caller, Response> Authenticate(const Request& request,
                                              bool state_changing,
                                              const std::string* form_csrf,
                                              std::string* refusal);
  Result<std::optional<Caller>> ByToken(std::string_view token);
  struct SessionRow {
    Caller caller;
    SessionInfo info;
  };
  Result<std::optional<SessionRow>> BySession(std::string_view session_id);

  // A token or session id longer than this is not one of ours; it is
  // refused unhashed.
  static constexpr size_t kMaxTokenBytes = 128;
  // last_seen / last_used are written at most this often (seconds), so a
  // busy console does not turn every GET into a database write.
  static constexpr int64_t kTouchEvery = 15;

  StateDb& db_;
  AuthOptions options_;
  LoginLimiter limiter_;
  // At most two password hashes at once (64 MiB each): logins wait for a
  // slot rather than letting a burst of them take the host's memory.
  std::counting_semaphore<2> hashing_{2};
  std::string dummy_hash_;  // verified for unknown users
  // --- agents: registry ---
  std::variant<Caller, Response> ByAgentCredential(const Request& request,
                                                   std::string_view credential);
  AgentRegistry* agents_ = nullptr;
};

// Whether `name` may name an account or a token: 1 to 64 of A-Z a-z 0-9
// . _ - (so it can be shown and logged as it is).
bool ValidAuthName(std::string_view name);

// The CSRF token of a session: derived from its id (which only the client
// holds), so nothing more is stored and the stored hash does not give it.
std::string CsrfTokenFor(std::string_view session_id);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_AUTH_H_
