// The OpenAPI fragments of the schedule routes (appliance/routes_schedules.cc),
// kept apart so the handlers read on their own.
#ifndef HAVEN_APPLIANCE_ROUTES_SCHEDULES_DOC_H_
#define HAVEN_APPLIANCE_ROUTES_SCHEDULES_DOC_H_

#include <nlohmann/json.hpp>

namespace haven::appliance::doc {

nlohmann::json ListSchedules();
nlohmann::json CreateSchedule();
nlohmann::json GetSchedule();
nlohmann::json ChangeSchedule();
nlohmann::json DeleteSchedule();
nlohmann::json NextRuns();
nlohmann::json RunNow();
nlohmann::json CalendarPreview();

}  // namespace haven::appliance::doc

#endif  // HAVEN_APPLIANCE_ROUTES_SCHEDULES_DOC_H_
