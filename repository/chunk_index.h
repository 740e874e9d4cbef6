// The chunk index: RocksDB mapping chunk id -> where its blob lives. It is a
// cache of what the pack headers say; deleting index/ loses nothing
// (Repository::RebuildIndex reads the packs again).
//
// Keys and values:
//   "c" | chunk id (32)  ->  pack name (16 raw bytes) | offset (u64) |
//                            stored_len (u32) | raw_len (u32) | type (u8)
//   "m:repository"       ->  repository id (so a foreign index is noticed)
//   "s" | point id (16)  ->  sealed summary of a recovery point   (catalog.h)
//   "t" | point id (16)  ->  the point's manifest file, verbatim  (catalog.h)
//
// RocksDB allows one writing process (its LOCK is an fcntl lock, released if
// the holder is killed). Three ways to open the index:
//   - read-only: never waits; restores, listings, check, gc's mark;
//   - held for writing: the lock is held until the index is destroyed; for
//     jobs that run alone or must not interleave (gc's sweep under the
//     exclusive repository lock, rebuild-index, init);
//   - write sessions (backups): a read-only view for lookups, and every
//     write opens the index for writing just for that one batch, syncs it
//     and closes it again, so many backups write into one index at once.
//     TryPut gives up at once when another process is in a session (its
//     caller keeps the entries pending); Put waits. docs/repository-format.md
//     ("Locking and concurrency") has the whole rule.
// A read-only open that races with a writer flushing its memtable can miss
// that writer's newest entries (it read the old MANIFEST, then found the WAL
// already gone); so a reader that does not find a chunk reopens the index
// once and looks again before saying the chunk is missing. A long-lived view
// can also find a table file gone (a writer compacted it away): it reopens
// and reads again.
#ifndef HAVEN_REPOSITORY_CHUNK_INDEX_H_
#define HAVEN_REPOSITORY_CHUNK_INDEX_H_

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/status.h"
#include "repository/chunk_codec.h"
#include "repository/crypto.h"

namespace rocksdb {
class DB;
class WriteBatch;
}  // namespace rocksdb

namespace haven::repository {

struct ChunkLocation {
  std::string pack;  // 32 hex digits
  uint64_t offset = 0;
  uint32_t stored_len = 0;
  uint32_t raw_len = 0;
  ChunkType type = ChunkType::kData;
};

// Decodes an index value (untrusted bytes) for chunk `id`.
Result<ChunkLocation> DecodeIndexValue(std::string_view value,
                                       const ChunkId& id);

class ChunkIndex {
 public:
  struct OpenOptions {
    bool read_only = false;
    // A read-only view plus short write sessions (see above). Implies
    // read_only for the view.
    bool write_sessions = false;
    // How long a writer waits for another writer's lock.
    double lock_wait_seconds = 24 * 3600;
    std::function<void(const std::string&)> on_wait;
  };
  static Result<std::unique_ptr<ChunkIndex>> Open(const std::string& dir,
                                                  const OpenOptions& options);
  ~ChunkIndex();

  // True for a read-only view, with or without write sessions.
  bool read_only() const { return read_only_; }

  // nullopt if the chunk is not indexed. Thread-safe.
  Result<std::optional<ChunkLocation>> Get(const ChunkId& id) const;
  // Thread-safe. `sync` makes the batch durable before returning (a write
  // session always syncs). In session mode it waits for another writer up
  // to the open's lock_wait_seconds.
  Status Put(const std::vector<std::pair<ChunkId, ChunkLocation>>& entries,
             bool sync);
  // Like Put, but in session mode it does not wait: if another process (or
  // another thread of this one) is writing, it returns kUnavailable and
  // writes nothing. Held for writing, it is Put without sync.
  Status TryPut(const std::vector<std::pair<ChunkId, ChunkLocation>>& entries);
  Status SetRepositoryId(const std::string& id);
  Result<std::string> RepositoryId() const;
  // Removes these chunk entries. Thread-safe.
  Status Delete(const std::vector<ChunkId>& ids, bool sync);
  // Makes earlier unsynced writes durable (sessions are synced already).
  Status Sync();
  Status DeleteAllChunks();
  Result<uint64_t> CountChunks() const;
  // Scans see this instance's own session writes (they refresh the view).
  // Reads every block of the index; a damaged one is DataLoss.
  Status VerifyChecksums() const;
  // True if this instance may write: held for writing, or a view with write
  // sessions. A plain read-only open never writes.
  bool writable() const { return !read_only_ || sessions_; }

