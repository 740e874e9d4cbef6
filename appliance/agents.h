// Enrolled agents (docs/agents.md): one-time enrollment tokens, the agents'
// credentials, last contact and revocation. State database tables:
//
//   agent_enrollments  sha256 of the token, name, kind, repository,
//                      created, expires, created_by, used (time), agent_id
//   agents             id, name, kind, hostname, version, repository,
//                      sha256 of the credential, enrolled, last_contact,
//                      address, revoked (time or NULL)
//
// Secrets (enrollment tokens "havenenroll_...", credentials
// "havenagent_...") are shown once and stored only as SHA-256.
#ifndef HAVEN_APPLIANCE_AGENTS_H_
#define HAVEN_APPLIANCE_AGENTS_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "appliance/api.h"
#include "appliance/config.h"
#include "appliance/state_db.h"
#include "base/status.h"

namespace haven::appliance {

inline constexpr std::string_view kEnrollmentPrefix = "havenenroll_";
inline constexpr std::string_view kAgentCredentialPrefix = "havenagent_";

struct AgentInfo {
  std::string id;    // 16 hex digits, never reused
  std::string name;  // unique among agents not revoked
  std::string kind;  // "guest" (file backups) or "host" (VM backups)
  std::string hostname, version, repository, address;
  int64_t enrolled = 0, last_contact = 0;  // seconds since the epoch
  std::optional<int64_t> revoked;
};

struct EnrollmentRequest {
  std::string name;        // may be empty: the agent's hostname is used
  std::string kind = "guest";
  std::string repository;  // empty: the appliance's default repository
  int expires_minutes = 60;
  std::string created_by;  // the caller's name
};

struct NewEnrollment {
  std::string token;  // shown once
  int64_t expires = 0;
  std::string name, kind, repository;
};

struct EnrollAnswer {
  AgentInfo agent;
  std::string credential;  // shown once
};

class AgentRegistry {
 public:
  // Creates the tables when missing. `now` may be replaced by tests.
  explicit AgentRegistry(StateDb& db,
                         std::function<int64_t()> now = nullptr);

  Result<NewEnrollment> CreateEnrollment(const EnrollmentRequest& request);
  // Trades a token for a credential. PermissionDenied with a sentence for
  // an unknown, expired or used token; AlreadyExists for a name taken by
  // an agent not revoked; InvalidArgument for a bad name or kind.
  Result<EnrollAnswer> Enroll(std::string_view token, std::string name,
                              std::string kind, std::string hostname,
                              std::string version, std::string address);
  // The caller a credential stands for (Role::kAgent), nullopt when it is
  // unknown. A revoked agent's credential: PermissionDenied saying so.
  Result<std::optional<Caller>> Authenticate(std::string_view credential);
  Result<std::vector<AgentInfo>> List();
  Result<std::optional<AgentInfo>> Get(const std::string& id);
  Result<std::optional<AgentInfo>> FindByName(const std::string& name);
  Status Revoke(const std::string& id);
  // Records a contact (at most one write a minute per agent unless the
  // version, hostname or address changed). An empty hostname, version or
  // address leaves the recorded one as it is (the authenticator knows only
  // the address). NotFound for an unknown id.
  Status Touch(const std::string& id, const std::string& hostname,
               const std::string& version, const std::string& address);

 private:
  StateDb& db_;
  std::function<int64_t()> now_;
  Status schema_;  // making the tables; every call returns it when not OK
};

// --- agents: registry ---
// The repository an enrollment names: `requested` when configured
// (InvalidArgument naming it and the configured ones otherwise); when
// empty the appliance's default one: "default" (havend init's) when
// configured, else the first configured; FailedPrecondition when none is.
Result<std::string> AgentRepository(const ApplianceConfig& config,
                                    std::string_view requested);
// What to run on the agent: "haven agent enroll URL --token TOKEN
// --fingerprint FP" and " --name NAME" when the enrollment fixed a name.
// The parts must be shell-safe (the token and a valid name are).
std::string EnrollCommand(const std::string& url, const NewEnrollment& e,
                          const std::string& fingerprint);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_AGENTS_H_
