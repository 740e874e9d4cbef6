// A Haven repository on a local file system. Layout:
//
//   config            plain JSON (config.h)
//   keys/<slot>       wrapped master secret, one per passphrase (key_slots.h)
//   packs/<xx>/<name> pack files (pack_format.h)
//   snapshots/<id>    encrypted manifests (manifest.h, manifest_file.h)
//   index/            RocksDB chunk index and catalog of points, a cache
//                     (chunk_index.h, catalog.h)
//   protected/<id>    marks a recovery point that forget never removes
//   locks/repository  flock held by every job (lock.h)
//   tmp/              packs being written
//
// Write ordering (each rule has a crash test):
//   1. a pack is fsync'd and renamed into packs/ (directory fsync'd) before
//      the index names it;
//   2. the index is synced before a manifest names its chunks, and the
//      manifest is written last: it is the commit point;
//   3. nothing is modified in place.
//
// Thread safety: a Repository may be shared by threads for reads and for
// one ChunkWriter; each thread brings its own ReadContext / WriteContext.
#ifndef HAVEN_REPOSITORY_REPOSITORY_H_
#define HAVEN_REPOSITORY_REPOSITORY_H_

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "base/file.h"
#include "base/status.h"
#include "repository/catalog.h"
#include "repository/chunk_codec.h"
#include "repository/chunk_index.h"
#include "repository/config.h"
#include "repository/key_slots.h"
#include "repository/lock.h"
#include "repository/manifest.h"
#include "repository/pack_file.h"

namespace haven::repository {

struct InitOptions {
  uint32_t chunk_size = kDefaultChunkSize;
  uint64_t pack_size = kDefaultPackSize;
  int compression_level = kDefaultCompressionLevel;
  ScryptParams scrypt;
};

struct OpenOptions {
  bool write = false;  // a writer opens the index read-write (one at a time)
  // Exclusive holds the repository lock alone: no backup or restore runs
  // beside it. Only jobs that delete packs (gc) need it.
  bool exclusive = false;
  double lock_wait_seconds = 24 * 3600;
  std::function<void(const std::string&)> on_wait;
};

// Per-thread state for reading chunks: contexts and open pack files.
class ReadContext {
 public:
  Decompressor decompressor;
  Bytes sealed, scratch;
  // Returns an open descriptor for a pack, caching a few.
  Result<int> PackFd(const std::string& repo_dir, const std::string& pack);

 private:
  std::list<std::pair<std::string, UniqueFd>> fds_;
};

struct WriteContext {
  explicit WriteContext(int level) : compressor(level) {}
  Compressor compressor;
  Bytes scratch, sealed;
};

class Repository;

// One backup's stream of new chunks into packs. Thread-safe.
class ChunkWriter {
 public:
  explicit ChunkWriter(Repository* repo);
  // Full packs already handed to the sealer are still sealed (they are
  // valid and reused by the next backup); the open pack is discarded.
  ~ChunkWriter();

  // Stores `raw` as chunk `id` unless the repository already has it.
  // Returns true if it was stored now.
  Result<bool> Put(ChunkType type, const ChunkId& id, ByteSpan raw,
                   WriteContext& ctx);
  // Finishes the open pack and makes the index durable. After OK, every
  // chunk Put so far is safe to name in a manifest.
  Status Flush();

  uint64_t new_chunks() const { return new_chunks_; }
  uint64_t new_raw_bytes() const { return new_raw_bytes_; }
  uint64_t new_stored_bytes() const { return new_stored_bytes_; }

 private:
  Status FinishPack(std::unique_ptr<PackWriter> pack);
  // Hands a full pack to the sealer thread; waits while two are queued.
  Status QueueForSealing(std::unique_ptr<PackWriter> pack);
  void SealerLoop();

