// Routes of the local accounts (docs/appliance.md, "Users"): list, make,
// change role or password, delete; admin only. Every change ends the
// user's sessions and is written to the audit log by the API's audit hook
// (the route's summary, never the body: no password reaches the log).
#include "appliance/auth.h"
#include "appliance/routes.h"
#include "base/time.h"

namespace haven::appliance {
namespace {

using json = nlohmann::json;

std::variant<json, Response> BodyObject(const Request& r) {
  json body = json::parse(r.body, nullptr, false);
  if (body.is_discarded() || !body.is_object())
    return ErrorJson(400, "the request body must be a JSON object");
  return body;
}

// The "role" field when present: nullopt and no error when absent.
std::optional<Response> ReadRole(const json& body, std::optional<Role>* out) {
  if (!body.contains("role") || body["role"].is_null()) return std::nullopt;
  std::optional<Role> role;
  if (body["role"].is_string())
    role = ParseRole(body["role"].get<std::string>());
  if (!role) return ErrorJson(400, "role must be admin, operator or auditor");
  *out = role;
  return std::nullopt;
}

json UserJson(const AccountInfo& a, const Caller& caller) {
  return {
      {"name", a.name},
      {"role", std::string(RoleName(a.role))},
      {"changed", FormatTime(a.changed * 1000000000, TimeStyle::kRfc3339Utc)},
      {"sessions", a.sessions},
      {"you", caller.session && caller.name == a.name}};
}

Response ListUsers(Services& s, const ApiCall& call) {
  auto accounts = s.auth->ListAccounts();
  if (!accounts.ok()) return StatusResponse(accounts.status());
  json list = json::array();
  for (const AccountInfo& a : *accounts)
    list.push_back(UserJson(a, call.caller));
  return OkJson({{"users", list}});
}

Response CreateUser(Services& s, const ApiCall& call) {
  auto parsed = BodyObject(call.request);
  if (auto* r = std::get_if<Response>(&parsed)) return *r;
  const json& body = std::get<json>(parsed);
  if (!body.contains("name") || !body["name"].is_string())
    return ErrorJson(400, "the body needs a \"name\" string");
  if (!body.contains("password") || !body["password"].is_string())
    return ErrorJson(400, "the body needs a \"password\" string");
  std::optional<Role> role;
  if (auto bad = ReadRole(body, &role)) return *bad;
  if (!role)
    return ErrorJson(400,
                     "the body needs a \"role\": admin, operator or auditor");
  std::string name = body["name"];
  Status st =
      s.auth->CreateAccount(name, body["password"].get<std::string>(), *role);
  if (!st.ok()) return StatusResponse(st);
  return OkJson({{"name", name}, {"role", std::string(RoleName(*role))}}, 201);
}

Response UpdateUser(Services& s, const ApiCall& call) {
  auto parsed = BodyObject(call.request);
  if (auto* r = std::get_if<Response>(&parsed)) return *r;
  const json& body = std::get<json>(parsed);
  std::optional<Role> role;
  if (auto bad = ReadRole(body, &role)) return *bad;
  std::optional<std::string> password;
  if (body.contains("password") && !body["password"].is_null()) {
    if (!body["password"].is_string())
      return ErrorJson(400, "password must be a string");
    password = body["password"].get<std::string>();
  }
  if (!role && !password)
    return ErrorJson(400,
                     "nothing to change: give \"role\" and/or "
                     "\"password\"");
  const std::string& name = *call.Param("name");
  Status st = s.auth->UpdateAccount(name, role, password);
  if (!st.ok()) return StatusResponse(st);
  json out = {{"name", name}, {"sessions_ended", true}};
  if (role) out["role"] = std::string(RoleName(*role));
  if (password) out["password_changed"] = true;
  return OkJson(out);
}

Response DeleteUser(Services& s, const ApiCall& call) {
  const std::string& name = *call.Param("name");
  // A token names no account ("token:..."), so it may delete any but the
  // last admin.
  Status st = s.auth->DeleteAccount(name, call.caller.name);
  if (!st.ok()) return StatusResponse(st);
  return OkJson({{"name", name}, {"deleted", true}});
}

json JsonBody(const json& schema) {
  return {{"required", true},
          {"content", {{"application/json", {{"schema", schema}}}}}};
}

json Answer(std::string_view description) {
  return {{"description", std::string(description)}};
}

}  // namespace

std::vector<Route> UserRoutes(Services& s) {
  const json str = {{"type", "string"}};
  const json role = {{"type", "string"},
                     {"enum", {"admin", "operator", "auditor"}}};
  const json password = {{"type", "string"},
                         {"minLength", static_cast<int>(kMinPasswordChars)},
                         {"writeOnly", true}};
  auto h = [&s](Response (*f)(Services&, const ApiCall&)) {
    return [&s, f](const ApiCall& call) { return f(s, call); };
  };
  return {
      {"GET",
       "/api/v1/users",
       Access::kRole,
       Role::kAdmin,
       "list the console's user accounts (never their passwords)",
       {{"responses",
         {{"200", Answer("{users: [{name, role, changed, sessions, you}]}: "
                         "sessions = console sessions open now; you = the "
                         "caller's own account")}}}},
       h(ListUsers)},
      {"POST",
       "/api/v1/users",
       Access::kRole,
       Role::kAdmin,
       "make a user account",
       {{"requestBody",
         JsonBody({{"type", "object"},
                   {"required", {"name", "role", "password"}},
                   {"properties",
                    {{"name", str}, {"role", role}, {"password", password}}}})},
        {"responses",
         {{"201", Answer("made: {name, role}")},
          {"400", Answer("bad name (1-64 of A-Z a-z 0-9 . _ -), role, or a "
                         "password shorter than 12 characters")},
          {"409", Answer("a user has that name")}}}},
       h(CreateUser)},
      {"PUT",
       "/api/v1/users/{name}",
       Access::kRole,
       Role::kAdmin,
       "change a user's role or password; ends the user's sessions",
       {{"requestBody",
         JsonBody({{"type", "object"},
                   {"properties", {{"role", role}, {"password", password}}}})},
        {"responses",
         {{"200", Answer("{name, role?, password_changed?, sessions_ended}")},
          {"400", Answer("bad role or password, or nothing to change")},
          {"404", Answer("no such user")},
          {"409", Answer("the user is the last admin")}}}},
       h(UpdateUser)},
      {"DELETE",
       "/api/v1/users/{name}",
       Access::kRole,
       Role::kAdmin,
       "delete a user account; ends the user's sessions",
       {{"responses",
         {{"200", Answer("{name, deleted: true}")},
          {"404", Answer("no such user")},
          {"409", Answer("the user is the last admin, or the caller "
                         "(nobody deletes their own account)")}}}},
       h(DeleteUser)},
  };
}

}  // namespace haven::appliance
