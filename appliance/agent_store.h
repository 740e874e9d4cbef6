// The appliance's side of agents' uploads (docs/agents.md, "Protocol"):
// which chunks an agent must send, storing the chunks it sends, and
// committing its points.
//
// An agent names a chunk by the SHA-256 of its plain bytes (the *upload
// id*); the repository names it by a keyed id only the appliance can
// compute (repository-format.md). Every uploaded chunk is decoded and
// hashed before anything is stored, so an agent can only ever store bytes
// under the id they hash to. What an agent uploaded is recorded per agent
// in the state database:
//
//   agent_chunks   (agent_id, upload_id BLOB 32) -> chunk_id BLOB 32,
//                  raw_size, kind (0 data, 1 tree node), and for a tree
//                  node the shape of its subtree (tree_height, tree_min,
//                  tree_max: level-0 entries it covers): the chunks this
//                  agent proved it has
//   agent_commits  (agent_id, upload_id 32 hex of a commit) -> repository,
//                  point id, name, time: a retried commit answers with the
//                  point the first one made
//
// Only the caller's own rows are ever consulted, so what an agent learns
// does not depend on what other agents store: a chunk another agent
// uploaded is "missing" for this one until it sends the bytes itself (they
// are then deduplicated, and the answer's figures are the same as if they
// had been stored now).
//
// Repositories are opened for writing (a shared repository lock, as a
// backup holds it) on the first request that needs one, kept while
// requests come, and closed after `max_idle` without one, so that gc,
// which needs the lock alone, can run between uploads. A chunk a sweep
// removed in such a gap is no longer in the index: the missing query and
// the commit then ask for it again (409), never name it in a point.
//
// Thread-safe: each request writes through a ChunkWriter of its own
// (repository.h: several writers per process).
#ifndef HAVEN_APPLIANCE_AGENT_STORE_H_
#define HAVEN_APPLIANCE_AGENT_STORE_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <variant>
#include <vector>

#include "appliance/repositories.h"
#include "appliance/state_db.h"
#include "base/status.h"
#include "repository/repository.h"

namespace haven::appliance {

// Wire limits (docs/agents.md).
inline constexpr size_t kMaxMissingQuery = 32768;         // ids per query
inline constexpr uint32_t kMaxChunkRawBytes = 16u << 20;  // one chunk
// The decoded bytes of one upload, summed: bounds the work a small body of
// well-compressed frames can ask for.
inline constexpr uint64_t kMaxBatchRawBytes = 256ull << 20;
inline constexpr size_t kMaxMissingListed = 100;  // ids named in a 409
// Distinct ids one /agent/chunks request may name: its frames and the
// children of its tree nodes (an agent's 8 MiB batch of full nodes names
// about 2^18).
inline constexpr size_t kMaxIdsPerUpload = 1u << 19;

// A refusal the protocol answers with its own status and body:
// 422 {"error"} for a chunk whose bytes do not hash to its id, 409
// {"error", "missing": [hex...]} for a commit naming chunks the appliance
// does not hold for this agent.
struct AgentRefusal {
  int status = 0;
  std::string error;
  std::vector<std::string> missing;  // upload ids (hex), at most 100
};

struct ChunksReceived {
  uint64_t received = 0;  // frames in the batch
  // Of them, chunks this agent had not uploaded before (or whose chunk gc
  // has removed since), and their stored size in the repository.
  uint64_t new_chunks = 0;
  uint64_t new_stored_bytes = 0;
};

struct AgentCommit {
  std::string id, name, time;
  bool created = false;  // false: a retry answered with the earlier point
};

template <typename T>
using AgentAnswer = std::variant<T, AgentRefusal>;

class AgentStore {
 public:
  // The repository an agent writes into (its enrollment's), by agent id.
  using RepositoryOf =
      std::function<Result<std::string>(const std::string& agent_id)>;
  struct Options {
    std::chrono::seconds max_idle{60};
    // How long a request waits for the repository lock (gc's sweep holds
    // it alone) or the index: then 503.
    double lock_wait_seconds = 10;
    std::string tool = "havend";  // a committed manifest's "tool"
  };

  // Creates the tables when missing; starts the thread that closes idle
  // repositories.
  static Result<std::unique_ptr<AgentStore>> Create(
      StateDb& db, const RepositoryCatalog& catalog, RepositoryOf repository_of,
      Options options);
  ~AgentStore();
  AgentStore(const AgentStore&) = delete;
  AgentStore& operator=(const AgentStore&) = delete;

