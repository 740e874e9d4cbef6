// A Haven repository. Its objects live in a Backend (backend.h):
//
//   config            plain JSON (config.h)
//   keys/<slot>       wrapped master secret, one per passphrase (key_slots.h)
//   packs/<xx>/<name> pack files (pack_format.h)
//   snapshots/<id>    encrypted manifests (manifest.h, manifest_file.h)
//   protected/<id>    marks a recovery point that forget never removes
//
// and its caches and coordination in a local directory (for a repository
// opened by path, the same directory):
//
//   index/            RocksDB chunk index and catalog of points, a cache
//                     (chunk_index.h, catalog.h)
//   locks/repository  flock held by every job (lock.h)
//   tmp/              packs being written (local backend), gc scratch
//
// Write ordering (each rule has a crash test):
//   1. a pack is fsync'd and renamed into packs/ (directory fsync'd) before
//      the index names it;
//   2. the index is synced before a manifest names its chunks, and the
//      manifest is written last: it is the commit point;
//   3. nothing is modified in place.
//
// Thread safety: a Repository may be shared by threads for reads and for
// writes: several ChunkWriters at once (the VMs of `backup vm --parallel`),
// each committing its own points; index write sessions are taken one at a
// time (chunk_index.h). Each thread brings its own ReadContext /
// WriteContext.
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
#include <set>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "base/file.h"
#include "base/status.h"
#include "repository/backend.h"
#include "repository/catalog.h"
#include "repository/chunk_codec.h"
#include "repository/chunk_index.h"
#include "repository/config.h"
#include "repository/key_slots.h"
#include "repository/lock.h"
#include "repository/manifest.h"
#include "repository/object_lock.h"
#include "repository/pack_file.h"
#include "repository/point_reader.h"
#include "repository/store_lock.h"

namespace haven::repository {

struct InitOptions {
  uint32_t chunk_size = kDefaultChunkSize;
  uint64_t pack_size = kDefaultPackSize;
  int compression_level = kDefaultCompressionLevel;
  ScryptParams scrypt;
  // `haven init --copy-params-from`: the chunk-id and tree-id keys of the
  // repository this one receives copies from (RepositorySecret).
  bool shared_ids = false;
  Key chunk_id_key{}, tree_id_key{};
  // `haven init --object-lock`: an object store only (object_lock.h).
  ObjectLockPolicy object_lock;
};

struct OpenOptions {
  // A writer (backup, repair) keeps a read-only view of the index and
  // writes its entries in short write sessions, so writers run at once
  // (chunk_index.h).
  bool write = false;
  // With write: holds the index open for writing for the whole job instead
  // (rebuild-index); other writers' sessions wait for it.
  bool hold_index = false;
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
  // Returns an open reader for a pack, caching a few, so that reading many
  // chunks of one pack does not reopen it for each. Missing pack: DataLoss.
  Result<ObjectReader*> Pack(const Backend& backend, const std::string& pack);

 private:
  std::list<std::pair<std::string, std::unique_ptr<ObjectReader>>> readers_;
};

struct WriteContext {
  explicit WriteContext(int level) : compressor(level) {}
  Compressor compressor;
  Bytes scratch, sealed;
};

class Repository;

// One backup's stream of new chunks into packs. Thread-safe.
//
// Each sealed pack's entries go to the index in a write session that does
// not wait: if another writer is in one, they stay pending (their chunks are
// still found by this writer's lookups) and go with the next pack's. Flush
// waits for the index. Two writers may store the same new chunk, each in
// its own pack; the index names one copy and gc drops the other.
class ChunkWriter {
 public:
  explicit ChunkWriter(Repository* repo);
  // Full packs already handed to the sealer are still sealed, and indexed
  // unless another writer holds the index at that moment (they are valid
  // and reused by the next backup); the open pack is discarded.
  ~ChunkWriter();

  // Stores `raw` as chunk `id` unless the repository already has it.
  // Returns true if it was stored now.
  Result<bool> Put(ChunkType type, const ChunkId& id, ByteSpan raw,
                   WriteContext& ctx);
  // The same for a chunk of `raw_len` bytes already encoded as `codec` +
  // `payload` (chunk_codec.h; an agent's zstd frame the caller has decoded
  // and checked against `id`): stored without compressing it again.
  Result<bool> PutEncoded(ChunkType type, const ChunkId& id, uint32_t raw_len,
                          uint8_t codec, ByteSpan payload, WriteContext& ctx);
  // Finishes the open pack and makes the index durable. After OK, every
  // chunk Put so far is safe to name in a manifest.
  Status Flush();

  uint64_t new_chunks() const { return new_chunks_; }
  uint64_t new_raw_bytes() const { return new_raw_bytes_; }
  uint64_t new_stored_bytes() const { return new_stored_bytes_; }

