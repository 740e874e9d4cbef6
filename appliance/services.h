// What havend's routes and job executors share: the configuration, the
// state database, the repositories and the job service. Owned by the
// daemon (appliance/daemon.cc); routes get a reference that outlives them.
#ifndef HAVEN_APPLIANCE_SERVICES_H_
#define HAVEN_APPLIANCE_SERVICES_H_

#include "appliance/config.h"
#include "appliance/jobs.h"
#include "appliance/repositories.h"
#include "appliance/repository_cache.h"
#include "appliance/state_db.h"

namespace haven::appliance {

class Scheduler;  // appliance/scheduler.h
class AuthService;  // appliance/auth.h
class AuditLog;  // appliance/audit.h
class UsageHistory;    // appliance/usage_history.h
class NotifySettings;  // appliance/notify_settings.h
class AgentRegistry;   // appliance/agents.h  --- agents: registry ---
// --- agents: uploads ---
class AgentStore;  // appliance/agent_store.h
class AgentDispatch;   // --- agents: jobs --- appliance/agent_jobs.h
class WritableRepositories;  // --- copies --- appliance/writable_repositories.h
class RemoteStore;           // --- copies --- appliance/remotes.h

struct Services {
  const ApplianceConfig* config = nullptr;
  StateDb* db = nullptr;
  const RepositoryCatalog* repositories = nullptr;
  // The same repositories opened read-only for the API's reads, kept a
  // short while (repository_cache.h). A job that needs a repository alone
  // (gc) drops its entry first.
  RepositoryCache* open_repositories = nullptr;
  JobService* jobs = nullptr;
  Scheduler* scheduler = nullptr;
  AuthService* auth = nullptr;
  AuditLog* audit = nullptr;
  // --- settings (issue 17): usage over time, notification settings ---
  UsageHistory* usage_history = nullptr;
  NotifySettings* notify_settings = nullptr;
  // --- agents: registry ---
  // Enrolled agents (agents.h) and the fingerprint of the certificate
  // havend serves ("SHA256:AB:..."), which enrollment commands pin.
  AgentRegistry* agents = nullptr;
  std::string fingerprint;
  // --- agents: uploads (chunks, points) and agents' own points ---
  AgentStore* agent_store = nullptr;
  // --- agents: jobs --- tasks handed to agents' long polls
  AgentDispatch* agent_dispatch = nullptr;
  // --- copies --- repositories opened for writing for the copy routes'
  // uploads, and the remote appliances sync jobs copy to and from
  WritableRepositories* writable_repositories = nullptr;
  RemoteStore* remotes = nullptr;
  std::string version;
};

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_SERVICES_H_
