// Console sessions: login, logout, the cookie and its CSRF token (the
// rest of AuthService is in auth.cc).
#include <utility>

#include "appliance/auth.h"

namespace haven::appliance {

std::string CsrfTokenFor(std::string_view session_id) {
  // A different input from the stored Sha256Hex(session_id), so the
  // database does not give the CSRF token either.
  return Sha256Hex("haven csrf\n" + std::string(session_id));
}

Result<LoginResult> AuthService::Login(std::string_view user,
                                       std::string_view password,
                                       std::string_view peer) {
  LoginResult out;
  std::string address = PeerAddress(peer);
  // A name no account can have still counts against the address, under a
  // fixed key so made-up names do not fill the limiter.
  std::string user_key = ValidAuthName(user) ? std::string(user) : "?";
  int64_t wait = limiter_.RetryAfter(address, user_key, Now());
  if (wait > 0) {
    out.outcome = LoginResult::Outcome::kLimited;
    out.retry_after = wait;
    return out;
  }
  std::optional<SqlRow> account;
  if (ValidAuthName(user)) {
    HAVEN_ASSIGN_OR_RETURN(
        account, db_.QueryOne("SELECT password_hash, role FROM auth_accounts"
                              " WHERE name = ?1",
                              {std::string(user)}));
  }
  bool match = false;
  {
    hashing_.acquire();
    auto verified =
        VerifyPassword(password, account ? account->Text(0) : dummy_hash_);
    hashing_.release();
    if (!verified.ok())
      return verified.status().WithContext("account " + std::string(user));
    match = *verified && account.has_value();
  }
  if (!match) {
    limiter_.Failed(address, user_key, Now());
    out.outcome = LoginResult::Outcome::kRefused;
    return out;
  }
  limiter_.Succeeded(address, user_key);
  int64_t now = Now();
  // Sessions past their lifetime go when someone logs in.
  HAVEN_RETURN_IF_ERROR(
      db_.Query(
             "DELETE FROM auth_sessions WHERE last_seen < ?1 OR created < ?2",
             {now - options_.session_idle_seconds,
              now - options_.session_absolute_seconds})
          .status());
  out.session_id = RandomBase64Url(32);
  out.session.user = std::string(user);
  out.session.role = ParseRole(account->Text(1)).value_or(Role::kNone);
  out.session.csrf_token = CsrfTokenFor(out.session_id);
  out.session.expires = now + std::min(options_.session_idle_seconds,
                                       options_.session_absolute_seconds);
  HAVEN_RETURN_IF_ERROR(
      db_.Query("INSERT INTO auth_sessions (hash, user, role, created,"
                " last_seen, peer) VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
                {Sha256Hex(out.session_id), out.session.user,
                 std::string(RoleName(out.session.role)), now, address})
          .status());
  out.outcome = LoginResult::Outcome::kOk;
  return out;
}

Status AuthService::Logout(std::string_view session_id) {
  return db_
      .Query("DELETE FROM auth_sessions WHERE hash = ?1",
             {Sha256Hex(session_id)})
      .status();
}

std::string AuthService::SessionCookie(const Request& request) {
  for (const auto& [name, value] : request.headers) {
    if (name != "cookie") continue;
    std::string_view rest = value;
    while (!rest.empty()) {
      size_t semi = rest.find(';');
      std::string_view item = rest.substr(0, semi);
      rest = semi == std::string_view::npos ? "" : rest.substr(semi + 1);
      while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
      std::string_view want = kSessionCookie;
      if (item.size() > want.size() && item.starts_with(want) &&
          item[want.size()] == '=')
        return std::string(item.substr(want.size() + 1));
    }
  }
  return "";
}

Result<std::optional<AuthService::SessionRow>> AuthService::BySession(
    std::string_view session_id) {
  if (session_id.empty() || session_id.size() > kMaxTokenBytes)
    return std::optional<SessionRow>();
  int64_t now = Now();
  std::string hash = Sha256Hex(session_id);
  HAVEN_ASSIGN_OR_RETURN(
      auto row, db_.QueryOne("SELECT user, role, created, last_seen FROM"
                             " auth_sessions WHERE hash = ?1",
                             {hash}));
  if (!row) return std::optional<SessionRow>();
  int64_t created = row->Int(2), last_seen = row->Int(3);
  if (now - last_seen > options_.session_idle_seconds ||
      now - created > options_.session_absolute_seconds) {
    HAVEN_RETURN_IF_ERROR(
        db_.Query("DELETE FROM auth_sessions WHERE hash = ?1", {hash})
            .status());
    return std::optional<SessionRow>();
  }
  if (now - last_seen >= kTouchEvery)
    HAVEN_RETURN_IF_ERROR(
        db_.Query("UPDATE auth_sessions SET last_seen = ?2 WHERE hash = ?1",
                  {hash, now})
            .status());
  SessionRow out;
  out.caller.name = row->Text(0);
  out.caller.role = ParseRole(row->Text(1)).value_or(Role::kNone);
  out.caller.session = true;
  out.info.user = out.caller.name;
  out.info.role = out.caller.role;
  out.info.csrf_token = CsrfTokenFor(session_id);
  out.info.expires = std::min(now + options_.session_idle_seconds,
                              created + options_.session_absolute_seconds);
  return std::optional<SessionRow>(std::move(out));
}

Result<std::optional<SessionInfo>> AuthService::SessionOf(
    const Request& request) {
  HAVEN_ASSIGN_OR_RETURN(auto row, BySession(SessionCookie(request)));
  if (!row) return std::optional<SessionInfo>();
  return std::optional<SessionInfo>(row->info);
}

}  // namespace haven::appliance
