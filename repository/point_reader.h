// What a restore reads a recovery point through: its manifest, its
// chunk-list nodes and its data chunks. A Repository is one (the chunks
// authenticated with the repository's key); an agent restoring through the
// appliance reads with agent/remote_point_reader.h, where the appliance
// authenticates each chunk as it reads it and the agent cannot compute
// keyed ids (CanComputeIds() false).
#ifndef HAVEN_REPOSITORY_POINT_READER_H_
#define HAVEN_REPOSITORY_POINT_READER_H_

#include <string>

#include "base/bytes.h"
#include "base/status.h"
#include "repository/chunk_codec.h"
#include "repository/chunk_tree.h"
#include "repository/crypto.h"
#include "repository/manifest.h"

namespace haven::repository {

class ReadContext;  // repository.h: per-thread read state

class PointReader {
 public:
  virtual ~PointReader() = default;

  // Reads chunk `id` of `type` into `out`, authenticated by whoever holds
  // the key. Errors name the chunk.
  virtual Status ReadChunk(ChunkType type, const ChunkId& id, Bytes& out,
                           ReadContext& ctx) const = 0;
  // Loads chunk-list nodes for WalkTree and TreeReader; `ctx` must outlive
  // the function.
  virtual LoadNodeFn TreeNodeLoader(ReadContext& ctx) const = 0;
  // The recovery point `ref` names (an id; a Repository also takes a
  // prefix, "latest" or "NAME:latest").
  virtual Result<Manifest> FindSnapshot(const std::string& ref) const = 0;
  // Whether IdFor gives keyed ids (it needs the repository's key).
  virtual bool CanComputeIds() const = 0;
  // Keyed id of a chunk; only meaningful when CanComputeIds().
  virtual ChunkId IdFor(ChunkType type, ByteSpan raw) const = 0;
};

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_POINT_READER_H_
