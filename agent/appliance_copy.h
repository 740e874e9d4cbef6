// A remote appliance (havend over HTTPS, certificate pinned) as either side
// of a copy (repository/copy.h): ApplianceCopySource reads its points and
// chunks, ApplianceCopyTarget stores chunks and commits points there, both
// through the routes under /api/v1/copy (appliance/routes_copy.cc, admin
// token; wire formats in agent/copy_wire.h).
//
// The remote is untrusted: every reply is checked (JSON types, counts equal
// to the ids asked, lengths within the limits, a manifest validated by
// Manifest::FromJson and carrying the id asked for) before it is used, and
// what it says goes into messages only quoted and cut short. Chunk bytes
// are not checked here (this client holds no key): the target checks every
// chunk against its keyed id before storing it.
//
// Requests are retried with backoff (about a minute in all) on transport
// errors and 502/503/504; a cancel token ends the wait. The token never
// appears in a URL, a message or a log line; Describe() is
// "appliance https://HOST:PORT".
#ifndef HAVEN_AGENT_APPLIANCE_COPY_H_
#define HAVEN_AGENT_APPLIANCE_COPY_H_

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "agent/appliance_client.h"
#include "base/progress.h"
#include "base/status.h"
#include "repository/copy.h"

namespace haven::agent {

// Where a remote appliance is and how to reach it: its URL
// (https://HOST[:PORT]), its certificate's SHA-256 fingerprint
// ("SHA256:AB:..."), and an API token of role admin ("haven_...").
struct RemoteAppliance {
  std::string url, fingerprint, token;
};

// The remote side `which` ("FROM" or "TO") of `haven copy`: the fingerprint
// from $HAVEN_<WHICH>_FINGERPRINT and the token from $HAVEN_<WHICH>_TOKEN or
// the first line of the file $HAVEN_<WHICH>_TOKEN_FILE (one of the two).
// InvalidArgument naming the variable that is missing or malformed (never
// its value).
Result<RemoteAppliance> RemoteFromEnvironment(std::string url,
                                              std::string_view which);

// How many attempts each request gets (transport errors, 502-504).
inline constexpr int kCopyAttempts = 6;

// InvalidArgument for a bad URL, fingerprint or token (the token is not
// quoted). Nothing is sent until the first call. `cancel` ends a wait
// between attempts; `attempts` (at least 1) per request: a caller that
// answers a person (a listing) tries fewer times than a copy.
Result<std::unique_ptr<repository::CopySource>> OpenApplianceSource(
    const RemoteAppliance& remote, const CancelToken& cancel = {},
    int attempts = kCopyAttempts);
Result<std::unique_ptr<repository::CopyTarget>> OpenApplianceTarget(
    const RemoteAppliance& remote, const CancelToken& cancel = {},
    int attempts = kCopyAttempts);

// The calls both sides make: /copy/info and /copy/points.
class ApplianceCopyRemote {
 public:
  ApplianceCopyRemote(std::unique_ptr<ApplianceClient> client,
                      CancelToken cancel, int attempts = kCopyAttempts);
  std::string Describe() const;
  Result<repository::CopyParams> Params();
  Result<std::vector<repository::PointSummary>> Points(
      std::vector<std::string>* errors);
  Result<HttpReply> Get(std::string_view path, double timeout = 120);
  Result<HttpReply> Post(std::string_view path, std::string_view type,
                         std::string_view body, double timeout = 600);
  // POSTs {"type", "ids"} to `path` in requests of at most kMaxCopyHasIds
  // ids; each answer's list `key` must have one entry per id, and `take`
  // accepts each in order (false: not `entry`, DataLoss).
  Status PostIds(const char* path, const char* key, const char* entry,
                 repository::ChunkType type,
                 const std::vector<repository::ChunkId>& ids,
                 const std::function<bool(const nlohmann::json&)>& take);

 private:
  std::unique_ptr<ApplianceClient> client_;
  RetryPolicy retry_;
};

class ApplianceCopySource : public repository::CopySource {
 public:
  explicit ApplianceCopySource(std::unique_ptr<ApplianceCopyRemote> remote)
      : remote_(std::move(remote)) {}
  std::string Describe() const override { return remote_->Describe(); }
  Result<repository::CopyParams> Params() override { return remote_->Params(); }
  Result<std::vector<repository::PointSummary>> Points(
      std::vector<std::string>* errors) override {
    return remote_->Points(errors);
  }
  Result<repository::Manifest> LoadPoint(const std::string& id) override;
  // Asks for at most kMaxCopyReadIds ids (each once) per request, and again
  // for those a shortened answer left out.
  Status ReadChunks(repository::ChunkType type,
                    const std::vector<repository::ChunkId>& ids,
                    std::vector<repository::CopyChunk>& out) override;
  // From the remote's index (POST /api/v1/copy/chunks/sizes): a dry run
  // reads no chunk.
  Status ChunkSizes(repository::ChunkType type,
                    const std::vector<repository::ChunkId>& ids,
                    std::vector<int64_t>& sizes) override;

 private:
  std::unique_ptr<ApplianceCopyRemote> remote_;
};

class ApplianceCopyTarget : public repository::CopyTarget {
 public:
  explicit ApplianceCopyTarget(std::unique_ptr<ApplianceCopyRemote> remote)
      : remote_(std::move(remote)) {}
  std::string Describe() const override { return remote_->Describe(); }
  Result<repository::CopyParams> Params() override { return remote_->Params(); }
  Result<std::vector<std::string>> PointIds() override;
  Result<std::vector<bool>> HasChunks(
      repository::ChunkType type,
      const std::vector<repository::ChunkId>& ids) override;
  // Sends bodies of at most kCopyBatchBytes each (one chunk, at most 8 MiB,
  // always fits).
  Status PutChunks(repository::ChunkType type,
                   const std::vector<repository::CopyChunk>& chunks) override;
  Status CommitPoint(const repository::Manifest& m) override;

 private:
  std::unique_ptr<ApplianceCopyRemote> remote_;
};

}  // namespace haven::agent

#endif  // HAVEN_AGENT_APPLIANCE_COPY_H_
