// The route lists of havend's API areas, each in its own
// appliance/routes_<area>.cc; daemon.cc joins them with CoreRoutes.
#ifndef HAVEN_APPLIANCE_ROUTES_H_
#define HAVEN_APPLIANCE_ROUTES_H_

#include <vector>

#include "appliance/api.h"
#include "appliance/services.h"

namespace haven::appliance {

// The read side (needs Services::open_repositories): repositories, hosts
// and their VMs, recovery points, a point's files and their downloads.
std::vector<Route> RepositoryRoutes(Services& s);
std::vector<Route> HostRoutes(Services& s);
std::vector<Route> PointRoutes(Services& s);
std::vector<Route> FileRoutes(Services& s);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_ROUTES_H_
