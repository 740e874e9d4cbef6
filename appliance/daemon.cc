#include "appliance/daemon.h"

#include <signal.h>

#include <cstdio>
#include <mutex>

#include "appliance/api.h"
#include "appliance/certificate.h"
#include "appliance/routes.h"
#include "appliance/scheduler.h"
#include "appliance/services.h"
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

}  // namespace

Status Serve(const ServeOptions& options) {
  if (options.state_dir.empty())
    return InvalidArgument("--state-dir is required");
  HAVEN_ASSIGN_OR_RETURN(ListenAddress listen,
                         ParseListenAddress(options.listen));
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
  ApiOptions api;
  api.version = options.version;
  std::vector<Route> routes = CoreRoutes(api);
  // The state database, repositories and job service are the jobs wiring's
  // (issue 16, point 5); until it fills them, there is nothing to schedule.
  Services services;
  services.version = options.version;

  // ---- scheduler (issue 16, point 4): made after the job service, started
  // once the API serves, stopped before the job service goes.
  std::unique_ptr<Scheduler> scheduler;
  if (services.db != nullptr && services.jobs != nullptr &&
      services.repositories != nullptr) {
    SchedulerOptions so;
    const RepositoryCatalog* repositories = services.repositories;
    so.repository_known = [repositories](std::string_view name) {
      return repositories->Find(name) != nullptr;
    };
    so.log = Log;
    HAVEN_ASSIGN_OR_RETURN(
        scheduler, Scheduler::Create(*services.db, *services.jobs, so));
    services.scheduler = scheduler.get();
    for (Route& r : ScheduleRoutes(services)) routes.push_back(std::move(r));
  }
  // ---- end scheduler

  HAVEN_ASSIGN_OR_RETURN(Handler handler, MakeApiHandler(routes, api));
  HAVEN_ASSIGN_OR_RETURN(auto server,
                         HttpsServer::Start(server_options, cert, handler));
  std::string host = listen.host.find(':') == std::string::npos
                         ? listen.host
                         : "[" + listen.host + "]";
  Say("listening on https://" + host + ":" + std::to_string(server->port()) +
      "/");
  if (scheduler) scheduler->Start();  // scheduler (point 4)

  int sig = 0;
  while (sigwait(&stop_signals, &sig) != 0) {
  }
  Log(std::string("stopping on ") + (sig == SIGTERM  ? "SIGTERM"
                                     : sig == SIGINT ? "SIGINT"
                                                     : "SIGHUP"));
  // The scheduler first, so nothing is submitted to a stopping job service.
  if (scheduler) scheduler->Stop();  // scheduler (point 4)
  server->Stop();
  Log("stopped");
  return OkStatus();
}

}  // namespace haven::appliance
