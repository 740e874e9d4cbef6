// GET /api/v1/events: the job service's events as Server-Sent Events.
//
//   event: state      data: {id, kind, repository, state, queue_reason|error}
//   event: progress   data: ProgressJson (appliance/job_json.h), at most
//                     about 4 a second per job
//   event: dropped    data: {dropped: N} when this client fell behind
//   ": keep-alive"    a comment every 15 s without events
//
// The stream ends when the client goes away or havend stops. Each open
// stream holds one of the server's handler threads, so at most
// `max_streams` are open at once; one more is refused with 503.
#ifndef HAVEN_APPLIANCE_ROUTES_EVENTS_H_
#define HAVEN_APPLIANCE_ROUTES_EVENTS_H_

#include "appliance/api.h"
#include "appliance/services.h"

namespace haven::appliance {

Route EventsRoute(Services& s, int max_streams);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_ROUTES_EVENTS_H_
