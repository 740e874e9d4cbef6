#include "appliance/api.h"

#include <charconv>
#include <memory>
#include <set>
#include <utility>

#include "base/json.h"

namespace haven::appliance {
namespace {

std::vector<std::string_view> Segments(std::string_view path) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start < path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    if (end > start) out.push_back(path.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

bool IsParam(std::string_view seg) {
  return seg.size() > 2 && seg.front() == '{' && seg.back() == '}';
}

// Matches `path` against a route pattern; fills `params`.
bool Match(std::string_view pattern, std::string_view path,
           std::map<std::string, std::string>* params) {
  if (path.empty() || path.front() != '/') return false;
  if (path.size() > 1 && path.back() == '/') return false;
  std::vector<std::string_view> want = Segments(pattern);
  std::vector<std::string_view> got = Segments(path);
  if (want.size() != got.size()) return false;
  std::map<std::string, std::string> found;
  for (size_t i = 0; i < want.size(); ++i) {
    if (IsParam(want[i])) {
      found[std::string(want[i].substr(1, want[i].size() - 2))] = got[i];
    } else if (want[i] != got[i]) {
      return false;
    }
  }
  *params = std::move(found);
  return true;
}

Response Unauthorized() {
  Response r = ErrorJson(401, "authentication required");
  r.headers.emplace_back("www-authenticate", "Bearer realm=\"havend\"");
  return r;
}

bool StateChanging(const std::string& method) {
  return method != "GET" && method != "HEAD";
}

// Whether the body is an HTML form's: application/x-www-form-urlencoded,
// parameters (charset) ignored, and not a JSON object. curl's --data, which
// API scripts use for JSON, labels its body a form too; a form's body
// ("request=...&csrf_token=...") never starts with '{', so such a body
// stays the JSON it is.
bool FormBody(const Request& req) {
  size_t first = req.body.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && req.body[first] == '{') return false;
  const std::string* type = req.Header("content-type");
  if (type == nullptr) return false;
  std::string media = type->substr(0, type->find(';'));
  while (!media.empty() && media.back() == ' ') media.pop_back();
  for (char& c : media) c = static_cast<char>(std::tolower(c));
  return media == "application/x-www-form-urlencoded";
}

constexpr char kFormCsrfField[] = "csrf_token";

// A browser that posted a form shows the answer as a page in place of the
// console: an error is a sentence in plain text, not JSON. Plain text (and
// nosniff, which every answer carries) keeps untrusted names in the message
// inert.
Response AsFormError(Response r) {
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  std::string message =
      j.is_object() && j.contains("error") && j["error"].is_string()
          ? j["error"].get<std::string>()
          : r.body;
  r.body = "havend could not answer this download (HTTP " +
           std::to_string(r.status) + " " +
           std::string(ReasonPhrase(r.status)) + "):\n\n" + message +
           "\n\nGo back to the console with the browser's Back button.\n";
  for (auto& [name, value] : r.headers)
    if (name == "content-type") value = "text/plain; charset=utf-8";
  return r;
}

}  // namespace

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kAuditor:
      return "auditor";
    case Role::kOperator:
      return "operator";
    case Role::kAdmin:
      return "admin";
    case Role::kAgent:
      return "agent";
    case Role::kNone:
      break;
  }
  return "none";
}

std::optional<Role> ParseRole(std::string_view name) {
  for (Role r : {Role::kAuditor, Role::kOperator, Role::kAdmin})
    if (RoleName(r) == name) return r;
  return std::nullopt;
}

std::optional<int64_t> ParseRouteId(const std::string* text) {
  if (!text || text->empty() || text->size() > 18) return std::nullopt;
  int64_t v = 0;
  auto [end, ec] =
      std::from_chars(text->data(), text->data() + text->size(), v);
  if (ec != std::errc() || end != text->data() + text->size() || v < 0)
    return std::nullopt;
  return v;
}

Result<nlohmann::json> JsonBodyObject(const Request& req) {
  if (req.body.empty()) return nlohmann::json::object();
  auto j = nlohmann::json::parse(req.body, nullptr, false);
  if (j.is_discarded())
    return InvalidArgument("the request body is not valid JSON");
  if (!j.is_object())
    return InvalidArgument("the request body must be a JSON object");
  return j;
}

