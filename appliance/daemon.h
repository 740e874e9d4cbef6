// `havend serve`: the daemon's life from start to SIGTERM, apart from the
// command line that fills ServeOptions.
#ifndef HAVEN_APPLIANCE_DAEMON_H_
#define HAVEN_APPLIANCE_DAEMON_H_

#include <string>
#include <vector>

#include "appliance/config.h"
#include "appliance/https_server.h"
#include "base/status.h"

namespace haven::appliance {

struct ServeOptions {
  // havend.conf as read (defaults when there is none), with the fields
  // below taken from it and then from the command line over it.
  ApplianceConfig config;
  std::string state_dir;  // key.pem, cert.pem (and later all state)
  std::string listen = "0.0.0.0:" + std::to_string(kDefaultPort);
  std::string cert_file;  // configured certificate; both or neither
  std::string key_file;
  uint64_t max_body_bytes = 1 << 20;
  int threads = 32;
  std::string version;  // reported by /api/v1/health
  // Until the configuration file is read (appliance/config.cc): what
  // `havend serve --repository NAME=PATH --password-file FILE` gives.
  std::vector<RepositoryConfig> repositories;
  std::string libvirt_uri = "qemu:///system";
  std::string console_dir;  // the web console's files; "" : the default
  int max_jobs = 2;
  int max_jobs_per_repository = 1;
  NotifyConfig notify;  // --notify-*
};

// Loads or makes the certificate, prints its fingerprint and the URL on
// stdout (and logs them on stderr), tells systemd it is ready when started
// as a Type=notify service ($NOTIFY_SOCKET), serves until SIGTERM, SIGINT or
// SIGHUP, then stops gracefully. Returns OK after a signal-driven stop; an
// error when it could not start (bad options, certificate, address in use).
Status Serve(const ServeOptions& options);

// "2026-12-07T02:40:00Z havend: LINE" on stderr.
void Log(std::string_view line);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_DAEMON_H_
