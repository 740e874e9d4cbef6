// An agent's side of the appliance (docs/agents.md): its identity on disk,
// and HTTPS requests to havend with the certificate pinned.
//
// Pinning: the peer's leaf certificate must have exactly the SHA-256
// fingerprint recorded at enrollment ("SHA256:AB:CD:..."); no CA and no
// host name is consulted. A mismatch is refused before any request byte is
// sent, with both fingerprints in the message.
#ifndef HAVEN_AGENT_APPLIANCE_CLIENT_H_
#define HAVEN_AGENT_APPLIANCE_CLIENT_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/progress.h"
#include "base/status.h"

namespace haven::agent {

// What enrollment leaves in the agent's state directory (agent.json,
// mode 0600).
struct AgentIdentity {
  std::string url;          // "https://10.0.0.1:8421"
  std::string fingerprint;  // "SHA256:AB:..."
  std::string agent_id, name, kind, repository;
  std::string credential;  // "havenagent_...": never logged
};

// $HAVEN_AGENT_DIR, else /var/lib/haven-agent.
std::string DefaultAgentStateDir();
// NotFound ("this machine is not enrolled: run haven agent enroll ...")
// when there is no agent.json; refuses a file others may read.
Result<AgentIdentity> LoadIdentity(const std::string& state_dir);
// Writes agent.json atomically with mode 0600 (the directory 0700).
Status SaveIdentity(const std::string& state_dir, const AgentIdentity& id);

// "SHA256:AB:CD:..." from that form, lower case, or 64 hex digits without
// colons; InvalidArgument for anything else.
Result<std::string> NormalizeFingerprint(std::string_view text);

struct HttpReply {
  long status = 0;
  std::string body;
  std::string content_type;
  // The {"error": ...} of a JSON error body, else the status line.
  std::string ErrorText() const;
};

struct RetryPolicy {
  int attempts = 1;          // 1: no retry
  double first_delay = 1;    // seconds; doubles, with jitter, up to max
  double max_delay = 30;
  CancelToken cancel;
};

// A reply that is not 2xx as a Status: "WHAT: the appliance answered:
// its error text". 401/403: PermissionDenied (a revoked agent's sentence
// comes from the appliance); 404: NotFound; 5xx: Unavailable; other 4xx:
// FailedPrecondition.
Status ReplyStatus(const HttpReply& reply, std::string_view what);

// Waits before retry number `attempt` + 1 (0-based): first_delay * 2^attempt,
// at most max_delay, times a random factor in [0.5, 1). Cancelled when
// `retry.cancel` fires meanwhile.
Status BackoffSleep(const RetryPolicy& retry, int attempt);

class ApplianceClient {
 public:
  // `credential` may be empty (enrollment). InvalidArgument for a URL that
  // is not https://HOST[:PORT] or a malformed fingerprint.
  static Result<std::unique_ptr<ApplianceClient>> Create(
      const std::string& url, const std::string& fingerprint,
      const std::string& credential);
  static Result<std::unique_ptr<ApplianceClient>> Create(
      const AgentIdentity& id) {
    return Create(id.url, id.fingerprint, id.credential);
  }
  ~ApplianceClient();

  // `path` is below the URL ("/api/v1/agent/hello"). A transport failure
  // (refused, reset, timeout, TLS) is Unavailable; a pinning mismatch is
  // PermissionDenied. HTTP error statuses are replies, not errors. With
  // retry.attempts > 1, transport failures and 502/503/504 are retried
  // with backoff.
  Result<HttpReply> Get(std::string_view path, double timeout_seconds = 60,
                        const RetryPolicy& retry = {});
  Result<HttpReply> Post(std::string_view path, std::string_view content_type,
                         std::string_view body, double timeout_seconds = 300,
                         const RetryPolicy& retry = {});
  // A GET whose body goes to `sink` as it arrives (archives) when the
  // status is 2xx; any other status's body is kept in the reply instead
  // (for ErrorText). A sink error ends the transfer and is returned.
  Result<HttpReply> Download(
      std::string_view path,
      const std::function<Status(std::string_view)>& sink,
      double timeout_seconds = 3600, const CancelToken& cancel = {});

  // "https://host:port", as requests go to it.
  const std::string& url() const;

 private:
  ApplianceClient() = default;
  Result<HttpReply> Post(std::string_view path, std::string_view content_type,
                         std::string_view body, double timeout_seconds,
                         const RetryPolicy& retry, const char* method);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// `text` percent-encoded for a path segment or a query value (all but
// A-Z a-z 0-9 - . _ ~ and, when `keep_slash`, '/').
std::string UrlEncode(std::string_view text, bool keep_slash = false);

// POST /api/v1/agent/hello: who the appliance says this agent is. Records
// the agent's last contact there.
struct HelloReply {
  std::string agent_id, name, repository, server_version;
};
Result<HelloReply> SayHello(ApplianceClient& client,
                            const CancelToken& cancel = {});

}  // namespace haven::agent

#endif  // HAVEN_AGENT_APPLIANCE_CLIENT_H_
