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
// RocksDB allows one writing process; a second writer waits for the first
// (its LOCK is an fcntl lock, released if the holder is killed). Readers
// open read-only and never wait. A read-only open that races with a writer
// flushing its memtable can miss that writer's newest entries (it read the
// old MANIFEST, then found the WAL already gone); so a reader that does not
// find a chunk reopens the index once and looks again before saying the
// chunk is missing.
#ifndef HAVEN_REPOSITORY_CHUNK_INDEX_H_
#define HAVEN_REPOSITORY_CHUNK_INDEX_H_

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "repository/chunk_codec.h"
#include "repository/crypto.h"

namespace rocksdb {
class DB;
}

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
    // How long a writer waits for another writer's lock.
    double lock_wait_seconds = 24 * 3600;
    std::function<void(const std::string&)> on_wait;
  };
  static Result<std::unique_ptr<ChunkIndex>> Open(const std::string& dir,
                                                  const OpenOptions& options);
  ~ChunkIndex();

  // nullopt if the chunk is not indexed. Thread-safe.
  Result<std::optional<ChunkLocation>> Get(const ChunkId& id) const;
  // Thread-safe. `sync` makes the batch durable before returning.
  Status Put(const std::vector<std::pair<ChunkId, ChunkLocation>>& entries,
             bool sync);
  Status SetRepositoryId(const std::string& id);
  Result<std::string> RepositoryId() const;
  // Removes these chunk entries. Thread-safe.
  Status Delete(const std::vector<ChunkId>& ids, bool sync);
  Status Sync();
  Status DeleteAllChunks();
  Result<uint64_t> CountChunks() const;
  bool read_only() const { return read_only_; }
  // Reads every block of the index; a damaged one is DataLoss.
  Status VerifyChecksums() const;

  // Other caches kept in the index (the catalog of recovery points) use
  // their own key prefixes through these; never "c" or "m:".
  // Writes `puts` and removes `deletes` in one atomic batch. Thread-safe.
  Status WriteRaw(const std::vector<std::pair<std::string, std::string>>& puts,
                  const std::vector<std::string>& deletes, bool sync);
  // The value under `key`, or nullopt. Thread-safe.
  Result<std::optional<std::string>> GetRaw(const std::string& key) const;
  // Calls `fn` for every key starting with `prefix`, in key order; stops at
  // the first error.
  Status ScanRaw(const std::string& prefix,
                 const std::function<Status(std::string_view key,
                                            std::string_view value)>& fn) const;
  // Removes every key starting with `prefix` (one byte).
  Status DeletePrefix(char prefix);
  // Calls `fn` for every chunk entry in id order; stops at the first error.
  // A malformed entry is passed to `bad` instead (it names the id).
  Status ForEach(
      const std::function<Status(const ChunkId&, const ChunkLocation&)>& fn,
      const std::function<void(const Status&)>& bad) const;

 private:
  ChunkIndex(rocksdb::DB* db, std::string dir, bool read_only);
  std::shared_ptr<rocksdb::DB> Db() const;
  // Read-only: reopens the index to see entries committed since it was
  // opened. Returns false if nothing was done (a writer, or too soon).
  Result<bool> Refresh() const;

  mutable std::mutex mu_;
  mutable std::shared_ptr<rocksdb::DB> db_;
  std::string dir_;
  bool read_only_ = false;
  mutable double last_refresh_ = 0;
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
