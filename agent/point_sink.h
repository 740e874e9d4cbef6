// Where a backup puts its chunks and its point.
//
// The walker, the readers and the catalog of agent/file_backup.cc, and the
// disk captures of agent/image_backup.cc and agent/vm_backup.cc, do not
// know whether they write into a repository this process opened
// (LocalPointSink, `haven backup files|vm|image`) or upload to an appliance
// (agent/upload_sink.h, `haven agent backup`): both are a PointSink.
//
//   IdFor      a chunk's id. Local: the repository's keyed id. Upload: the
//              SHA-256 of the bytes; the appliance, which alone holds the
//              key, verifies the bytes and computes its own ids.
//   Put        store one chunk (thread-safe; one WriteContext per thread)
//   Flush      everything Put so far is durable
//   parent     the latest point of the same name, its catalog records and
//              its content list, so unchanged files are not read again
//   Commit     the point: written last, the commit point of the backup
#ifndef HAVEN_AGENT_POINT_SINK_H_
#define HAVEN_AGENT_POINT_SINK_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "base/bytes.h"
#include "base/status.h"
#include "repository/chunk_tree.h"
#include "repository/file_tree.h"
#include "repository/latest_point.h"
#include "repository/manifest.h"
#include "repository/repository.h"

namespace haven::agent {

class PointSink {
 public:
  virtual ~PointSink() = default;

  virtual repository::ChunkId IdFor(repository::ChunkType type,
                                    ByteSpan raw) const = 0;
  // zstd level for the chunks (the WriteContexts callers make).
  virtual int compression_level() const = 0;
  // Bytes per chunk of a disk image (CaptureDisk): the repository's
  // chunk_size, or for an upload the appliance's default.
  virtual uint32_t chunk_size() const = 0;
  // Stores a chunk unless it is stored already; true when it was new.
  // Thread-safe; `ctx` belongs to the calling thread.
  virtual Result<bool> Put(repository::ChunkType type,
                           const repository::ChunkId& id, ByteSpan raw,
                           repository::WriteContext& ctx) = 0;
  // Everything Put so far is stored durably.
  virtual Status Flush() = 0;
  // The backup failed with `why`: keep what can be reused by the next run
  // (finished packs, uploaded chunks) and return `why`.
  virtual Status Abandon(Status why) = 0;
  // What this backup added (for the point's stats and progress).
  virtual uint64_t new_chunks() const = 0;
  virtual uint64_t new_raw_bytes() const = 0;
  virtual uint64_t new_stored_bytes() const = 0;

  // The latest point of `kind` ("files", "vm", "image") named `name` that
  // this sink can use as the parent, if any.
  virtual Result<std::optional<repository::Manifest>> LatestPoint(
      const std::string& name, const std::string& kind) = 0;
  // The parent's catalog records in order.
  virtual Status ForEachRecord(
      const repository::Manifest& parent,
      const std::function<Status(repository::FileRecord&&)>& fn) = 0;
  // Loads nodes of the parent's content list (chunk_tree.h).
  virtual repository::LoadNodeFn NodeLoader(repository::ReadContext& ctx) = 0;
  // Whether chunk `id`, named by the parent, is still stored.
  virtual Result<bool> Has(const repository::ChunkId& id) = 0;
  // The catalog's bytes, in order, as they are cut into chunks (an upload
  // sink keeps them as the next run's parent).
  virtual Status OnCatalogChunk(ByteSpan bytes) { return OkStatus(); }

  // Writes the point; sets m.id. The commit point of the backup.
  virtual Status Commit(repository::Manifest& m) = 0;
};

// A repository opened by this process. `unreadable` is how LatestPoint
// treats a manifest it cannot read (repository/latest_point.h): kSkip for
// file backups; a VM backup refuses (kRefuse), so it never diffs against
// the wrong point.
class LocalPointSink : public PointSink {
 public:
  explicit LocalPointSink(
      repository::Repository& repo,
      repository::Unreadable unreadable = repository::Unreadable::kSkip);

  repository::ChunkId IdFor(repository::ChunkType type,
                            ByteSpan raw) const override;
  int compression_level() const override;
  uint32_t chunk_size() const override;
  Result<bool> Put(repository::ChunkType type, const repository::ChunkId& id,
                   ByteSpan raw, repository::WriteContext& ctx) override;
  Status Flush() override;
  Status Abandon(Status why) override;
  uint64_t new_chunks() const override;
  uint64_t new_raw_bytes() const override;
  uint64_t new_stored_bytes() const override;
  Result<std::optional<repository::Manifest>> LatestPoint(
      const std::string& name, const std::string& kind) override;
  Status ForEachRecord(
      const repository::Manifest& parent,
      const std::function<Status(repository::FileRecord&&)>& fn) override;
  repository::LoadNodeFn NodeLoader(repository::ReadContext& ctx) override;
  Result<bool> Has(const repository::ChunkId& id) override;
  Status Commit(repository::Manifest& m) override;

 private:
  repository::Repository& repo_;
  repository::Unreadable unreadable_;
  std::unique_ptr<repository::ChunkWriter> writer_;
};

}  // namespace haven::agent

#endif  // HAVEN_AGENT_POINT_SINK_H_
