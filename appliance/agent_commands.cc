#include "appliance/agent_commands.h"

#include <sys/stat.h>

#include "appliance/agents.h"
#include "appliance/certificate.h"
#include "appliance/https_server.h"
#include "base/file.h"
#include "base/json.h"
#include "base/time.h"

namespace haven::appliance {
namespace {

// The fingerprint agents must pin: of the certificate havend serves, the
// configured one or else the state directory's self-signed one.
Result<std::string> Fingerprint(const EnrollTokenOptions& o) {
  std::string cert = o.state_dir + "/" + kCertFileName;
  std::string key = o.state_dir + "/" + kKeyFileName;
  if (o.config && !o.config->cert_file.empty()) {
    cert = o.config->cert_file;
    key = o.config->key_file;
  }
  struct stat st;
  if (::stat(cert.c_str(), &st) != 0)
    return NotFound("havend has no certificate yet (" + cert +
                    "): start it once, or run `havend init`, so agents "
                    "have a fingerprint to pin");
  HAVEN_ASSIGN_OR_RETURN(ServerCertificate loaded, LoadCertificate(key, cert));
  return loaded.fingerprint;
}

std::string DefaultUrl(const EnrollTokenOptions& o) {
  uint16_t port = kDefaultPort;
  if (o.config && !o.config->listen.empty())
    if (auto l = ParseListenAddress(o.config->listen); l.ok()) port = l->port;
  return "https://" + LocalHostName() + ":" + std::to_string(port);
}

}  // namespace

Status EnrollTokenCommand(const EnrollTokenOptions& o, std::FILE* out) {
  if (o.state_dir.empty()) return InvalidArgument("--state-dir is required");
  std::string repository = o.repository;
  if (o.config) {
    HAVEN_ASSIGN_OR_RETURN(repository, AgentRepository(*o.config, repository));
  } else if (repository.empty()) {
    return InvalidArgument(
        "--repository is required when there is no configuration file "
        "(--config FILE, or " +
        std::string(kDefaultConfigPath) + ") to name the default one");
  }
  HAVEN_ASSIGN_OR_RETURN(std::string fingerprint, Fingerprint(o));
  HAVEN_RETURN_IF_ERROR(MakeDirs(o.state_dir));
  HAVEN_ASSIGN_OR_RETURN(auto db, StateDb::Open(o.state_dir + "/havend.db"));
  AgentRegistry agents(*db);
  EnrollmentRequest req;
  req.name = o.name;
  req.kind = o.kind;
  req.repository = repository;
  req.expires_minutes = o.expires_minutes;
  req.created_by = "cli";
  HAVEN_ASSIGN_OR_RETURN(NewEnrollment made, agents.CreateEnrollment(req));
  std::string url = o.url.empty() ? DefaultUrl(o) : o.url;
  std::string command = EnrollCommand(url, made, fingerprint);
  std::string expires =
      FormatTime(made.expires * 1000000000, TimeStyle::kRfc3339Utc);
  if (o.json) {
    nlohmann::json j = {{"token", made.token},
                        {"expires", expires},
                        {"fingerprint", fingerprint},
                        {"url", url},
                        {"name", made.name},
                        {"kind", made.kind},
                        {"repository", made.repository},
                        {"command", command}};
    std::fprintf(out, "%s\n", DumpJson(j, 2).c_str());
  } else {
    std::fprintf(out, "%s\n%s\n", made.token.c_str(), command.c_str());
  }
  std::fflush(out);
  std::fprintf(stderr,
               "havend: enrollment token for a %s agent%s%s into repository "
               "%s; it works once, until %s, and is shown only now\n",
               made.kind.c_str(), made.name.empty() ? "" : " named ",
               made.name.c_str(), made.repository.c_str(), expires.c_str());
  return OkStatus();
}

}  // namespace haven::appliance
