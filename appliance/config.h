// havend's configuration: what /etc/haven/havend.conf says (parsed in
// appliance/config.cc), with the defaults an appliance starts from.
#ifndef HAVEN_APPLIANCE_CONFIG_H_
#define HAVEN_APPLIANCE_CONFIG_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace haven::appliance {

inline constexpr char kDefaultConfigPath[] = "/etc/haven/havend.conf";
inline constexpr char kDefaultStateDir[] = "/var/lib/haven";

// A repository havend may use, by name. The passphrase is read from
// `password_file` (0600, never logged) each time the repository is opened.
struct RepositoryConfig {
  std::string name;  // [A-Za-z0-9._-]+, unique
  std::string path;  // local directory
  std::string password_file;
};

struct NotifyConfig {
  std::string webhook_url;          // POST JSON; empty: none
  std::string webhook_secret_file;  // HMAC-SHA256 key for X-Haven-Signature
  std::string smtp_url;             // "smtp://127.0.0.1:2525", "smtps://..."
  std::string smtp_from;
  std::vector<std::string> smtp_to;
  std::string smtp_user;
  std::string smtp_password_file;
  bool on_success = false;             // also notify jobs that succeeded
  std::string daily_report = "08:00";  // calendar event; "" : none
};

// A file the configuration names that holds a secret (a passphrase, a
// password, an HMAC key), with where it was named ("havend.conf:12") for
// errors.
struct SecretFileRef {
  std::string path;
  std::string where;  // "FILE:LINE [Section] Key="
};

struct ApplianceConfig {
  std::string state_dir = kDefaultStateDir;
  std::string listen;  // "" : 0.0.0.0:kDefaultPort
  std::string cert_file, key_file;
  int threads = 32;                   // request handlers at once, 1..256
  uint64_t max_body_bytes = 1 << 20;  // larger request bodies: 413
  std::vector<RepositoryConfig> repositories;
  std::string libvirt_uri = "qemu:///system";
  std::string console_dir;          // "" : kDefaultConsoleDir (console_files.h)
  int max_jobs = 2;                 // jobs running at once, in total
  int max_jobs_per_repository = 1;  // ... and into one repository
  NotifyConfig notify;
  // Every secret file named above, in file order (filled by ParseConfig).
  std::vector<SecretFileRef> secret_files;

  // The repository called `name`, or nullptr.
  const RepositoryConfig* FindRepository(std::string_view name) const;
};

// Parses the text of havend.conf: systemd-style sections and Key=Value lines
// (see docs/appliance.md, "Configuration"). `file_name` names the input in
// errors, which are InvalidArgument "FILE:LINE: what is wrong" — an unknown
// section or key, a key set twice, a value out of range, a relative path, a
// credential inside a URL. Fields the text does not set keep their defaults.
// Reads no file: secret files are only recorded (secret_files).
Result<ApplianceConfig> ParseConfig(std::string_view text,
                                    std::string_view file_name);

// Reads `path` (at most 1 MiB) and parses it, then checks every secret file
// it names with CheckSecretFile. NotFound when `path` does not exist.
Result<ApplianceConfig> LoadConfig(const std::string& path);

// A secret file must be a regular file (stat follows a symlink) that
// neither its group nor others may read or write (mode & 066 == 0, as 0600
// or 0400 are). NotFound / InvalidArgument / PermissionDenied naming `path`
// and `where` (the config line) otherwise; the content is never read here.
Status CheckSecretFile(const std::string& path, std::string_view where);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_CONFIG_H_