  // Other caches kept in the index (the catalog of recovery points) use
  // their own key prefixes through these; never "c" or "m:".
  // Writes `puts` and removes `deletes` in one atomic batch. Held for
  // writing: on the open handle. With write sessions: in a session of its
  // own (waiting for another writer like Put), after which the view is
  // refreshed so that GetRaw and ScanRaw see the batch. A plain read-only
  // open: FailedPrecondition, nothing written. Thread-safe.
  Status WriteRaw(const std::vector<std::pair<std::string, std::string>>& puts,
                  const std::vector<std::string>& deletes, bool sync);
  // The value under `key`, or nullopt. Thread-safe.
  Result<std::optional<std::string>> GetRaw(const std::string& key) const;
  // Calls `fn` for every key starting with `prefix`, in key order; stops at
  // the first error.
  Status ScanRaw(const std::string& prefix,
                 const std::function<Status(std::string_view key,
                                            std::string_view value)>& fn) const;
  // Removes every key starting with `prefix` (one byte); as WriteRaw.
  Status DeletePrefix(char prefix);
  // Calls `fn` for every chunk entry in id order; stops at the first error.
  // A malformed entry is passed to `bad` instead (it names the id).
  Status ForEach(
      const std::function<Status(const ChunkId&, const ChunkLocation&)>& fn,
      const std::function<void(const Status&)>& bad) const;

 private:
  ChunkIndex(rocksdb::DB* db, std::string dir, const OpenOptions& options);
  std::shared_ptr<rocksdb::DB> Db() const;
  // Read-only: reopens the index to see entries committed since it was
  // opened. Returns false if nothing was done (a writer, or too soon);
  // `force` skips the too-soon test.
  Result<bool> Refresh(bool force = false) const;
  // Runs `fn` on the index opened for writing in a session of its own;
  // wait_seconds 0 tries once. Unavailable if the lock stays taken.
  Status InSession(double wait_seconds,
                   const std::function<Status(rocksdb::DB*)>& fn);
  // Writes `batch` (held: on the open handle; sessions: in a session that
  // waits or, with wait false, tries once).
  Status Write(rocksdb::WriteBatch* batch, bool sync, bool wait);
  Status PutEntries(
      const std::vector<std::pair<ChunkId, ChunkLocation>>& entries, bool sync,
      bool wait);
  // Reads `key`, refreshing a read-only view once when it may be stale.
  // NotFound if absent.
  Status Lookup(const std::string& key, std::string* v) const;
  // Before a scan: refreshes a view that misses this process's sessions.
  Status SeeOwnWrites() const;
  // Entries this process wrote in sessions that the view may not show yet.
  std::optional<ChunkLocation> Recent(const ChunkId& id) const;

  mutable std::mutex mu_;
  mutable std::shared_ptr<rocksdb::DB> db_;
  std::string dir_;
  bool read_only_ = false;
  bool sessions_ = false;
  double lock_wait_seconds_ = 0;
  std::function<void(const std::string&)> on_wait_;
  mutable double last_refresh_ = 0;
  std::mutex session_mu_;  // one session at a time per instance
  // id -> (location, session number); an entry leaves when a view opened
  // after its session shows it. Bounded by what is written between two
  // refreshes.
  mutable std::unordered_map<ChunkId, std::pair<ChunkLocation, uint64_t>,
                             ChunkIdHash>
      recent_;
  mutable uint64_t sessions_done_ = 0;
};

// A set of chunk ids on disk (RocksDB), for jobs whose working set must not
// live in memory: garbage collection marks every live chunk here. Memory stays
// flat however many ids it holds. Not durable: it is scratch space, removed
// with its directory when the set is destroyed.
class ChunkSet {
 public:
  // Creates an empty set in `dir`, which must not exist yet.
  static Result<std::unique_ptr<ChunkSet>> Create(const std::string& dir);
  ~ChunkSet();

  Status Add(const std::vector<ChunkId>& ids);
  Result<bool> Contains(const ChunkId& id) const;
  uint64_t added() const { return added_; }

 private:
  ChunkSet(rocksdb::DB* db, std::string dir);
  std::unique_ptr<rocksdb::DB> db_;
  std::string dir_;
  uint64_t added_ = 0;
};

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_CHUNK_INDEX_H_
