#include "appliance/daemon.h"

#include <signal.h>

#include <cstdio>
#include <mutex>

#include "appliance/agent_jobs.h"
#include "appliance/agent_restores.h"
#include "appliance/agent_store.h"  // --- agents: uploads ---
#include "appliance/agents.h"       // --- agents: registry ---
#include "appliance/api.h"
#include "appliance/audit.h"
#include "appliance/auth.h"
#include "appliance/certificate.h"
#include "appliance/console_files.h"
#include "appliance/job_kinds.h"
#include "appliance/job_service.h"
#include "appliance/notifier.h"
#include "appliance/notify_monitor.h"
#include "appliance/notify_settings.h"
#include "appliance/remotes.h"
#include "appliance/repositories.h"
#include "appliance/repository_cache.h"
#include "appliance/restore_jobs.h"
#include "appliance/routes.h"
#include "appliance/scheduler.h"
#include "appliance/services.h"
#include "appliance/state_db.h"
#include "appliance/sync_jobs.h"
#include "appliance/systemd_notify.h"
#include "appliance/usage_history.h"
#include "appliance/writable_repositories.h"
#include "base/file.h"
#include "base/time.h"

namespace haven::appliance {

void Log(std::string_view line) {
  static std::mutex mu;
  std::string text = NowIso8601() + " havend: " + std::string(line) + "\n";
  std::lock_guard lock(mu);
  std::fwrite(text.data(), 1, text.size(), stderr);
  std::fflush(stderr);
}

namespace {

void Say(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
  Log(line);
}

Result<ServerCertificate> Certificate(const ServeOptions& o) {
  if (o.cert_file.empty() != o.key_file.empty())
    return InvalidArgument(
        "--cert and --key go together: give both or neither");
  if (!o.cert_file.empty()) return LoadCertificate(o.key_file, o.cert_file);
  return LoadOrCreateCertificate(o.state_dir, LocalHostName());
}

// The configuration the command line gives (until the config file).
Result<ApplianceConfig> ConfigOf(const ServeOptions& o) {
  ApplianceConfig c;
  c.state_dir = o.state_dir;
  c.listen = o.listen;
  c.cert_file = o.cert_file;
  c.key_file = o.key_file;
  c.libvirt_uri = o.libvirt_uri;
  c.max_jobs = o.max_jobs;
  c.max_jobs_per_repository = o.max_jobs_per_repository;
  c.notify = o.notify;
  for (const RepositoryConfig& r : o.repositories) {
    if (r.name.empty() ||
        r.name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
                                 "qrstuvwxyz0123456789._-") !=
            std::string::npos)
      return InvalidArgument("a repository name is letters, digits, '.', '_' "
                             "and '-', not " + QuoteUntrusted(r.name));
    if (c.FindRepository(r.name))
      return InvalidArgument("repository " + r.name + " is given twice");
    if (r.path.empty())
      return InvalidArgument("repository " + r.name + " has no path");
    c.repositories.push_back(r);
  }
  if (c.max_jobs < 1 || c.max_jobs_per_repository < 1)
    return InvalidArgument(
        "--max-jobs and --max-jobs-per-repository must be at least 1");
  return c;
}

// --- copies --- Whether a large body for the copy routes may be read: only
// for a bearer token of role admin (the routes' own role), checked as the
// API checks it, before one byte of the body is read.
std::optional<std::pair<int, std::string>> AdmitCopyBody(
    const ApiOptions& api, std::string_view path,
    const std::string* authorization) {
  if (authorization == nullptr || !api.authenticate)
    return std::pair(401, std::string("a large body needs an admin's token"));
  Request probe;
  probe.method = "POST";
  probe.path = std::string(path);
  probe.headers.emplace_back("authorization", *authorization);
  auto who = api.authenticate(probe, true, nullptr);
  if (auto* refusal = std::get_if<Response>(&who))
    return std::pair(refusal->status,
                     std::string("a large body needs an admin's token"));
  if (!RoleAllows(std::get<Caller>(who), Role::kAdmin))
    return std::pair(403, std::string("the copy routes need the admin role"));
  return std::nullopt;
}

}  // namespace