 private:
  Status FinishPack(std::unique_ptr<PackWriter> pack);
  // Put's two halves: whether `id` is to be stored now (claiming it), and
  // appending the sealed blob in ctx.sealed.
  Result<bool> Claim(const ChunkId& id);
  Status Append(ChunkType type, const ChunkId& id, uint32_t raw_len,
                WriteContext& ctx);
  // Writes the pending index entries; `wait` false gives up (keeping them)
  // while another writer holds the index.
  Status IndexPending(bool wait);
  // Hands a full pack to the sealer thread; waits while two are queued.
  Status QueueForSealing(std::unique_ptr<PackWriter> pack);
  void SealerLoop();

  Repository* repo_;
  std::mutex pending_mu_;
  std::unordered_set<ChunkId, ChunkIdHash>
      pending_;  // in packs not yet indexed
  std::mutex index_mu_;
  // Entries of sealed packs that wait for an index write session.
  std::vector<std::pair<ChunkId, ChunkLocation>> unindexed_;
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

class Repository : public PointReader {
 public:
  // A repository in local directory `dir` (a LocalBackend on it; index,
  // locks and tmp inside it too), or in an object store when `dir` is an
  // s3: location (s3/s3_client.h), with its index, locks and tmp in the
  // location's cache directory (s3/s3_backend.h, S3CacheDir).
  static Status Init(const std::string& dir, std::string_view passphrase,
                     const InitOptions& options);
  static Result<std::unique_ptr<Repository>> Open(const std::string& dir,
                                                  std::string_view passphrase,
                                                  const OpenOptions& options);
  // A repository whose objects live in `backend`, with its index, locks and
  // scratch space in `local_dir` (created if missing). Init fails with
  // AlreadyExists if the backend holds a config already.
  static Status Init(std::unique_ptr<Backend> backend,
                     const std::string& local_dir, std::string_view passphrase,
                     const InitOptions& options);
  static Result<std::unique_ptr<Repository>> Open(
      std::unique_ptr<Backend> backend, const std::string& local_dir,
      std::string_view passphrase, const OpenOptions& options);

  // The local directory (index/, locks/, tmp/).
  const std::string& dir() const { return dir_; }
  // Where packs, manifests, keys, config and protected markers live.
  // Thread-safe (see backend.h).
  Backend& backend() const { return *backend_; }
  const Config& config() const { return config_; }
  const std::string& unlocked_slot() const { return slot_; }
  KeySlots& key_slots() { return *slots_; }
  const RepositorySecret& secret() const { return secret_; }
  const Key& data_key() const { return data_key_; }
  ChunkIndex& index() { return *index_; }
  const ChunkIndex& index() const { return *index_; }

  // Keyed id of a chunk; data and tree chunks use different keys so their
  // ids can never collide.
  ChunkId IdFor(ChunkType type, ByteSpan raw) const override {
    return type == ChunkType::kTree ? tree_hasher_->Hash(raw)
                                    : hasher_->Hash(raw);
  }

  // Reads a chunk into `out`, authenticated. Errors name the pack and chunk.
  Status ReadChunk(ChunkType type, const ChunkId& id, Bytes& out,
                   ReadContext& ctx) const override;
  // ReadChunk that also gives the chunk's encoding as stored (codec byte,
  // then payload: chunk_codec.h), so a copy can store it again without
  // compressing it again.
  Status ReadChunkEncoded(ChunkType type, const ChunkId& id, Bytes& raw,
                          Bytes& encoded, ReadContext& ctx) const;
  // A Repository holds the key: true.
  bool CanComputeIds() const override { return true; }

  std::unique_ptr<ChunkWriter> NewWriter() {
    return std::make_unique<ChunkWriter>(this);
  }

  // Reads a chunk-list node and checks its bytes against its keyed id.
  Status LoadTreeNode(const ChunkId& id, Bytes& out, ReadContext& ctx) const;
  // LoadTreeNode as the LoadNodeFn WalkTree and TreeReader take; `ctx`
  // must outlive the function.
  LoadNodeFn TreeNodeLoader(ReadContext& ctx) const override;

