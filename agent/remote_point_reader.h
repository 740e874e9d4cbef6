// A recovery point read through the appliance, for an agent restoring a VM
// its job names (docs/agents.md, "Restores through the appliance"):
//
//   GET  /api/v1/agent/jobs/{job}/point   the manifest of the job's point
//   POST /api/v1/agent/jobs/{job}/chunks  N keyed ids (32 bytes each,
//        N <= 256) -> frames type:u8 id[32] len:u32 bytes (plain), in the
//        order asked; possibly fewer than asked (the rest is asked again)
//
// or one of the agent's own points (OwnPoint: a file point sealed with the
// agent's key, restored on the agent, agent/agent_key.h):
//
//   GET  /api/v1/agent/points/{id}/manifest
//   POST /api/v1/agent/points/{id}/chunks  as above
//
// The appliance authenticates every chunk as it reads it from the
// repository and answers only ids of the job's point; this side checks that
// each frame is the chunk it asked for (type, id) and that its length is
// sane (a data chunk's exact length is checked by the restore). Without the
// repository's key the agent cannot compute keyed ids: CanComputeIds() is
// false and a restore refuses verify_ids.
//
// Reads: chunk-list nodes are cached (the last 64). A data read that misses
// also fetches the next ids of the same chunk-list node (read-ahead, one
// request for up to 16 chunks), kept until read (at most 64 MiB).
// Thread-safe: RestoreImage's workers read at once; a chunk another thread
// is fetching is waited for, not fetched twice.
#ifndef HAVEN_AGENT_REMOTE_POINT_READER_H_
#define HAVEN_AGENT_REMOTE_POINT_READER_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "agent/appliance_client.h"
#include "base/progress.h"
#include "repository/point_reader.h"

namespace haven::agent {

struct RemotePointReaderOptions {
  CancelToken cancel;
  int attempts = 8;                // per request (transport failures, 502-504)
  size_t read_ahead = 16;          // data chunks per request, at most 256
  size_t cache_bytes = 64u << 20;  // read-ahead chunks waiting to be read
  size_t cached_nodes = 64;
};

// One of the calling agent's own points, by its full id.
struct OwnPoint {
  std::string id;
};

class RemotePointReader : public repository::PointReader {
 public:
  RemotePointReader(ApplianceClient& client, int64_t job_id,
                    RemotePointReaderOptions options = {});
  RemotePointReader(ApplianceClient& client, OwnPoint point,
                    RemotePointReaderOptions options = {});

  Status ReadChunk(repository::ChunkType type, const repository::ChunkId& id,
                   Bytes& out, repository::ReadContext& ctx) const override;
  repository::LoadNodeFn TreeNodeLoader(
      repository::ReadContext& ctx) const override;
  // The job's (or own) point; `ref` must be its id (NotFound otherwise).
  Result<repository::Manifest> FindSnapshot(
      const std::string& ref) const override;
  bool CanComputeIds() const override { return false; }
  // Not computable here: the zero id.
  repository::ChunkId IdFor(repository::ChunkType type,
                            ByteSpan raw) const override;

  // The manifest of the job's point (fetched once).
  Result<repository::Manifest> Point() const;

  uint64_t requests() const { return requests_; }
  uint64_t bytes_read() const { return bytes_; }

 private:
  using ChunkId = repository::ChunkId;
  using ChunkType = repository::ChunkType;
  using Frames = std::vector<std::pair<ChunkId, Bytes>>;

  // Asks for `ids` (all of `type`) until every one is answered.
  Result<Frames> Fetch(ChunkType type, const std::vector<ChunkId>& ids) const;
  Status ReadNode(const ChunkId& id, Bytes& out) const;
  Status ReadData(const ChunkId& id, Bytes& out) const;
  void KeepNode(const ChunkId& id, const Bytes& node) const;  // mu_ held
  void KeepData(const ChunkId& id, Bytes data) const;         // mu_ held

  ApplianceClient& client_;
  // "/api/v1/agent/jobs/{job}" or "/api/v1/agent/points/{id}"; the
  // manifest's route under it; "job N" or "point ID" for messages.
  const std::string base_, manifest_path_, what_;
  const RemotePointReaderOptions options_;

  mutable std::mutex mu_;
  mutable std::condition_variable fetched_;
  mutable std::optional<repository::Manifest> point_;
  // Chunk-list nodes, most recently used first, and where each id of them
  // sits (node, index) for read-ahead.
  struct Node {
    ChunkId id;
    std::shared_ptr<const Bytes> bytes;
  };
  mutable std::list<Node> nodes_;
  mutable std::unordered_map<ChunkId,
                             std::pair<std::shared_ptr<const Bytes>, uint32_t>,
                             repository::ChunkIdHash>
      where_;
  // Data chunks fetched ahead, oldest first in `order_`.
  mutable std::unordered_map<ChunkId, Bytes, repository::ChunkIdHash> data_;
  mutable std::deque<ChunkId> order_;
  mutable size_t data_bytes_ = 0;
  mutable std::unordered_set<ChunkId, repository::ChunkIdHash> in_flight_;
  mutable std::atomic<uint64_t> requests_{0}, bytes_{0};
};

}  // namespace haven::agent

#endif  // HAVEN_AGENT_REMOTE_POINT_READER_H_
