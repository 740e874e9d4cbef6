#include "appliance/api.h"

#include <utility>

#include "base/json.h"

namespace haven::appliance {
namespace {

Response Unauthorized() {
  Response r = Response::Json(
      401, DumpJson(nlohmann::json{{"error", "authentication required"}}));
  r.headers.emplace_back("www-authenticate", "Bearer realm=\"havend\"");
  return r;
}

}  // namespace

std::vector<Route> ApiRoutes(const ApiOptions& options) {
  std::string health =
      DumpJson(nlohmann::json{{"status", "ok"}, {"version", options.version}});
  return {
      {"GET", "/api/v1/health", Access::kPublic,
       "liveness: 200 while havend serves requests",
       [health](const Request&) { return Response::Json(200, health); }},
  };
}

Handler MakeApiHandler(std::vector<Route> routes) {
  return [routes = std::move(routes)](const Request& req) -> Response {
    std::string allow;
    for (const Route& route : routes) {
      if (route.path != req.path) continue;
      // Until the next part of issue 16 brings credentials, nothing can
      // pass this check.
      if (route.access != Access::kPublic) return Unauthorized();
      if (route.method == req.method ||
          (route.method == "GET" && req.method == "HEAD"))
        return route.handler(req);
      allow += (allow.empty() ? "" : ", ") + route.method;
    }
    if (allow.empty()) return Unauthorized();
    Response r = Response::Json(
        405, DumpJson(nlohmann::json{{"error", "method not allowed"}}));
    r.headers.emplace_back("allow", allow);
    return r;
  };
}

}  // namespace haven::appliance
