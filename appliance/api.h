// havend's HTTP API: the route table and the dispatch over it. The first
// part of issue 16 serves one public route; every other request needs
// credentials, which no request can present yet, so it is answered 401.
#ifndef HAVEN_APPLIANCE_API_H_
#define HAVEN_APPLIANCE_API_H_

#include <string>
#include <vector>

#include "appliance/http_message.h"

namespace haven::appliance {

enum class Access {
  kPublic,         // served without credentials
  kAuthenticated,  // 401 without valid credentials
};

struct Route {
  std::string method;  // "GET"
  std::string path;    // exact path, "/api/v1/health"
  Access access;
  std::string summary;  // one line, for the API's documentation
  Handler handler;
};

struct ApiOptions {
  std::string version;  // reported by /api/v1/health
};

// The routes havend serves, in one table.
std::vector<Route> ApiRoutes(const ApiOptions& options);

// Dispatches over `routes`: a route that needs credentials answers 401
// before anything else is looked at (an unauthenticated client learns
// nothing, not even which paths exist); a known public path with another
// method answers 405 with Allow; anything else 401.
Handler MakeApiHandler(std::vector<Route> routes);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_API_H_
