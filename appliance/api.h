// havend's HTTP API: one route table, the dispatch over it, and the
// OpenAPI document made from it.
//
// Every endpoint is declared once as a Route: method, path pattern, the
// role it needs, a summary, its OpenAPI fragment and the handler. The
// dispatcher, the role checks, the audit log and /api/v1/openapi.json all
// read this one table, so they cannot drift (STYLE.md, "From Proxmox's
// servers"). A route with no role does not start: MakeApiHandler refuses
// a table with an unset requirement.
//
// Each area of the API keeps its routes in its own file
// (appliance/routes_<area>.cc) as a function returning std::vector<Route>;
// api.cc joins them.
#ifndef HAVEN_APPLIANCE_API_H_
#define HAVEN_APPLIANCE_API_H_

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "appliance/http_message.h"
#include "base/status.h"

namespace haven::appliance {

// Roles, weakest first: a caller may use a route whose role is at or below
// its own. auditor reads everything, operator also runs backups and
// restores, admin also manages schedules, repositories, tokens, deletion.
//
// kAgent stands outside that order: an enrolled agent (docs/agents.md) may
// call the routes of role kAgent and nothing else, and only an agent may
// call them. ParseRole never yields it: no account or token has it.
enum class Role {
  kNone = 0,
  kAuditor = 1,
  kOperator = 2,
  kAdmin = 3,
  kAgent = 100
};
std::string_view RoleName(Role role);
std::optional<Role> ParseRole(std::string_view name);

// Who is calling, as the Authenticator established.
struct Caller {
  std::string name;  // "admin", "token:ci-runner", "agent:web1"
  Role role = Role::kNone;
  bool session = false;  // a console session (cookie), not a token
  // With Role::kAgent: the agent's id (agents table), whose namespace of
  // points is the only one this caller may touch.
  std::string agent_id;
};

// Whether `caller` may call a route needing `role` (the rule above).
bool RoleAllows(const Caller& caller, Role role);

// What a route needs.
enum class Access {
  kUnset,   // a table error: MakeApiHandler refuses to start
  kPublic,  // no credentials (health, login, openapi.json)
  kRole,    // credentials with at least Route::role
};

struct ApiCall {
  const Request& request;
  const Caller& caller;
  // "{id}" segments of the route's pattern, by name, percent-decoded.
  std::map<std::string, std::string> params;
  // Query parameters, percent-decoded; a repeated name keeps the last.
  std::map<std::string, std::string> query;
  // For a route with Route::csrf_from_form whose request has an
  // application/x-www-form-urlencoded body: its fields, percent-decoded,
  // without csrf_token (the dispatcher hands that to the Authenticator).
  // nullopt for every other request, whose body is the handler's to read.
  std::optional<std::map<std::string, std::string>> form;

  // The path or query parameter `name`, or nullptr.
  const std::string* Param(std::string_view name) const;
  const std::string* Query(std::string_view name) const;
};

using RouteHandler = std::function<Response(const ApiCall&)>;

struct Route {
  std::string method;  // "GET", "POST", "PUT", "DELETE"
  // "/api/v1/jobs/{id}/log": literal segments and {name} segments, each
  // matching one non-empty path segment.
  std::string path;
  Access access = Access::kUnset;
  Role role = Role::kNone;  // with kRole
  std::string summary;      // one line, for openapi.json and the console
  // OpenAPI "operation" fields beyond summary and security (parameters,
  // requestBody, responses); may be empty. The generator adds the path
  // parameters, the 401/403 answers and the role.
  nlohmann::json openapi = nlohmann::json::object();
  RouteHandler handler;
  // A browser's plain HTML form may call this route: a console session may
  // send its CSRF token as the field csrf_token of an
  // application/x-www-form-urlencoded body instead of the X-CSRF-Token
  // header (the synchronizer-token pattern), and the handler gets the
  // other fields in ApiCall::form. For downloads that must reach the
  // browser's own download manager, which a fetch() cannot (it would hold
  // the whole body in memory): POST .../archive. Every other route ignores
  // such a field, so a form cannot call it.
  bool csrf_from_form = false;
  // Whether a state-changing call goes to the audit log. Off only for the
  // agents' high-volume calls (chunk uploads, "missing" queries, progress
  // reports): what they lead to (a point committed, a job's result) is
  // audited.
  bool audited = true;
};

// Checks a request's credentials. Returns the caller; or a Response to send
// instead (401 for missing or bad credentials, 403 for a console session's
// state-changing request without its CSRF token, 429 when rate-limited).
// `state_changing` is true for every method but GET and HEAD.
// `form_csrf_token` is the csrf_token field of a form body, given (non-null)
// only for a route with Route::csrf_from_form; a session may prove its
// CSRF token with it when the request has no X-CSRF-Token header.
using Authenticator = std::function<std::variant<Caller, Response>(
    const Request&, bool state_changing, const std::string* form_csrf_token)>;

// Called after every state-changing request that passed authentication
// (allowed or refused by role) with its final status: who, what, result.
using AuditSink = std::function<void(const Caller&, const Request&,
                                     const Route&, int status)>;

struct ApiOptions {
  std::string version;         // reported by /api/v1/health and openapi.json
  Authenticator authenticate;  // unset: every non-public route answers 401
  AuditSink audit;             // may be unset
};

// A decimal id from a path or query parameter (0 to 18 digits, no sign);
// nullopt for anything else, or for null.
std::optional<int64_t> ParseRouteId(const std::string* text);
// A request body as a JSON object; an empty body is {}. InvalidArgument for
// a body that is not JSON or not an object.
Result<nlohmann::json> JsonBodyObject(const Request& req);

// JSON error body {"error": message} with `status`.
Response ErrorJson(int status, std::string_view message);
// Status -> HTTP: InvalidArgument 400, NotFound 404, AlreadyExists 409,
// PermissionDenied 403, FailedPrecondition 409, Unavailable 503, the rest
// 500 (message kept: handlers' messages are written for users).
Response StatusResponse(const Status& status);
// 200 with the JSON text of `body`.
Response OkJson(const nlohmann::json& body, int status = 200);

// The routes every havend serves whatever else is configured: health and
// openapi.json (built from `all_routes`, which it is part of).
std::vector<Route> CoreRoutes(const ApiOptions& options);

// The OpenAPI 3.0 document of `routes` (paths, roles as x-haven-role,
// security schemes bearer token and session cookie).
nlohmann::json OpenApiDocument(const std::vector<Route>& routes,
                               std::string_view version);

// GET /api/v1/openapi.json, public; MakeApiHandler adds it to every table.
Route OpenApiRoute(RouteHandler handler);

// Dispatches over `routes`. A path no route matches answers 401 before
// authentication would (an unauthenticated client learns nothing, not
// even which paths exist), and 404 once authenticated. A matched route
// needing a role: 401 without valid credentials, 403 when the caller's role
// is below it, else the handler. For a route with csrf_from_form and a
// form body, the body's csrf_token field goes to the Authenticator and the
// other fields to ApiCall::form (a bad percent-escape in it: 400); an
// error answer to such a form is text/plain, a sentence for the browser's
// window, instead of JSON. A known
// path with another method: 405
// with Allow. Fails (InvalidArgument naming the route) for a route with
// Access::kUnset, kRole without a role, or a duplicate method+path.
Result<Handler> MakeApiHandler(std::vector<Route> routes, ApiOptions options);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_API_H_