  // Assigns `m.id` and writes the manifest: the commit point of a backup.
  Status CommitSnapshot(Manifest& m);
  // Writes a manifest under the id it has (a point copied from another
  // repository, repository/copy.h). AlreadyExists if that point is here.
  Status CommitCopiedSnapshot(const Manifest& m);
  // All readable snapshots, oldest first; unreadable ones go to `errors`.
  // From the catalog by default: one listing of snapshots/, and a file read
  // only for points the catalog lacks (a writer then adds them).
  Result<std::vector<Manifest>> ListSnapshots(
      std::vector<std::string>* errors,
      SnapshotSource from = SnapshotSource::kCatalog) const;
  // Reads and verifies snapshots/<id> itself (not the catalog).
  Result<Manifest> LoadSnapshot(const std::string& id) const;
  // Id, name, kind and time of every readable point, oldest first (the
  // order of ListSnapshots), from the catalog's summaries: no manifest is
  // opened unless the catalog lacks it. Unreadable ones go to `errors`.
  Result<std::vector<PointSummary>> ListSummaries(
      std::vector<std::string>* errors) const;
  // `spec` is an id prefix, "latest" or "NAME:latest". Resolves through the
  // catalog's summaries and opens one manifest.
  //
  // `kinds`, when not empty, are the kinds of point the caller can use
  // ("files" for a file restore; "image" and "vm" for disks): "latest" and
  // "NAME:latest" then choose the latest point of those kinds, so an image
  // backup taken after a file backup does not hide it. An id prefix names
  // one point whatever its kind (the caller checks it). NotFound names what
  // there is instead: the names of the points of those kinds, or that the
  // name's points are of another kind.
  Result<Manifest> FindSnapshot(const std::string& spec,
                                const std::vector<std::string>& kinds) const;
  // The same for points of any kind.
  Result<Manifest> FindSnapshot(const std::string& spec) const override {
    return FindSnapshot(spec, std::vector<std::string>{});
  }

  // Protected recovery points are never removed (protected/<id> exists).
  Status SetProtected(const std::string& id, bool on);
  bool IsProtected(const std::string& id) const;
  // Removes a recovery point's manifest (its chunks go at the next gc).
  // Refuses a protected one.
  Status DeleteSnapshot(const std::string& id);

  // The last verified restore of a point (restore/verify_restore.h), kept
  // sealed in verified/<id> (AAD "haven-verified:<id>"): a JSON text the
  // caller made, at most 16 MiB. Writing replaces the earlier one.
  Status WriteVerification(const std::string& id, const std::string& json);
  // nullopt when the point was never verified; DataLoss when the object
  // does not authenticate.
  Result<std::optional<std::string>> ReadVerification(
      const std::string& id) const;
  // The points that have a verification record (one listing of verified/).
  Result<std::set<std::string>> VerifiedIds() const;

  // OK unless the repository lock in a shared store was lost (store_lock.h);
  // jobs that delete check it before each deletion.
  Status StoreLockValid() const;

  // For jobs that read first beside others and then need the repository to
  // themselves (gc): takes the exclusive lock, waiting for other jobs, and
  // reopens the index for writing.
  Status BecomeExclusiveWriter(const OpenOptions& options);

  // The backend a repository location names, and the local directory its
  // index, locks and tmp go in: `spec` itself for a directory.
  static Result<std::unique_ptr<Backend>> OpenStore(const std::string& spec,
                                                    std::string* local_dir);

  // Rebuilds index/ from the pack headers.
  static Result<RebuildReport> RebuildIndex(const std::string& dir,
                                            std::string_view passphrase,
                                            const OpenOptions& options);

 private:
  Repository() = default;
  Result<RebuildReport> RebuildIndexLocked();
  // Opens the index held for writing (`io`), rebuilding it from the packs
  // when it is missing or another repository's.
  Status OpenIndexForRepair(const ChunkIndex::OpenOptions& io, bool had_index,
                            const OpenOptions& options);
  // The catalog of points over the current index (reopened by gc).
  Catalog PointCatalog() const;
  // A store shared between machines: indexes the packs other machines
  // wrote since this one last looked (LOCAL/packs.known), and fills the
  // index again from the packs there are when one it knew is gone (another
  // machine's gc). Uses `open_index` if given (held for writing), else opens
  // the index for writing for the while.
  Status IndexNewPacks(const ChunkIndex::OpenOptions& io,
                       ChunkIndex* open_index = nullptr);
  Status SaveKnownPacks(const std::vector<std::string>& packs) const;
  // Before a manifest is written: the store lock still holds, and (object
  // lock) every pack the point references is retained as long as it.
  Status BeforeCommit(const Manifest& m);
  Status TakeStoreLock(bool exclusive, const OpenOptions& options);
  // Writers (and gc) write with the config's object lock (object_lock.h).
  Status EnableObjectLock();

  std::string dir_;
  std::unique_ptr<Backend> backend_;
  Config config_;
  std::string slot_;
  RepositorySecret secret_;
  Key data_key_{};
  std::unique_ptr<KeySlots> slots_;
  std::unique_ptr<KeyedHasher> hasher_, tree_hasher_;
  std::unique_ptr<ChunkIndex> index_;
  std::optional<RepositoryLock> lock_;
  std::unique_ptr<StoreLock> store_lock_;
  std::unique_ptr<PackRetention> retention_;
};

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_REPOSITORY_H_
