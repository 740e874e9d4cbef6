#include "appliance/auth.h"

#include <chrono>
#include <utility>

namespace haven::appliance {
namespace {

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS auth_accounts (
  name TEXT PRIMARY KEY,
  role TEXT NOT NULL,
  password_hash TEXT NOT NULL,
  changed INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS auth_tokens (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  role TEXT NOT NULL,
  hash TEXT NOT NULL UNIQUE,
  created INTEGER NOT NULL,
  expires INTEGER,
  revoked INTEGER,
  last_used INTEGER,
  created_by TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS auth_sessions (
  hash TEXT PRIMARY KEY,
  user TEXT NOT NULL,
  role TEXT NOT NULL,
  created INTEGER NOT NULL,
  last_seen INTEGER NOT NULL,
  peer TEXT NOT NULL);
)sql";

// A token longer than this is not one of ours; it is refused unhashed.
constexpr size_t kMaxTokenBytes = 128;
constexpr size_t kMaxNameBytes = 64;
// last_seen / last_used are written at most this often (seconds), so a
// busy console does not turn every GET into a database write.
constexpr int64_t kTouchEvery = 15;

bool ValidName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes) return false;
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' &&
        c != '-')
      return false;
  return true;
}

Response Refuse401(std::string_view why) {
  Response r = ErrorJson(401, why);
  r.headers.emplace_back("www-authenticate", "Bearer realm=\"havend\"");
  return r;
}

std::optional<int64_t> OptionalInt(const SqlRow& row, size_t i) {
  if (row.IsNull(i)) return std::nullopt;
  return row.Int(i);
}

bool StartsWithNoCase(std::string_view text, std::string_view prefix) {
  if (text.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(text[i])) != prefix[i])
      return false;
  return true;
}

}  // namespace

std::string CsrfTokenFor(std::string_view session_id) {
  // A different input from the stored Sha256Hex(session_id), so the
  // database does not give the CSRF token either.
  return Sha256Hex("haven csrf\n" + std::string(session_id));
}

AuthService::AuthService(StateDb& db, AuthOptions options)
    : db_(db), options_(std::move(options)), limiter_(options_.login_limits) {
  if (!options_.now)
    options_.now = [] {
      return static_cast<int64_t>(
          std::chrono::duration_cast<std::chrono::seconds>(
              std::chrono::system_clock::now().time_since_epoch())
              .count());
    };
  // Unknown users are checked against this: same cost, never matches.
  const PasswordHashParams& p = options_.password_hash;
  dummy_hash_ = "$scrypt$ln=" + std::to_string(p.log_n) +
                ",r=" + std::to_string(p.r) + ",p=" + std::to_string(p.p) +
                "$" + RandomBase64Url(16) + "$" + RandomBase64Url(32);
}

Result<std::unique_ptr<AuthService>> AuthService::Open(StateDb& db,
                                                       AuthOptions options) {
  HAVEN_RETURN_IF_ERROR(db.EnsureTable(kSchema));
  return std::unique_ptr<AuthService>(new AuthService(db, std::move(options)));
}

Status AuthService::SetPassword(std::string_view user,
                                std::string_view password, Role role) {
  if (!ValidName(user))
    return InvalidArgument("user names are 1 to 64 of A-Z a-z 0-9 . _ -");
  if (role == Role::kNone) return InvalidArgument("an account needs a role");
  HAVEN_ASSIGN_OR_RETURN(std::string hash,
                         HashPassword(password, options_.password_hash));
  StateDb::Transaction tx(db_);
  HAVEN_RETURN_IF_ERROR(tx.status());
  HAVEN_RETURN_IF_ERROR(
      db_.Query("INSERT INTO auth_accounts (name, role, password_hash, changed)"
                " VALUES (?1, ?2, ?3, ?4) ON CONFLICT(name) DO UPDATE SET"
                " role = ?2, password_hash = ?3, changed = ?4",
                {std::string(user), std::string(RoleName(role)), hash, Now()})
          .status());
  HAVEN_RETURN_IF_ERROR(db_.Query("DELETE FROM auth_sessions WHERE user = ?1",
                                  {std::string(user)})
                            .status());
  return tx.Commit();
}

