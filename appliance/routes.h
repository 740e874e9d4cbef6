// The route tables of havend's API areas, one function per area, each in
// its own appliance/routes_<area>.cc. The daemon joins them with
// CoreRoutes (appliance/api.h) and hands them to MakeApiHandler.
#ifndef HAVEN_APPLIANCE_ROUTES_H_
#define HAVEN_APPLIANCE_ROUTES_H_

#include <vector>

#include "appliance/api.h"
#include "appliance/services.h"

namespace haven::appliance {

// Jobs: list, show, log, cancel; run a backup now; forget, gc, check of a
// repository; GET /api/v1/events (Server-Sent Events), at most
// `max_event_streams` open at once (each holds a handler thread).
std::vector<Route> JobRoutes(Services& s, int max_event_streams);
// Accounts, sessions and tokens: POST /api/v1/login (public), logout, me,
// tokens (list, create, revoke) and GET /api/v1/audit. Needs s.auth and
// s.audit.
std::vector<Route> AuthRoutes(Services& s);
// /api/v1/schedules... and /api/v1/calendar (appliance/routes_schedules.cc).
// Needs s.scheduler.
std::vector<Route> ScheduleRoutes(Services& s);

class RepositoryUsageCache;  // appliance/notify_monitor.h

// GET /metrics (Prometheus, auditor). `usage` (may be null: no repository
// figures) must outlive the routes.
std::vector<Route> MetricsRoutes(Services& s,
                                 const RepositoryUsageCache* usage);
// /api/v1/restores/...: plan a VM, host or file restore, show a plan, run
// it as a job (routes_restores.cc). Needs RegisterRestoreKinds
// (restore_jobs.h) on s.jobs.
std::vector<Route> RestoreRoutes(Services& s);
// The read side (needs Services::open_repositories): repositories, hosts
// and their VMs, recovery points, a point's files and their downloads.
std::vector<Route> RepositoryRoutes(Services& s);
std::vector<Route> HostRoutes(Services& s);
std::vector<Route> PointRoutes(Services& s);
std::vector<Route> FileRoutes(Services& s);
// GET /api/v1/points/{repo}/{id}/volumes: disks and volumes of a point
// (routes_volumes.cc).
std::vector<Route> VolumeRoutes(Services& s);

// --- settings (issue 17) ---
// GET /api/v1/repositories/{name}/usage (routes_usage.cc). Needs
// s.usage_history and s.repositories.
std::vector<Route> UsageRoutes(Services& s);
// /api/v1/users... (routes_users.cc). Needs s.auth.
std::vector<Route> UserRoutes(Services& s);
// /api/v1/settings/notifications... (routes_notify_settings.cc). Needs
// s.notify_settings.
std::vector<Route> NotifySettingsRoutes(Services& s);

// --- agents: registry ---
// /api/v1/agents... (admin's view: enrollment tokens, list, revoke) and
// /api/v1/agent/enroll (public) and /agent/hello (role agent)
// (routes_agents.cc). Needs s.agents, s.repositories, s.fingerprint.
std::vector<Route> AgentAdminRoutes(Services& s);
// --- agents: uploads ---
// /api/v1/agent/chunks/missing, /agent/chunks, /agent/points (commit, list,
// show, files, archive): role agent (routes_agent_points.cc). Needs
// s.agent_store and s.open_repositories.
std::vector<Route> AgentPointRoutes(Services& s);
// --- agents: jobs ---
// The agent's long poll GET /api/v1/agent/jobs/next and its progress and
// result reports, and POST /api/v1/agents/{id}/backup
// (routes_agent_jobs.cc). Needs s.agent_dispatch (503 without it) and
// s.jobs.
std::vector<Route> AgentJobRoutes(Services& s);
// GET /api/v1/agent/jobs/{id}/point and POST /agent/jobs/{id}/chunks: a
// host agent's restore reads the point its job names
// (routes_agent_restore.cc). Needs s.agent_dispatch and s.open_repositories.
std::vector<Route> AgentRestoreRoutes(Services& s);

// --- copies (issue 19) ---
// /api/v1/copy/...: this appliance as either side of another's copy
// (routes_copy.cc, admin). Needs s.open_repositories and
// s.writable_repositories.
std::vector<Route> CopyRoutes(Services& s);
// /api/v1/remotes... and POST /api/v1/sync (routes_remotes.cc, admin).
// Needs s.remotes and s.jobs (with RegisterSyncJobKind).
std::vector<Route> RemoteRoutes(Services& s);

// Every route havend serves, in one table: CoreRoutes and each area's.
// Serve() hands it to MakeApiHandler; `havend openapi` prints the OpenAPI
// document made from it (docs/openapi.json). Building the table does not
// touch `s`'s services, so a Services with none set describes the API.
std::vector<Route> AllRoutes(Services& s, const ApiOptions& api,
                             int max_event_streams,
                             const RepositoryUsageCache* usage);

// The OpenAPI document of AllRoutes, as havend serves it at
// /api/v1/openapi.json, for `version`.
nlohmann::json ApiDocument(std::string_view version);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_ROUTES_H_
