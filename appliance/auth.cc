#include "appliance/auth.h"

#include <chrono>
#include <utility>

#include "appliance/agents.h"  // --- agents: registry ---

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

bool ValidAuthName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' &&
        c != '-')
      return false;
  return true;
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
  if (!ValidAuthName(user))
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
  if (!ValidAuthName(name))
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

std::variant<Caller, Response> AuthService::Authenticate(
    const Request& request, bool state_changing, const std::string* form_csrf,
    std::string* refusal) {
  if (const std::string* auth = request.Header("authorization")) {
    if (!StartsWithNoCase(*auth, "bearer "))
      return Refuse401("only Authorization: Bearer <token> is accepted");
    std::string_view token = std::string_view(*auth).substr(7);
    while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
    // --- agents: registry ---
    if (token.starts_with(kAgentCredentialPrefix))
      return ByAgentCredential(request, token);
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
    // The header when there is one; else a form's field, which the
    // dispatcher passes only for the routes that take it.
    const std::string* csrf = request.Header(kCsrfHeader);
    std::string_view carrier = "X-CSRF-Token header";
    if (csrf == nullptr && form_csrf != nullptr) {
      csrf = form_csrf;
      carrier = "csrf_token form field";
    }
    if (csrf == nullptr || !ConstantTimeEquals(*csrf, s.info.csrf_token)) {
      *refusal = csrf == nullptr ? std::string("no X-CSRF-Token header")
                                 : "wrong " + std::string(carrier);
      return s.caller;  // the caller is known: Authenticator audits and 403s
    }
  }
  return s.caller;
}

// --- agents: registry ---
std::variant<Caller, Response> AuthService::ByAgentCredential(
    const Request& request, std::string_view credential) {
  if (agents_ == nullptr) return Refuse401("unknown agent credential");
  auto caller = agents_->Authenticate(credential);
  if (!caller.ok()) {
    if (caller.status().code() == Code::kPermissionDenied)
      return Refuse401(caller.status().message());  // revoked, saying when
    return ErrorJson(503, "could not check the agent credential: " +
                              caller.status().message());
  }
  if (!*caller) return Refuse401("unknown agent credential");
  // The last contact is a record for the admin, not a condition of the
  // request: a failed write of it refuses nothing.
  (void)agents_->Touch((*caller)->agent_id, "", "", PeerAddress(request.peer));
  return **caller;
}

Authenticator AuthService::MakeAuthenticator(
    std::function<void(const Caller&, const Request&, int, const std::string&)>
        on_refusal) {
  return [this, on_refusal = std::move(on_refusal)](
             const Request& request, bool state_changing,
             const std::string* form_csrf) -> std::variant<Caller, Response> {
    std::string refusal;
    auto who = Authenticate(request, state_changing, form_csrf, &refusal);
    if (refusal.empty()) return who;
    if (on_refusal) on_refusal(std::get<Caller>(who), request, 403, refusal);
    return ErrorJson(403, refusal +
                              ": a request that changes state with a session "
                              "cookie must carry the session's CSRF token "
                              "(GET /api/v1/me gives it)");
  };
}

}  // namespace haven::appliance