Result<bool> AuthService::HasAccount(std::string_view user) {
  HAVEN_ASSIGN_OR_RETURN(
      auto row, db_.QueryOne("SELECT 1 FROM auth_accounts WHERE name = ?1",
                             {std::string(user)}));
  return row.has_value();
}

Result<NewToken> AuthService::CreateToken(std::string_view name, Role role,
                                          int expires_days,
                                          std::string_view created_by) {
  if (!ValidName(name))
    return InvalidArgument("token names are 1 to 64 of A-Z a-z 0-9 . _ -");
  if (role == Role::kNone)
    return InvalidArgument("a token's role is admin, operator or auditor");
  if (expires_days < 0 || expires_days > 3650)
    return InvalidArgument("expires_days is 0 (never) or 1 to 3650, not " +
                           std::to_string(expires_days));
  NewToken out;
  out.secret = NewApiToken();
  out.info.name = std::string(name);
  out.info.role = role;
  out.info.created = Now();
  if (expires_days > 0)
    out.info.expires = out.info.created + expires_days * 86400LL;
  out.info.created_by = std::string(created_by);
  StateDb::Transaction tx(db_);
  HAVEN_RETURN_IF_ERROR(tx.status());
  HAVEN_ASSIGN_OR_RETURN(
      auto same,
      db_.QueryOne("SELECT id FROM auth_tokens WHERE name = ?1 AND"
                   " revoked IS NULL AND (expires IS NULL OR expires > ?2)",
                   {out.info.name, out.info.created}));
  if (same)
    return AlreadyExists("a token named " + out.info.name + " exists (id " +
                         std::to_string(same->Int(0)) +
                         "); revoke it first or pick another name");
  SqlValue expires = std::monostate{};
  if (out.info.expires) expires = *out.info.expires;
  HAVEN_RETURN_IF_ERROR(
      db_.Query(
             "INSERT INTO auth_tokens (name, role, hash, created, expires,"
             " created_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
             {out.info.name, std::string(RoleName(role)), Sha256Hex(out.secret),
              out.info.created, expires, out.info.created_by})
          .status());
  out.info.id = db_.LastInsertId();
  HAVEN_RETURN_IF_ERROR(tx.Commit());
  return out;
}

Result<std::vector<TokenInfo>> AuthService::ListTokens() {
  HAVEN_ASSIGN_OR_RETURN(
      auto rows,
      db_.Query("SELECT id, name, role, created, expires, revoked, last_used,"
                " created_by FROM auth_tokens ORDER BY id"));
  std::vector<TokenInfo> out;
  for (const SqlRow& row : rows) {
    TokenInfo t;
    t.id = row.Int(0);
    t.name = row.Text(1);
    t.role = ParseRole(row.Text(2)).value_or(Role::kNone);
    t.created = row.Int(3);
    t.expires = OptionalInt(row, 4);
    t.revoked = OptionalInt(row, 5);
    t.last_used = OptionalInt(row, 6);
    t.created_by = row.Text(7);
    out.push_back(std::move(t));
  }
  return out;
}

Status AuthService::RevokeToken(int64_t id) {
  StateDb::Transaction tx(db_);
  HAVEN_RETURN_IF_ERROR(tx.status());
  HAVEN_ASSIGN_OR_RETURN(
      auto row,
      db_.QueryOne("SELECT revoked FROM auth_tokens WHERE id = ?1", {id}));
  if (!row) return NotFound("no token with id " + std::to_string(id));
  if (row->IsNull(0))
    HAVEN_RETURN_IF_ERROR(
        db_.Query("UPDATE auth_tokens SET revoked = ?2 WHERE id = ?1",
                  {id, Now()})
            .status());
  return tx.Commit();
}

