#include "appliance/daemon.h"

#include <signal.h>

#include <cstdio>
#include <mutex>

#include "appliance/api.h"
#include "appliance/certificate.h"
#include "appliance/repository_cache.h"
#include "appliance/routes.h"
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

Result<ApplianceConfig> ConfigOf(const ServeOptions& o) {
  ApplianceConfig c;
  c.state_dir = o.state_dir;
  c.libvirt_uri = o.libvirt_uri;
  for (const RepositoryConfig& r : o.repositories) {
    if (r.name.empty() ||
        r.name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
                                 "qrstuvwxyz0123456789._-") != std::string::npos)
      return InvalidArgument(
          "a repository name is letters, digits, '.', '_' and '-', not " +
          QuoteUntrusted(r.name));
    if (c.FindRepository(r.name))
      return InvalidArgument("repository " + r.name + " is given twice");
    if (r.path.empty())
      return InvalidArgument("repository " + r.name + " has no path");
    c.repositories.push_back(r);
  }
  return c;
}

bool IsLoopback(const std::string& host) {
  return host == "::1" || host == "localhost" || host.rfind("127.", 0) == 0;
}

}  // namespace

Status Serve(const ServeOptions& options) {
  if (options.state_dir.empty())
    return InvalidArgument("--state-dir is required");
  HAVEN_ASSIGN_OR_RETURN(ListenAddress listen,
                         ParseListenAddress(options.listen));
  HAVEN_ASSIGN_OR_RETURN(ApplianceConfig config, ConfigOf(options));
  if (options.insecure_no_auth && !IsLoopback(listen.host))
    return InvalidArgument(
        "--insecure-no-auth serves every request as admin without "
        "credentials, so it needs a loopback --listen address (127.0.0.1 or "
        "::1), not " + listen.host);
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
  // The state database: the job history the VM listing reads (its tables
  // belong to the job service).
  HAVEN_ASSIGN_OR_RETURN(auto db,
                         StateDb::Open(options.state_dir + "/havend.db"));
  RepositoryCatalog catalog(config);
  RepositoryCache open_repositories(catalog);
  Services services;
  services.config = &config;
  services.db = db.get();
  services.repositories = &catalog;
  services.open_repositories = &open_repositories;
  services.version = options.version;
  ApiOptions api;
  api.version = options.version;
  if (options.insecure_no_auth) {
    Log("WARNING: --insecure-no-auth: every request is served as admin "
        "WITHOUT credentials; for tests on loopback only");
    api.authenticate = [](const Request&, bool) {
      return std::variant<Caller, Response>(
          Caller{"insecure-no-auth", Role::kAdmin, false});
    };
  }
  std::vector<Route> routes = CoreRoutes(api);
  for (auto area : {RepositoryRoutes, HostRoutes, PointRoutes, FileRoutes})
    for (Route& r : area(services)) routes.push_back(std::move(r));
  HAVEN_ASSIGN_OR_RETURN(Handler handler, MakeApiHandler(routes, api));
  HAVEN_ASSIGN_OR_RETURN(auto server,
                         HttpsServer::Start(server_options, cert, handler));
  std::string host = listen.host.find(':') == std::string::npos
                         ? listen.host
                         : "[" + listen.host + "]";
  Say("listening on https://" + host + ":" + std::to_string(server->port()) +
      "/");

  int sig = 0;
  while (sigwait(&stop_signals, &sig) != 0) {
  }
  Log(std::string("stopping on ") + (sig == SIGTERM  ? "SIGTERM"
                                     : sig == SIGINT ? "SIGINT"
                                                     : "SIGHUP"));
  server->Stop();
  Log("stopped");
  return OkStatus();
}

}  // namespace haven::appliance