  Repository* repo_;
  std::mutex pending_mu_;
  std::unordered_set<ChunkId, ChunkIdHash>
      pending_;  // in packs not yet indexed
  std::mutex pack_mu_;
  std::unique_ptr<PackWriter> current_;
  // Sealing (fsync, rename, index) runs on its own thread so workers keep
  // compressing while the disk catches up.
  std::mutex finish_mu_;
  std::condition_variable finish_cv_;
  std::deque<std::unique_ptr<PackWriter>> sealing_;
  bool sealer_busy_ = false, stop_ = false;
  Status seal_error_;
  std::thread sealer_;
  std::atomic<uint64_t> new_chunks_{0}, new_raw_bytes_{0}, new_stored_bytes_{0};
};

// Where ListSnapshots reads manifests from.
enum class SnapshotSource {
  kCatalog,  // the index's catalog, files only for what it lacks (catalog.h)
  kFiles,    // every file in snapshots/ (check and repair: they verify them)
};

struct RebuildReport {
  uint64_t packs = 0;
  uint64_t chunks = 0;
  std::vector<std::string> damaged;  // one message per unreadable pack
};

class Repository {
 public:
  static Status Init(const std::string& dir, std::string_view passphrase,
                     const InitOptions& options);
  static Result<std::unique_ptr<Repository>> Open(const std::string& dir,
                                                  std::string_view passphrase,
                                                  const OpenOptions& options);

  const std::string& dir() const { return dir_; }
  const Config& config() const { return config_; }
  const std::string& unlocked_slot() const { return slot_; }
  KeySlots& key_slots() { return *slots_; }
  const Key& master_key() const { return master_; }
  const Key& data_key() const { return data_key_; }
  ChunkIndex& index() { return *index_; }
  const ChunkIndex& index() const { return *index_; }

  // Keyed id of a chunk; data and tree chunks use different keys so their
  // ids can never collide.
  ChunkId IdFor(ChunkType type, ByteSpan raw) const {
    return type == ChunkType::kTree ? tree_hasher_->Hash(raw)
                                    : hasher_->Hash(raw);
  }

  // Reads a chunk into `out`, authenticated. Errors name the pack and chunk.
  Status ReadChunk(ChunkType type, const ChunkId& id, Bytes& out,
                   ReadContext& ctx) const;

  std::unique_ptr<ChunkWriter> NewWriter() {
    return std::make_unique<ChunkWriter>(this);
  }

  // Reads a chunk-list node and checks its bytes against its keyed id.
  Status LoadTreeNode(const ChunkId& id, Bytes& out, ReadContext& ctx) const;

  // Assigns `m.id` and writes the manifest: the commit point of a backup.
  Status CommitSnapshot(Manifest& m);
  // All readable snapshots, oldest first; unreadable ones go to `errors`.
  // From the catalog by default: one listing of snapshots/, and a file read
  // only for points the catalog lacks (a writer then adds them).
  Result<std::vector<Manifest>> ListSnapshots(
      std::vector<std::string>* errors,
      SnapshotSource from = SnapshotSource::kCatalog) const;
  // Reads and verifies snapshots/<id> itself (not the catalog).
  Result<Manifest> LoadSnapshot(const std::string& id) const;
  // `spec` is an id prefix, "latest" or "NAME:latest". Resolves through the
  // catalog's summaries and opens one manifest.
  Result<Manifest> FindSnapshot(const std::string& spec) const;

  // Protected recovery points are never removed (protected/<id> exists).
  Status SetProtected(const std::string& id, bool on);
  bool IsProtected(const std::string& id) const;
  // Removes a recovery point's manifest (its chunks go at the next gc).
  // Refuses a protected one.
  Status DeleteSnapshot(const std::string& id);

  // For jobs that read first beside others and then need the repository to
  // themselves (gc): takes the exclusive lock, waiting for other jobs, and
  // reopens the index for writing.
  Status BecomeExclusiveWriter(const OpenOptions& options);

  // Rebuilds index/ from the pack headers.
  static Result<RebuildReport> RebuildIndex(const std::string& dir,
                                            std::string_view passphrase,
                                            const OpenOptions& options);

 private:
  Repository() = default;
  Result<RebuildReport> RebuildIndexLocked();
  // The catalog of points over the current index (reopened by gc).
  Catalog PointCatalog() const;

  std::string dir_;
  Config config_;
  std::string slot_;
  Key master_{}, data_key_{};
  std::unique_ptr<KeySlots> slots_;
  std::unique_ptr<KeyedHasher> hasher_, tree_hasher_;
  std::unique_ptr<ChunkIndex> index_;
  std::optional<RepositoryLock> lock_;
};

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_REPOSITORY_H_