  // The repository `agent_id` writes into.
  Result<std::string> RepositoryFor(const std::string& agent_id) const {
    return repository_of_(agent_id);
  }

  // POST /agent/chunks/missing: `body` is N upload ids (32 bytes each,
  // 1 <= N <= kMaxMissingQuery, else InvalidArgument); N bytes, 0 where the
  // agent uploaded that chunk and the repository still holds it, else 1.
  Result<std::string> Missing(const std::string& agent_id,
                              std::string_view body);

  // POST /agent/chunks: frames upload_id[32] raw_len:u32 codec:u8
  // data_len:u32 data (codec 0 plain, 1 zstd; | 0x10 for a tree node). A
  // tree node's plain bytes are 1..1024 upload ids (zero: a hole) of
  // chunks this agent holds or earlier frames of the body, all data or all
  // tree nodes of one height, all but the last a full subtree (as
  // TreeWriter makes them; gc and readers rely on it); it is stored with
  // each id replaced by its keyed id. A
  // malformed body is InvalidArgument; a frame whose bytes do not hash to
  // its id refuses the whole batch (422), a node naming a chunk not held
  // refuses it with 409 and "missing"; either stores nothing. Returns after
  // the chunks are durable (packs synced, index committed) and recorded for
  // the agent.
  Result<AgentAnswer<ChunksReceived>> StoreChunks(const std::string& agent_id,
                                                  std::string_view body);

  // POST /agent/points: json_len:u32 json catalog_ids[32*c]
  // content_ids[32*n]. Builds the two chunk lists and commits a point of
  // kind "files" with the agent's id; the manifest is written last.
  // InvalidArgument for a malformed body or JSON (sizes that do not add
  // up, a bad name or time); 409 refusal for ids the agent did not upload.
  Result<AgentAnswer<AgentCommit>> Commit(const std::string& agent_id,
                                          std::string_view body);

  // POST /agent/vm-points: {"upload_id": 32 hex, "manifest": {...}}, at
  // most 1 MiB; the manifest as Manifest::ToJson writes a VM point (kind
  // "vm") whose tree roots are upload ids of tree nodes this agent
  // uploaded (zero for an empty or all-hole tree). The appliance sets id,
  // tool, agent_id, time (its clock) and parent, replaces the roots by
  // keyed ids and commits. InvalidArgument naming the field for a bad
  // body or manifest; 409 refusal for roots not held (with "missing") or a
  // name another agent owns. A retried upload_id answers the first point.
  Result<AgentAnswer<AgentCommit>> CommitVm(const std::string& agent_id,
                                            std::string_view body);

  // Closes the repository `name` now if no request uses it (gc is about to
  // need it alone); one in use closes when idle.
  void Release(const std::string& name);

 private:
  struct Held {
    std::shared_ptr<repository::Repository> repo;
    int in_use = 0;
    std::chrono::steady_clock::time_point used;
  };
  class Lease;
  AgentStore(StateDb& db, const RepositoryCatalog& catalog,
             RepositoryOf repository_of, Options options);
  // The agent's repository, opened for writing, held until the lease ends.
  Result<std::unique_ptr<Lease>> Acquire(const std::string& agent_id);
  void Return(const std::string& name);
  void ReaperLoop();
  std::mutex& CommitMutex(const std::string& agent_id);
  // The point an earlier commit with `upload_id` made, if any.
  Result<std::optional<AgentCommit>> EarlierCommit(
      const std::string& agent_id, const std::string& upload_id);
  // Sets what the appliance decides in `m` (tool, agent, time, parent by
  // the name-ownership rule), commits it and records the commit.
  Result<AgentAnswer<AgentCommit>> FinishCommit(Lease& lease,
                                                const std::string& agent_id,
                                                const std::string& upload_id,
                                                repository::Manifest& m);

  StateDb& db_;
  const RepositoryCatalog& catalog_;
  RepositoryOf repository_of_;
  Options options_;
  std::mutex mu_;
  std::map<std::string, Held> open_;
  std::map<std::string, std::shared_ptr<std::mutex>> opening_;
  std::map<std::string, std::unique_ptr<std::mutex>> commit_mu_;
  std::mutex names_mu_;  // a name's owner check and its commit, together
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::thread reaper_;
};

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_AGENT_STORE_H_
