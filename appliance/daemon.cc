#include "appliance/daemon.h"

#include <signal.h>

#include <cstdio>
#include <mutex>

#include "appliance/api.h"
#include "appliance/certificate.h"
#include "appliance/systemd_notify.h"
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
  HAVEN_ASSIGN_OR_RETURN(Handler handler, MakeApiHandler(CoreRoutes(api), api));
  HAVEN_ASSIGN_OR_RETURN(auto server,
                         HttpsServer::Start(server_options, cert, handler));
  std::string host = listen.host.find(':') == std::string::npos
                         ? listen.host
                         : "[" + listen.host + "]";
  std::string url =
      "https://" + host + ":" + std::to_string(server->port()) + "/";
  Say("listening on " + url);
  // Type=notify: systemd counts havend started once it listens.
  if (Status n = NotifySystemd("READY=1\nSTATUS=listening on " + url); !n.ok())
    Log("cannot tell systemd havend is ready: " + n.message());

  int sig = 0;
  while (sigwait(&stop_signals, &sig) != 0) {
  }
  Log(std::string("stopping on ") + (sig == SIGTERM  ? "SIGTERM"
                                     : sig == SIGINT ? "SIGINT"
                                                     : "SIGHUP"));
  (void)NotifySystemd("STOPPING=1");
  server->Stop();
  Log("stopped");
  return OkStatus();
}

}  // namespace haven::appliance
