// `havend init`: sets an appliance up on this machine, or finds it set up.
//
//   STATE/            the state directory (0700)
//   STATE/key.pem     the TLS key and self-signed certificate (certificate.h)
//   STATE/cert.pem
//   STATE/havend.db   the state database (state_db.h)
//   STATE/repository  the default local repository ("default"), unless the
//                     configuration or --repository names another path
//   STATE/repository.pass   its passphrase, random, 0600
//   STATE/admin.password    the admin account's password, random, 0600
//   CONFIG            havend.conf naming all of the above (written only when
//                     missing; an existing one is read, never changed)
//   the nightly 02:00 schedule of a host backup of every VM into "default"
//
// Each step first looks whether its result is there; what exists is kept
// as it is, so running init again changes nothing and says so. A step that
// creates writes its secret file before the thing the secret unlocks, so an
// interrupted init finishes on the next run instead of locking itself out.
#ifndef HAVEN_APPLIANCE_SETUP_H_
#define HAVEN_APPLIANCE_SETUP_H_

#include <functional>
#include <optional>
#include <string>

#include "appliance/auth.h"
#include "appliance/config.h"
#include "base/status.h"

namespace haven::appliance {

inline constexpr char kStateDbFileName[] = "havend.db";
inline constexpr char kDefaultRepositoryName[] = "default";
inline constexpr char kRepositoryDirName[] = "repository";
inline constexpr char kRepositoryPassFileName[] = "repository.pass";
inline constexpr char kAdminPasswordFileName[] = "admin.password";
inline constexpr char kNightlySchedule[] = "*-*-* 02:00:00";

struct SetupOptions {
  std::string config_path = kDefaultConfigPath;
  // Given on the command line: override the configuration file, which
  // overrides the defaults.
  std::optional<std::string> state_dir;
  std::optional<std::string> repository_path;
  std::optional<std::string> listen;
  std::string host_name;  // for the certificate and the URL; "" : this host's
};

struct SetupResult {
  bool changed = false;  // false: everything was there already
  std::string url;       // https://HOST:PORT/
  std::string fingerprint;
  std::string public_key_pin;
  std::string config_path;
  std::string state_dir;
  std::string repository_path;
  std::string passphrase_file;        // "" when the repository is not ours
  std::string admin_password_file;    // "" when no account could be made
  std::vector<std::string> warnings;  // steps left undone, and why
};

// Runs every step, reporting each one ("made ...", "kept ...") through
// `say`. Fails on the first step that cannot be done (a path it cannot
// write, a repository the passphrase file does not open, a configuration
// that does not parse), naming it; steps before it stay done. A step whose
// part of havend is not built yet is a warning, not a failure.
Result<SetupResult> SetUpAppliance(
    const SetupOptions& options,
    const std::function<void(const std::string&)>& say);

// The configuration `havend init` writes: the given values with comments,
// and every other key commented out at its default.
std::string InitialConfigText(const ApplianceConfig& config);

// A random secret of `length` characters from letters and digits (no
// look-alikes: 0/O, 1/l/I), from the OpenSSL random generator.
std::string RandomSecret(size_t length);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_SETUP_H_
