// Routes of accounts, sessions, tokens and the audit log (docs/appliance.md,
// "Accounts, sessions and tokens").
#include <charconv>
#include <chrono>

#include "appliance/audit.h"
#include "appliance/auth.h"
#include "appliance/daemon.h"
#include "appliance/routes.h"
#include "base/time.h"

namespace haven::appliance {
namespace {

using json = nlohmann::json;

std::string Rfc3339(int64_t seconds) {
  return FormatTime(seconds * 1000000000, TimeStyle::kRfc3339Utc);
}

json OptionalTime(const std::optional<int64_t>& t) {
  return t ? json(Rfc3339(*t)) : json(nullptr);
}

std::optional<int64_t> ParseId(std::string_view text) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < 1)
    return std::nullopt;
  return v;
}

// The request body as a JSON object, or the 400 to answer.
std::variant<json, Response> BodyObject(const Request& r) {
  json body = json::parse(r.body, nullptr, false);
  if (body.is_discarded() || !body.is_object())
    return ErrorJson(400, "the request body must be a JSON object");
  return body;
}

std::string SessionCookieHeader(const std::string& value, int64_t max_age) {
  return std::string(kSessionCookie) + "=" + value +
         "; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=" +
         std::to_string(max_age);
}

json TokenJson(const TokenInfo& t, int64_t now) {
  bool active = !t.revoked && (!t.expires || *t.expires > now);
  return {{"id", t.id},
          {"name", t.name},
          {"role", std::string(RoleName(t.role))},
          {"created", Rfc3339(t.created)},
          {"created_by", t.created_by},
          {"expires", OptionalTime(t.expires)},
          {"revoked", OptionalTime(t.revoked)},
          {"last_used", OptionalTime(t.last_used)},
          {"active", active}};
}

int64_t Now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Response Login(Services& s, const ApiCall& call) {
  auto parsed = BodyObject(call.request);
  if (auto* r = std::get_if<Response>(&parsed)) return *r;
  const json& body = std::get<json>(parsed);
  if (!body.contains("user") || !body["user"].is_string() ||
      !body.contains("password") || !body["password"].is_string())
    return ErrorJson(400, "the body needs \"user\" and \"password\" strings");
  std::string user = body["user"], password = body["password"];
  auto result = s.auth->Login(user, password, call.request.peer);
  if (!result.ok()) return StatusResponse(result.status());
  if (result->outcome == LoginResult::Outcome::kLimited) {
    // Not audited: a refusal that costs no password check would let anyone
    // fill the database; the failures that led to it are there.
    Response out =
        ErrorJson(429, "too many failed logins; try again in " +
                           std::to_string(result->retry_after) + " s");
    out.headers.emplace_back("retry-after",
                             std::to_string(result->retry_after));
    return out;
  }
  Response out;
  AuditEntry entry;
  if (result->outcome == LoginResult::Outcome::kOk) {
    const SessionInfo& session = result->session;
    out = OkJson({{"user", session.user},
                  {"role", std::string(RoleName(session.role))},
                  {"csrf_token", session.csrf_token},
                  {"expires", Rfc3339(session.expires)}});
    out.headers.emplace_back(
        "set-cookie",
        SessionCookieHeader(result->session_id, session.expires - Now()));
    entry.who = user;
    entry.detail = "login: session started";
  } else {
    out = ErrorJson(401, "wrong user name or password");
    // The name only when such an account exists, so a password typed into
    // the name field is never written down.
    auto known = s.auth->HasAccount(user);
    entry.who = known.ok() && *known ? user : "(unknown user)";
    entry.detail = "login refused: wrong user name or password";
  }
  entry.peer = call.request.peer;
  entry.method = call.request.method;
  entry.path = call.request.path;
  entry.status = out.status;
  Status recorded = s.audit->Record(std::move(entry));
  if (!recorded.ok()) Log("audit log: " + recorded.message());
  return out;
}

Response Logout(Services& s, const ApiCall& call) {
  if (!call.caller.session)
    return ErrorJson(400,
                     "logout ends a console session; this request used a "
                     "token (revoke it with DELETE /api/v1/tokens/{id})");
  Status st = s.auth->Logout(AuthService::SessionCookie(call.request));
  if (!st.ok()) return StatusResponse(st);
  Response out = OkJson({{"logged_out", true}});
  out.headers.emplace_back("set-cookie", SessionCookieHeader("", 0));
  return out;
}

