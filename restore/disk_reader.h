// Random access to one disk of a recovery point, straight from the
// repository: a read fetches, authenticates and decompresses only the
// chunks it touches, keeping the most recent ones in a small cache. This is
// what lets `haven ls` and `haven restore file` read a guest's file system
// without restoring (or even reading) the whole disk.
//
//   Read(off, len) -> chunk indexes -> chunk cache (LRU)
//                  -> miss: chunk-list tree (TreeReader + node cache)
//                           -> ReadChunk (authenticated, decompressed)
//
// Holes read as zeros. Ranges that `haven repair snapshots` turned into
// holes (DiskManifest::lost) read as zeros too, and are counted so callers
// can say which files hold such zeros. Thread-safe: one mutex serialises
// reads (The Sleuth Kit reads from one thread anyway).
#ifndef HAVEN_RESTORE_DISK_READER_H_
#define HAVEN_RESTORE_DISK_READER_H_

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "repository/chunk_tree.h"
#include "repository/repository.h"

namespace haven::restore {

struct DiskReadStats {
  uint64_t chunks_fetched = 0;  // data chunks read from packs (cache misses)
  uint64_t nodes_fetched = 0;   // chunk-list tree nodes read from packs
  uint64_t cache_hits = 0;
  uint64_t bytes_read = 0;   // bytes returned to callers
  uint64_t lost_reads = 0;   // reads that touched a repaired (lost) range
  uint64_t disk_chunks = 0;  // chunk slots of the disk (holes included)
};

// Bytes of a disk, readable at any offset: what the guest file-system
// layer (guest_fs.h) reads. DiskReader serves them from the repository;
// the fuzzer from memory.
class DiskBytes {
 public:
  virtual ~DiskBytes() = default;
  virtual uint64_t size() const = 0;
  virtual const std::string& name() const = 0;  // for messages
  // Reads up to `len` bytes at `offset` into `buf`: fewer only at the end
  // of the disk (0 at or past it). DataLoss when the bytes are damaged.
  virtual Result<size_t> Read(uint64_t offset, uint8_t* buf, size_t len) = 0;
};

class DiskReader : public DiskBytes {
 public:
  // The default cache: 64 MiB of decompressed chunks (1024 at 64 KiB),
  // enough for the inode tables a directory of 100,000 entries spans.
  static constexpr size_t kDefaultCacheBytes = 64 << 20;
  static constexpr size_t kDefaultCache = SIZE_MAX;

  // `disk` must outlive the reader, as must `repo`. `cache_chunks` is the
  // number of decompressed chunks kept (at least 1); kDefaultCache keeps
  // kDefaultCacheBytes worth.
  DiskReader(const repository::PointReader& repo,
             const repository::DiskManifest& disk,
             size_t cache_chunks = kDefaultCache);

  uint64_t size() const override { return disk_.size; }
  const std::string& name() const override { return disk_.name; }
  const repository::DiskManifest& disk() const { return disk_; }

  // Reads up to `len` bytes at `offset` into `buf`: fewer only at the end
  // of the disk (0 at or past it). DataLoss when a chunk the range needs
  // is damaged or missing; `buf` is then unspecified.
  Result<size_t> Read(uint64_t offset, uint8_t* buf, size_t len) override;

  DiskReadStats stats() const;

 private:
  Result<const Bytes*> Chunk(uint64_t index);  // nullptr: a hole

  const repository::PointReader& repo_;
  const repository::DiskManifest& disk_;
  const size_t cache_chunks_;
  mutable std::mutex mu_;
  repository::ReadContext ctx_;
  std::optional<repository::TreeReader> tree_;
  // LRU of decompressed chunks: front is the most recently used.
  std::list<std::pair<uint64_t, Bytes>> lru_;
  std::unordered_map<uint64_t, std::list<std::pair<uint64_t, Bytes>>::iterator>
      cached_;
  // Tree nodes: the TreeReader keeps one per level; a file system's
  // metadata is spread over the disk, so a few more are kept here.
  std::list<std::pair<repository::ChunkId, Bytes>> nodes_;
  DiskReadStats stats_;
};

}  // namespace haven::restore

#endif  // HAVEN_RESTORE_DISK_READER_H_