Result<LoginResult> AuthService::Login(std::string_view user,
                                       std::string_view password,
                                       std::string_view peer) {
  LoginResult out;
  std::string address = PeerAddress(peer);
  // A name no account can have still counts against the address, under a
  // fixed key so made-up names do not fill the limiter.
  std::string user_key = ValidName(user) ? std::string(user) : "?";
  int64_t wait = limiter_.RetryAfter(address, user_key, Now());
  if (wait > 0) {
    out.outcome = LoginResult::Outcome::kLimited;
    out.retry_after = wait;
    return out;
  }
  std::optional<SqlRow> account;
  if (ValidName(user)) {
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

Result<std::optional<Caller>> AuthService::ByToken(std::string_view token) {
  if (!token.starts_with(kTokenPrefix) || token.size() > kMaxTokenBytes)
    return std::optional<Caller>();
  int64_t now = Now();
  HAVEN_ASSIGN_OR_RETURN(
      auto row, db_.QueryOne("SELECT id, name, role, last_used FROM auth_tokens"
                             " WHERE hash = ?1 AND revoked IS NULL AND"
                             " (expires IS NULL OR expires > ?2)",
                             {Sha256Hex(token), now}));
  if (!row) return std::optional<Caller>();
  if (row->IsNull(3) || now - row->Int(3) >= kTouchEvery)
    HAVEN_RETURN_IF_ERROR(
        db_.Query("UPDATE auth_tokens SET last_used = ?2 WHERE id = ?1",
                  {row->Int(0), now})
            .status());
  Caller caller;
  caller.name = "token:" + row->Text(1);
  caller.role = ParseRole(row->Text(2)).value_or(Role::kNone);
  return std::optional<Caller>(caller);
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

std::variant<Caller, Response> AuthService::Authenticate(const Request& request,
                                                         bool state_changing,
                                                         std::string* refusal) {
  if (const std::string* auth = request.Header("authorization")) {
    if (!StartsWithNoCase(*auth, "bearer "))
      return Refuse401("only Authorization: Bearer <token> is accepted");
    std::string_view token = std::string_view(*auth).substr(7);
    while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
    auto caller = ByToken(token);
    if (!caller.ok())
      return ErrorJson(
          503, "could not check the token: " + caller.status().message());
    if (!*caller) return Refuse401("invalid, expired or revoked token");
    return **caller;
  }
  std::string cookie = SessionCookie(request);
  if (cookie.empty()) return Refuse401("authentication required");
  auto session = BySession(cookie);
  if (!session.ok())
    return ErrorJson(
        503, "could not check the session: " + session.status().message());
  if (!*session)
    return Refuse401("the session has expired or ended; log in again");
  const SessionRow& s = **session;
  if (state_changing) {
    const std::string* csrf = request.Header(kCsrfHeader);
    if (csrf == nullptr || !ConstantTimeEquals(*csrf, s.info.csrf_token)) {
      *refusal = csrf == nullptr ? "no X-CSRF-Token header"
                                 : "wrong X-CSRF-Token header";
      return s.caller;  // the caller is known: Authenticator audits and 403s
    }
  }
  return s.caller;
}

Authenticator AuthService::MakeAuthenticator(
    std::function<void(const Caller&, const Request&, int, const std::string&)>
        on_refusal) {
  return [this, on_refusal = std::move(on_refusal)](
             const Request& request,
             bool state_changing) -> std::variant<Caller, Response> {
    std::string refusal;
    auto who = Authenticate(request, state_changing, &refusal);
    if (refusal.empty()) return who;
    if (on_refusal) on_refusal(std::get<Caller>(who), request, 403, refusal);
    return ErrorJson(403, refusal +
                              ": a request that changes state with a session "
                              "cookie must carry the session's CSRF token "
                              "(GET /api/v1/me gives it)");
  };
}

}  // namespace haven::appliance
