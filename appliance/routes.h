// The route tables of havend's API areas, one function per area, each in
// its own appliance/routes_<area>.cc. The daemon joins them with
// CoreRoutes (appliance/api.h) and hands them to MakeApiHandler.
#ifndef HAVEN_APPLIANCE_ROUTES_H_
#define HAVEN_APPLIANCE_ROUTES_H_

#include <vector>

#include "appliance/api.h"
#include "appliance/services.h"

namespace haven::appliance {

// /api/v1/schedules... and /api/v1/calendar (appliance/routes_schedules.cc).
// Needs s.scheduler.
std::vector<Route> ScheduleRoutes(Services& s);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_ROUTES_H_
