// The API's routes, area by area: each appliance/routes_<area>.cc returns
// its part of the route table (api.h), and the daemon joins them.
#ifndef HAVEN_APPLIANCE_ROUTES_H_
#define HAVEN_APPLIANCE_ROUTES_H_

#include <vector>

#include "appliance/api.h"
#include "appliance/services.h"

namespace haven::appliance {

// /api/v1/restores/...: plan a VM, host or file restore, show a plan, run
// it as a job (routes_restores.cc). Needs RegisterRestoreKinds
// (restore_jobs.h) on s.jobs.
std::vector<Route> RestoreRoutes(Services& s);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_ROUTES_H_