bool RoleAllows(const Caller& caller, Role role) {
  if (caller.role == Role::kAgent || role == Role::kAgent)
    return caller.role == role && !caller.agent_id.empty();
  return caller.role >= role;
}

const std::string* ApiCall::Param(std::string_view name) const {
  auto it = params.find(std::string(name));
  return it == params.end() ? nullptr : &it->second;
}

const std::string* ApiCall::Query(std::string_view name) const {
  auto it = query.find(std::string(name));
  return it == query.end() ? nullptr : &it->second;
}

Response ErrorJson(int status, std::string_view message) {
  return Response::Json(
      status, DumpJson(nlohmann::json{{"error", std::string(message)}}));
}

Response StatusResponse(const Status& status) {
  int code = 500;
  switch (status.code()) {
    case Code::kOk:
      code = 200;
      break;
    case Code::kInvalidArgument:
      code = 400;
      break;
    case Code::kNotFound:
      code = 404;
      break;
    case Code::kAlreadyExists:
    case Code::kFailedPrecondition:
      code = 409;
      break;
    case Code::kPermissionDenied:
      code = 403;
      break;
    case Code::kUnavailable:
      code = 503;
      break;
    default:
      break;
  }
  Response r = ErrorJson(code, status.message());
  return r;
}

Response OkJson(const nlohmann::json& body, int status) {
  return Response::Json(status, DumpJson(body));
}

std::vector<Route> CoreRoutes(const ApiOptions& options) {
  std::string health =
      DumpJson(nlohmann::json{{"status", "ok"}, {"version", options.version}});
  return {
      {"GET",
       "/api/v1/health",
       Access::kPublic,
       Role::kNone,
       "liveness: 200 while havend serves requests",
       {{"responses", {{"200", {{"description", "serving"}}}}}},
       [health](const ApiCall&) { return Response::Json(200, health); }},
  };
}

nlohmann::json OpenApiDocument(const std::vector<Route>& routes,
                               std::string_view version) {
  nlohmann::json paths = nlohmann::json::object();
  for (const Route& route : routes) {
    nlohmann::json op =
        route.openapi.is_object() ? route.openapi : nlohmann::json::object();
    op["summary"] = route.summary;
    nlohmann::json params = op.value("parameters", nlohmann::json::array());
    for (std::string_view seg : Segments(route.path)) {
      if (!IsParam(seg)) continue;
      params.push_back({{"name", std::string(seg.substr(1, seg.size() - 2))},
                        {"in", "path"},
                        {"required", true},
                        {"schema", {{"type", "string"}}}});
    }
    if (!params.empty()) op["parameters"] = params;
    if (!op.contains("responses"))
      op["responses"] = {{"200", {{"description", "OK"}}}};
    if (route.access == Access::kPublic) {
      op["security"] = nlohmann::json::array();
    } else {
      op["x-haven-role"] = std::string(RoleName(route.role));
      op["responses"]["401"] = {{"description", "no valid credentials"}};
      op["responses"]["403"] = {
          {"description", "role below " + std::string(RoleName(route.role))}};
    }
    std::string method = route.method;
    for (char& c : method) c = static_cast<char>(std::tolower(c));
    paths[route.path][method] = op;
  }
  return {
      {"openapi", "3.0.3"},
      {"info",
       {{"title", "havend API"},
        {"version", std::string(version)},
        {"description",
         "The Haven appliance's API. Every route needs a bearer token or a "
         "console session unless its security is empty; x-haven-role names "
         "the least role that may call it (auditor < operator < admin)."}}},
      {"servers", {{{"url", "/"}}}},
      {"components",
       {{"securitySchemes",
         {{"bearer", {{"type", "http"}, {"scheme", "bearer"}}},
          {"session",
           {{"type", "apiKey"},
            {"in", "cookie"},
            {"name", "haven_session"}}}}}}},
      {"security",
       {{{"bearer", nlohmann::json::array()}},
        {{"session", nlohmann::json::array()}}}},
      {"paths", paths},
  };
}

Route OpenApiRoute(RouteHandler handler) {
  return {"GET",
          "/api/v1/openapi.json",
          Access::kPublic,
          Role::kNone,
          "this document: the API's OpenAPI 3.0 description, made from "
          "havend's route table",
          {{"responses",
            {{"200", {{"description", "the OpenAPI document (JSON)"}}}}}},
          std::move(handler)};
}

