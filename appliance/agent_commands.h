// `havend agent enroll-token`: makes a one-time enrollment token on the
// state directory (while havend serves or not; SQLite in WAL mode takes
// both), as the console's Agents -> Add agent does, so a script can enroll
// an agent without the console:
//
//   havend agent enroll-token [--name N] [--kind guest|host]
//       [--repository R] [--expires-minutes M] [--url URL] [--json]
//       [--state-dir DIR] [--config FILE]
//
// Prints the token on the first line of stdout and the command to run on
// the agent on the second (or, with --json, the object POST
// /api/v1/agents/enrollments answers); what it is on stderr.
#ifndef HAVEN_APPLIANCE_AGENT_COMMANDS_H_
#define HAVEN_APPLIANCE_AGENT_COMMANDS_H_

#include <cstdio>
#include <optional>
#include <string>

#include "appliance/config.h"
#include "base/status.h"

namespace haven::appliance {

struct EnrollTokenOptions {
  std::string state_dir;  // required
  // havend.conf when there is one: its repositories (the default one and
  // the check that --repository exists), its certificate and listen
  // address. Without it --repository is required and the certificate is
  // the state directory's.
  std::optional<ApplianceConfig> config;
  std::string name, kind = "guest", repository;
  int expires_minutes = 60;
  std::string url;  // "": https://THIS-HOST:PORT (the configured port)
  bool json = false;
};

Status EnrollTokenCommand(const EnrollTokenOptions& options, std::FILE* out);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_AGENT_COMMANDS_H_
