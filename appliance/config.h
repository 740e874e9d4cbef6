// havend's configuration: what /etc/haven/havend.conf says (parsed in
// appliance/config.cc), with the defaults an appliance starts from.
#ifndef HAVEN_APPLIANCE_CONFIG_H_
#define HAVEN_APPLIANCE_CONFIG_H_

#include <string>
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

struct ApplianceConfig {
  std::string state_dir = kDefaultStateDir;
  std::string listen;  // "" : 0.0.0.0:kDefaultPort
  std::string cert_file, key_file;
  std::vector<RepositoryConfig> repositories;
  std::string libvirt_uri = "qemu:///system";
  int max_jobs = 2;                 // jobs running at once, in total
  int max_jobs_per_repository = 1;  // ... and into one repository
  NotifyConfig notify;

  // The repository called `name`, or nullptr.
  const RepositoryConfig* FindRepository(std::string_view name) const;
};

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_CONFIG_H_