Result<Handler> MakeApiHandler(std::vector<Route> routes, ApiOptions options) {
  std::set<std::string> seen;
  for (const Route& r : routes) {
    std::string name = r.method + " " + r.path;
    if (r.access == Access::kUnset)
      return InvalidArgument("route " + name + " declares no access rule");
    if (r.access == Access::kRole && r.role == Role::kNone)
      return InvalidArgument("route " + name + " needs a role");
    if (!r.handler) return InvalidArgument("route " + name + " has no handler");
    if (!seen.insert(name).second)
      return InvalidArgument("route " + name + " is declared twice");
  }
  // The document describes every route, itself included.
  auto openapi = std::make_shared<std::string>();
  routes.push_back(OpenApiRoute(
      [openapi](const ApiCall&) { return Response::Json(200, *openapi); }));
  *openapi = DumpJson(OpenApiDocument(routes, options.version), 1);
  return Handler([routes = std::move(routes), options = std::move(options)](
                     const Request& req) -> Response {
    const Route* match = nullptr;
    std::map<std::string, std::string> params;
    std::string allow;
    bool public_path = false;
    for (const Route& route : routes) {
      std::map<std::string, std::string> p;
      if (!Match(route.path, req.path, &p)) continue;
      public_path = public_path || route.access == Access::kPublic;
      if (route.method == req.method ||
          (route.method == "GET" && req.method == "HEAD")) {
        match = &route;
        params = std::move(p);
        break;
      }
      allow += (allow.empty() ? "" : ", ") + route.method;
    }
    if (!match && public_path) {
      Response r = ErrorJson(405, "method not allowed");
      r.headers.emplace_back("allow", allow);
      return r;
    }
    // Only a route that says so reads a form's fields, and with them the
    // CSRF token a form carries in its body.
    std::optional<std::map<std::string, std::string>> form;
    bool bad_form = false;
    std::optional<std::string> form_csrf;
    const bool form_request = match && match->csrf_from_form && FormBody(req);
    auto answer = [form_request](Response r) {
      return form_request && r.status >= 400 ? AsFormError(std::move(r)) : r;
    };
    if (form_request) {
      form = ParseQuery(req.body);
      bad_form = !form;
      if (form) {
        if (auto it = form->find(kFormCsrfField); it != form->end()) {
          form_csrf = std::move(it->second);
          form->erase(it);
        }
      }
    }
    Caller caller;
    bool public_route = match && match->access == Access::kPublic;
    if (!public_route) {
      if (!options.authenticate) return Unauthorized();
      auto who = options.authenticate(req, StateChanging(req.method),
                                      form_csrf ? &*form_csrf : nullptr);
      if (auto* refusal = std::get_if<Response>(&who)) return answer(*refusal);
      caller = std::get<Caller>(who);
      if (!match) {
        if (allow.empty()) return ErrorJson(404, "no such API path");
        Response r = ErrorJson(405, "method not allowed");
        r.headers.emplace_back("allow", allow);
        return r;
      }
    }
    auto query = ParseQuery(req.query);
    Response resp;
    // Every body but an agent's binary upload may be read as JSON by the
    // route: refuse nesting that would overflow the stack when copied.
    const std::string* type = req.Header("content-type");
    const bool binary = type && type->rfind("application/octet-stream", 0) == 0;
    if (!query) {
      resp = ErrorJson(400, "bad percent-escape in the query string");
    } else if (!binary && !JsonNestingWithin(req.body)) {
      resp = ErrorJson(400,
                       "the request body nests arrays or objects deeper "
                       "than " +
                           std::to_string(kMaxJsonDepth) + " levels");
    } else if (bad_form) {
      resp = ErrorJson(400, "bad percent-escape in the form body");
    } else if (!public_route && !RoleAllows(caller, match->role)) {
      resp = ErrorJson(403, "this needs the " +
                                std::string(RoleName(match->role)) + " role; " +
                                caller.name + " has " +
                                std::string(RoleName(caller.role)));
    } else {
      ApiCall call{req, caller, std::move(params), std::move(*query),
                   std::move(form)};
      resp = match->handler(call);
    }
    if (!public_route && StateChanging(req.method) && options.audit &&
        match->audited)
      options.audit(caller, req, *match, resp.status);
    return answer(std::move(resp));
  });
}

}  // namespace haven::appliance
