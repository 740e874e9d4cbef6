#include "appliance/routes.h"

#include <utility>

#include "appliance/daemon.h"

namespace haven::appliance {

std::vector<Route> HostResourceRoutes(Services& s);  // routes_host_resources.cc

std::vector<Route> AllRoutes(Services& s, const ApiOptions& api,
                             int max_event_streams,
                             const RepositoryUsageCache* usage) {
  std::vector<Route> routes = CoreRoutes(api);
  auto add = [&routes](std::vector<Route> more) {
    for (Route& r : more) routes.push_back(std::move(r));
  };
  add(AuthRoutes(s));
  add(MetricsRoutes(s, usage));
  add(JobRoutes(s, max_event_streams));
  add(RestoreRoutes(s));
  add(RepositoryRoutes(s));
  add(HostRoutes(s));
  add(HostResourceRoutes(s));
  add(PointRoutes(s));
  add(FileRoutes(s));
  add(VolumeRoutes(s));
  add(ScheduleRoutes(s));
  add(UsageRoutes(s));
  add(UserRoutes(s));
  add(NotifySettingsRoutes(s));
  // --- agents: registry ---
  add(AgentAdminRoutes(s));
  // --- agents: uploads ---
  add(AgentPointRoutes(s));
  // --- agents: jobs ---
  add(AgentJobRoutes(s));
  add(AgentRestoreRoutes(s));
  // --- copies ---
  add(CopyRoutes(s));
  add(RemoteRoutes(s));
  return routes;
}

nlohmann::json ApiDocument(std::string_view version) {
  Services none;
  none.version = std::string(version);
  ApiOptions api;
  api.version = std::string(version);
  // The event streams' limit as a default `havend serve` sets it.
  std::vector<Route> routes =
      AllRoutes(none, api, ServeOptions().threads / 2, nullptr);
  // As MakeApiHandler serves it: the table plus the document's own route.
  routes.push_back(OpenApiRoute([](const ApiCall&) { return Response(); }));
  return OpenApiDocument(routes, version);
}

}  // namespace haven::appliance
