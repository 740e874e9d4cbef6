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
  std::string state_dir;  // key.pem, cert.pem (and later all state)
  std::string listen = "0.0.0.0:" + std::to_string(kDefaultPort);
  std::string cert_file;  // configured certificate; both or neither
  std::string key_file;
  uint64_t max_body_bytes = 1 << 20;
  int threads = 8;
  std::string version;  // reported by /api/v1/health
  // `--repository NAME=PATH --password-file FILE`, in pairs.
  std::vector<RepositoryConfig> repositories;
  std::string libvirt_uri = "qemu:///system";
  // Tests only: every request is served as admin without credentials;
  // refused unless `listen` is a loopback address.
  bool insecure_no_auth = false;
};

// Loads or makes the certificate, prints its fingerprint and the URL on
// stdout (and logs them on stderr), serves until SIGTERM, SIGINT or SIGHUP,
// then stops gracefully. Returns OK after a signal-driven stop; an error
// when it could not start (bad options, certificate, address in use).
Status Serve(const ServeOptions& options);

// "2026-12-07T02:40:00Z havend: LINE" on stderr.
void Log(std::string_view line);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_DAEMON_H_