Status Serve(const ServeOptions& options) {
  if (options.state_dir.empty())
    return InvalidArgument("--state-dir is required");
  HAVEN_ASSIGN_OR_RETURN(ListenAddress listen,
                         ParseListenAddress(options.listen));
  HAVEN_ASSIGN_OR_RETURN(ApplianceConfig config, ConfigOf(options));
  HAVEN_ASSIGN_OR_RETURN(ServerCertificate cert, Certificate(options));
  if (cert.created)
    Log("made a self-signed certificate for " + cert.subject + " in " +
        options.state_dir);
  Say("certificate SHA-256 fingerprint: " + cert.fingerprint);
  Say("certificate public key pin: " + cert.public_key_pin);
  Log("certificate " + cert.subject + ", valid until " + cert.not_after);

  // Signals are taken by sigwait below; the server's threads inherit the
  // blocked mask, so none of them is interrupted by one.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  HttpsServerOptions server_options;
  server_options.listen = listen;
  server_options.threads = options.threads;
  server_options.limits.max_body_bytes = options.max_body_bytes;
  server_options.log = Log;
  // Job history and the queue live in the state database.
  HAVEN_RETURN_IF_ERROR(MakeDirs(options.state_dir));
  HAVEN_ASSIGN_OR_RETURN(auto db,
                         StateDb::Open(options.state_dir + "/havend.db"));
  RepositoryCatalog catalog(config);
  // Repositories opened read-only for the API's reads, kept a short while.
  RepositoryCache open_repositories(catalog);
  // --- agents: uploads (chunks, points) and agents' own points ---
  // An agent writes into its enrollment's repository (agents table,
  // appliance/agents.h); none recorded: the default one.
  server_options.limits.large_bodies = {{"/api/v1/agent/chunks", 64 << 20},
                                        {"/api/v1/agent/points", 64 << 20},
                                        // --- copies --- chunks/put bodies
                                        // (64 MiB) and long id lists
                                        {"/api/v1/copy/", 64 << 20}};
  AgentStore::Options agent_store_options;
  agent_store_options.tool = "havend " + options.version;
  // Enrolled agents (appliance/agents.h): made before the store, which asks
  // it for each agent's repository. Listing them once makes a state
  // database that cannot hold their tables fail the start.
  AgentRegistry agents(*db);
  HAVEN_RETURN_IF_ERROR(agents.List().status());
  HAVEN_ASSIGN_OR_RETURN(
      auto agent_store,
      AgentStore::Create(
          *db, catalog,
          [&agents, &config](const std::string& agent_id) -> Result<std::string> {
            HAVEN_ASSIGN_OR_RETURN(auto agent, agents.Get(agent_id));
            if (!agent || agent->revoked)
              return PermissionDenied("no such agent");
            return AgentRepository(config, agent->repository);
          },
          agent_store_options));
  // --- end agents: uploads ---
  JobServiceOptions job_options;
  job_options.max_jobs = config.max_jobs;
  job_options.max_jobs_per_repository = config.max_jobs_per_repository;
  job_options.repository_exists = [&catalog](std::string_view name) {
    return catalog.Find(name) != nullptr;
  };
  job_options.log = Log;
  HAVEN_ASSIGN_OR_RETURN(auto jobs, SqlJobService::Create(*db, job_options));
  if (jobs->interrupted_at_start() > 0)
    Log("marked " + std::to_string(jobs->interrupted_at_start()) +
        " job(s) interrupted: they were running when havend stopped");
  // --- copies --- the copy routes' uploads write through these; remote
  // appliances and their tokens for sync jobs.
  WritableRepositories writable_repositories(catalog);
  HAVEN_ASSIGN_OR_RETURN(auto remotes,
                         RemoteStore::Open(*db, options.state_dir));
  RegisterRepositoryJobKinds(
      *jobs, catalog,
      [&open_repositories, &agent_store,
       &writable_repositories](const std::string& name) {
        open_repositories.Drop(name);
        agent_store->Release(name);  // --- agents: uploads ---
        writable_repositories.Release(name);  // --- copies ---
      });
  RegisterSyncJobKind(*jobs, catalog, *remotes);
  Services services;
  services.config = &config;
  services.db = db.get();
  services.repositories = &catalog;
  services.jobs = jobs.get();
  services.open_repositories = &open_repositories;
  services.version = options.version;
  services.agent_store = agent_store.get();  // --- agents: uploads ---
  services.writable_repositories = &writable_repositories;  // --- copies ---
  services.remotes = remotes.get();
  HAVEN_RETURN_IF_ERROR(RegisterRestoreKinds(services));

  // Who may do what (appliance/auth.h) and the audit log of what they did.
  HAVEN_ASSIGN_OR_RETURN(auto auth, AuthService::Open(*db));
  HAVEN_ASSIGN_OR_RETURN(auto audit, AuditLog::Open(*db));
  services.auth = auth.get();
  services.audit = audit.get();
  // --- agents: registry ---
  // Enrolled agents: their credentials authenticate through `auth`, and
  // enrollment commands pin this certificate. Listing them once makes a
  // state database that cannot hold their tables fail the start.
  auth->SetAgentRegistry(&agents);
  services.agents = &agents;
  services.fingerprint = cert.fingerprint;
  // --- agents: jobs ---
  // Tasks handed to agents' long polls (agent_jobs.h). Each waiting poll
  // holds a handler thread: at most a quarter of them wait at once.
  AgentDispatchOptions dispatch_options;
  dispatch_options.max_waiting_polls = std::max(1, options.threads / 4);
  dispatch_options.lookup = LookupIn(agents);
  AgentDispatch agent_dispatch(std::move(dispatch_options));
  services.agent_dispatch = &agent_dispatch;
  RegisterAgentJobKinds(*jobs, agent_dispatch);
  RegisterAgentRestoreKinds(services);
  HAVEN_ASSIGN_OR_RETURN(bool has_admin, auth->HasAccount(kAdminUser));
  if (!has_admin)
    Log("no admin account yet: `havend admin password --state-dir " +
        options.state_dir + "` makes it (API tokens: `havend token create`)");

  ApiOptions api;
  api.version = options.version;
  api.audit = audit->Sink([](const Status& s) { Log(s.message()); });
  api.authenticate = auth->MakeAuthenticator(
      [&audit](const Caller& caller, const Request& req, int status,
               const std::string& why) {
        Status s = audit->Record({0, 0, caller.name, req.peer, req.method,
                                  req.path, status, "refused: " + why});
        if (!s.ok()) Log("audit log: " + s.message());
      });
  // Notifications and figures (issue 16, points 7 and 8): job ends,
  // overdue VMs and the daily report; repository usage for /metrics.
  // The notifier comes from havend.conf's [Notify] until an admin saves
  // settings through the API (notify_settings.h); then from those, swapped
  // at each save.
  const NotifyConfig& nc = config.notify;
  HAVEN_ASSIGN_OR_RETURN(
      auto notify_settings,
      NotifySettings::Open(*db, nc, config.state_dir, LocalHostName(),
                           [](const std::string& line) { Log(line); }));
  services.notify_settings = notify_settings.get();
  NotifierHolder& notifiers = notify_settings->holder();
  // Repository usage: measured for /metrics and the daily report, and kept
  // over time (usage_history.h).
  HAVEN_ASSIGN_OR_RETURN(auto usage_history, UsageHistory::Open(*db));
  services.usage_history = usage_history.get();
  RepositoryUsageCache usage(catalog);
  usage.OnMeasured([&usage_history](const RepositoryMetric& m) {
    if (auto kept = usage_history->Record(m); !kept.ok())
      Log("repository " + m.name +
          ": usage sample not kept: " + kept.status().message());
  });
  MonitorOptions monitor_options;
  monitor_options.log = [](const std::string& line) { Log(line); };
  HAVEN_ASSIGN_OR_RETURN(auto monitor,
                         NotifyMonitor::Start(services, &notifiers, &usage,
                                              std::move(monitor_options)));
  // Jobs Create() marked interrupted ended before the monitor listened.
  if (auto notifier = notifiers.Get();
      notifier && jobs->interrupted_at_start() > 0) {
    JobFilter f;
    f.state = JobState::kInterrupted;
    f.limit = static_cast<size_t>(jobs->interrupted_at_start());
    if (auto ended = jobs->List(f); ended.ok())
      for (const JobRecord& job : ended.value()) notifier->NotifyJobEnd(job);
  }
  // The scheduler: made after the job service, started once the API
  // serves, stopped before the job service.
  SchedulerOptions so;
  so.repository_known = [&catalog](std::string_view name) {
    return catalog.Find(name) != nullptr;
  };
  so.validate_job = [&remotes](const JobSpec& spec) -> Status {
    if (spec.kind == "backup") return ValidateBackupParams(spec.params);
    if (spec.kind == "forget") return ValidateForgetParams(spec.params);
    if (spec.kind == "gc") return ValidateGcParams(spec.params);
    if (spec.kind == "check") return ValidateCheckParams(spec.params);
    if (spec.kind == "verify") return ValidateVerifyParams(spec.params);
    // --- agents: jobs ---
    if (spec.kind == "agent-backup")
      return ValidateAgentBackupParams(spec.params);
    // --- copies ---
    if (spec.kind == "sync") {
      HAVEN_RETURN_IF_ERROR(ValidateSyncParams(spec.params));
      return remotes->Get(spec.params["remote"].get<std::string>()).status();
    }
    return OkStatus();
  };
  so.log = Log;
  HAVEN_ASSIGN_OR_RETURN(auto scheduler,
                         Scheduler::Create(*db, *jobs, std::move(so)));
  services.scheduler = scheduler.get();
  // Event streams hold a handler thread each: at most half of them.
  std::vector<Route> routes =
      AllRoutes(services, api, options.threads / 2, &usage);
  HAVEN_ASSIGN_OR_RETURN(Handler api_handler, MakeApiHandler(routes, api));
  Handler handler = MakeConsoleHandler(
      options.console_dir.empty() ? kDefaultConsoleDir : options.console_dir,
      std::move(api_handler));
  // --- agents: uploads --- a body over the normal limit (chunks, a
  // point's commit) is read only for an agent's valid credential, checked
  // before its first byte.
  server_options.admit_large_body =
      [&agents, &api](std::string_view path, const std::string* authorization)
      -> std::optional<std::pair<int, std::string>> {
    constexpr std::string_view kBearer = "Bearer ";
    // --- copies --- a copy's upload needs an admin's token.
    if (path.starts_with("/api/v1/copy/"))
      return AdmitCopyBody(api, path, authorization);
    if (authorization == nullptr || !authorization->starts_with(kBearer))
      return std::pair(401, std::string("a large body needs an agent's "
                                        "credential"));
    auto caller =
        agents.Authenticate(std::string_view(*authorization).substr(7));
    if (!caller.ok())
      return std::pair(caller.status().code() == Code::kPermissionDenied
                           ? 401
                           : 503,
                       caller.status().message());
    if (!*caller)
      return std::pair(401, std::string("unknown agent credential"));
    return std::nullopt;
  };
  HAVEN_ASSIGN_OR_RETURN(auto server,
                         HttpsServer::Start(server_options, cert, handler));
  jobs->Start();
  std::string host = listen.host.find(':') == std::string::npos
                         ? listen.host
                         : "[" + listen.host + "]";
  std::string url =
      "https://" + host + ":" + std::to_string(server->port()) + "/";
  Say("listening on " + url);
  // Type=notify: systemd counts havend started once it listens.
  if (Status n = NotifySystemd("READY=1\nSTATUS=listening on " + url); !n.ok())
    Log("cannot tell systemd havend is ready: " + n.message());
  scheduler->Start();

  int sig = 0;
  while (sigwait(&stop_signals, &sig) != 0) {
  }
  Log(std::string("stopping on ") + (sig == SIGTERM  ? "SIGTERM"
                                     : sig == SIGINT ? "SIGINT"
                                                     : "SIGHUP"));
  (void)NotifySystemd("STOPPING=1");
  // Running jobs are cancelled and recorded interrupted; event streams
  // end; then the server lets the requests in flight finish.
  scheduler->Stop();
  jobs->Stop();
  // --- agents: jobs --- long polls return now, not after their wait
  agent_dispatch.Shutdown();
  server->Stop();
  // Tell of the jobs just interrupted, if the receivers answer soon.
  if (auto notifier = notifiers.Get(); notifier && !notifier->WaitIdle(5))
    Log("notifications still queued at stop are dropped");
  Log("stopped");
  return OkStatus();
}

}  // namespace haven::appliance