Response Me(Services& s, const ApiCall& call) {
  json out = {{"name", call.caller.name},
              {"role", std::string(RoleName(call.caller.role))},
              {"session", call.caller.session}};
  if (call.caller.session) {
    auto session = s.auth->SessionOf(call.request);
    if (!session.ok()) return StatusResponse(session.status());
    if (*session) {
      out["csrf_token"] = (*session)->csrf_token;
      out["expires"] = Rfc3339((*session)->expires);
    }
  }
  return OkJson(out);
}

Response ListTokens(Services& s, const ApiCall&) {
  auto tokens = s.auth->ListTokens();
  if (!tokens.ok()) return StatusResponse(tokens.status());
  json list = json::array();
  int64_t now = Now();
  for (const TokenInfo& t : *tokens) list.push_back(TokenJson(t, now));
  return OkJson({{"tokens", list}});
}

Response CreateToken(Services& s, const ApiCall& call) {
  auto parsed = BodyObject(call.request);
  if (auto* r = std::get_if<Response>(&parsed)) return *r;
  const json& body = std::get<json>(parsed);
  if (!body.contains("name") || !body["name"].is_string())
    return ErrorJson(400, "the body needs a \"name\" string");
  if (!body.contains("role") || !body["role"].is_string())
    return ErrorJson(400,
                     "the body needs a \"role\": admin, operator or auditor");
  std::optional<Role> role = ParseRole(body["role"].get<std::string>());
  if (!role)
    return ErrorJson(400, "role must be admin, operator or auditor, not " +
                              QuoteUntrusted(body["role"].get<std::string>()));
  int days = 0;
  if (body.contains("expires_days") && !body["expires_days"].is_null()) {
    if (!body["expires_days"].is_number_integer())
      return ErrorJson(400, "expires_days must be a whole number of days");
    int64_t d = body["expires_days"];
    if (d < 0 || d > 3650)
      return ErrorJson(400, "expires_days is 0 (never) or 1 to 3650");
    days = static_cast<int>(d);
  }
  auto made = s.auth->CreateToken(body["name"].get<std::string>(), *role, days,
                                  call.caller.name);
  if (!made.ok()) return StatusResponse(made.status());
  json out = TokenJson(made->info, Now());
  out["token"] = made->secret;
  return OkJson(out, 201);
}

Response RevokeToken(Services& s, const ApiCall& call) {
  std::optional<int64_t> id = ParseId(*call.Param("id"));
  if (!id) return ErrorJson(400, "a token id is a positive whole number");
  Status st = s.auth->RevokeToken(*id);
  if (!st.ok()) return StatusResponse(st);
  return OkJson({{"id", *id}, {"revoked", true}});
}

Response ListAudit(Services& s, const ApiCall& call) {
  AuditQuery q;
  for (const char* name : {"since", "until"}) {
    const std::string* v = call.Query(name);
    if (v == nullptr) continue;
    auto t = ParseIsoTime(*v);
    if (!t.ok())
      return ErrorJson(400, std::string(name) + ": " + t.status().message());
    (std::string_view(name) == "since" ? q.since : q.until) = *t;
  }
  if (const std::string* v = call.Query("before")) {
    q.before_id = ParseId(*v);
    if (!q.before_id)
      return ErrorJson(400, "before is an entry id (1 or more)");
  }
  if (const std::string* v = call.Query("limit")) {
    std::optional<int64_t> n = ParseId(*v);
    if (!n || *n > 1000) return ErrorJson(400, "limit is 1 to 1000");
    q.limit = static_cast<int>(*n);
  }
  auto entries = s.audit->List(q);
  if (!entries.ok()) return StatusResponse(entries.status());
  json list = json::array();
  for (const AuditEntry& e : *entries) list.push_back(AuditEntryJson(e));
  json next = nullptr;
  if (static_cast<int>(entries->size()) == q.limit) next = entries->back().id;
  return OkJson({{"entries", list}, {"next_before", next}});
}

json JsonBody(const json& schema) {
  return {{"required", true},
          {"content", {{"application/json", {{"schema", schema}}}}}};
}

json Answer(std::string_view description) {
  return {{"description", std::string(description)}};
}

json QueryParam(std::string_view name, std::string_view type,
                std::string_view description) {
  return {{"name", std::string(name)},
          {"in", "query"},
          {"required", false},
          {"schema", {{"type", std::string(type)}}},
          {"description", std::string(description)}};
}

}  // namespace

std::vector<Route> AuthRoutes(Services& s) {
  const json str = {{"type", "string"}};
  auto h = [&s](Response (*f)(Services&, const ApiCall&)) {
    return [&s, f](const ApiCall& call) { return f(s, call); };
  };
  return {
      {"POST",
       "/api/v1/login",
       Access::kPublic,
       Role::kNone,
       "log in to the console: a session cookie and its CSRF token",
       {{"requestBody",
         JsonBody({{"type", "object"},
                   {"required", {"user", "password"}},
                   {"properties", {{"user", str}, {"password", str}}}})},
        {"responses",
         {{"200", Answer("logged in: Set-Cookie haven_session (HttpOnly, "
                         "Secure, SameSite=Strict); body {user, role, "
                         "csrf_token, expires}")},
          {"400", Answer("body is not {user, password}")},
          {"401", Answer("wrong user name or password")},
          {"429", Answer("too many failed logins: Retry-After seconds")}}}},
       h(Login)},
      {"POST",
       "/api/v1/logout",
       Access::kRole,
       Role::kAuditor,
       "end this console session (needs the CSRF token)",
       {{"responses",
         {{"200", Answer("session ended; the cookie is cleared")},
          {"400", Answer("the request used a token, not a session")}}}},
       h(Logout)},
      {"GET",
       "/api/v1/me",
       Access::kRole,
       Role::kAuditor,
       "who is calling: name, role, and for a session its CSRF token",
       {{"responses",
         {{"200", Answer("{name, role, session, csrf_token?, expires?}")}}}},
       h(Me)},
      {"GET",
       "/api/v1/tokens",
       Access::kRole,
       Role::kAdmin,
       "list API tokens (never their secrets)",
       {{"responses",
         {{"200", Answer("{tokens: [{id, name, role, created, created_by, "
                         "expires, revoked, last_used, active}]}")}}}},
       h(ListTokens)},
      {"POST",
       "/api/v1/tokens",
       Access::kRole,
       Role::kAdmin,
       "make an API token; the answer is the only time it is shown",
       {{"requestBody",
         JsonBody(
             {{"type", "object"},
              {"required", {"name", "role"}},
              {"properties",
               {{"name", str},
                {"role",
                 {{"type", "string"},
                  {"enum", {"admin", "operator", "auditor"}}}},
                {"expires_days",
                 {{"type", "integer"}, {"minimum", 0}, {"maximum", 3650}}}}}})},
        {"responses",
         {{"201", Answer("the token: {id, name, role, ..., token}")},
          {"400", Answer("bad name, role or expires_days")},
          {"409", Answer("an active token has that name")}}}},
       h(CreateToken)},
      {"DELETE",
       "/api/v1/tokens/{id}",
       Access::kRole,
       Role::kAdmin,
       "revoke an API token at once",
       {{"responses",
         {{"200", Answer("revoked (also when it already was)")},
          {"400", Answer("id is not a number")},
          {"404", Answer("no such token")}}}},
       h(RevokeToken)},
      {"GET",
       "/api/v1/audit",
       Access::kRole,
       Role::kAdmin,
       "the audit log, newest first: state-changing requests and logins",
       {{"parameters",
         {QueryParam("since", "string",
                     "RFC 3339 UTC time; entries at or after"),
          QueryParam("until", "string", "RFC 3339 UTC time; entries before"),
          QueryParam("before", "integer",
                     "entry id; the next page (next_before)"),
          QueryParam("limit", "integer", "1-1000, default 100")}},
        {"responses",
         {{"200", Answer("{entries: [{id, time, who, peer, method, path, "
                         "status, detail}], next_before}")},
          {"400", Answer("bad since, until, before or limit")}}}},
       h(ListAudit)},
  };
}

}  // namespace haven::appliance
