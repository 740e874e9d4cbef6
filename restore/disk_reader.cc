#include "restore/disk_reader.h"

#include <algorithm>
#include <cstring>

#include "restore/image_restore.h"

namespace haven::restore {

using repository::ChunkId;

namespace {
constexpr size_t kCachedNodes = 64;  // 64 x 32 KiB: 2 MiB of chunk lists
}  // namespace

DiskReader::DiskReader(const repository::PointReader& repo,
                       const repository::DiskManifest& disk,
                       size_t cache_chunks)
    : repo_(repo),
      disk_(disk),
      cache_chunks_(cache_chunks != kDefaultCache
                        ? std::max<size_t>(1, cache_chunks)
                        : std::max<size_t>(
                              8, kDefaultCacheBytes /
                                     std::max<uint32_t>(disk.chunk_size, 1))) {
  if (disk_.chunk_size > 0)
    stats_.disk_chunks = (disk_.size + disk_.chunk_size - 1) / disk_.chunk_size;
  tree_.emplace(disk_.tree, [this](const ChunkId& id) -> Result<Bytes> {
    for (auto it = nodes_.begin(); it != nodes_.end(); ++it) {
      if (it->first == id) {
        nodes_.splice(nodes_.begin(), nodes_, it);
        return nodes_.front().second;
      }
    }
    HAVEN_ASSIGN_OR_RETURN(Bytes node, repo_.TreeNodeLoader(ctx_)(id));
    ++stats_.nodes_fetched;
    nodes_.emplace_front(id, node);
    if (nodes_.size() > kCachedNodes) nodes_.pop_back();
    return node;
  });
}

Result<const Bytes*> DiskReader::Chunk(uint64_t index) {
  if (auto it = cached_.find(index); it != cached_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);
    ++stats_.cache_hits;
    return &lru_.front().second;
  }
  if (index >= disk_.tree.count) return nullptr;  // past the list: a hole
  HAVEN_ASSIGN_OR_RETURN(ChunkId id, tree_->Get(index));
  if (id.IsZero()) return nullptr;
  const uint64_t off = index * disk_.chunk_size;
  const uint64_t len = std::min<uint64_t>(disk_.chunk_size, disk_.size - off);
  Bytes data;
  Status s = ReadDataChunk(repo_, id, len, false, ctx_, data);
  if (!s.ok())
    return s.WithContext("reading disk " + disk_.name + " at byte " +
                         std::to_string(off));
  ++stats_.chunks_fetched;
  lru_.emplace_front(index, std::move(data));
  cached_[index] = lru_.begin();
  if (lru_.size() > cache_chunks_) {
    cached_.erase(lru_.back().first);
    lru_.pop_back();
  }
  return &lru_.front().second;
}

Result<size_t> DiskReader::Read(uint64_t offset, uint8_t* buf, size_t len) {
  std::lock_guard<std::mutex> lock(mu_);
  if (disk_.chunk_size == 0)
    return DataLoss("disk " + disk_.name + " has no chunk size");
  if (offset >= disk_.size) return size_t{0};
  len = static_cast<size_t>(std::min<uint64_t>(len, disk_.size - offset));
  for (const auto& [lost_off, lost_len] : disk_.lost) {
    if (offset < lost_off + lost_len && lost_off < offset + len) {
      ++stats_.lost_reads;
      break;
    }
  }
  const uint64_t cs = disk_.chunk_size;
  size_t done = 0;
  while (done < len) {
    const uint64_t pos = offset + done;
    const uint64_t index = pos / cs;
    const uint64_t in_chunk = pos % cs;
    const size_t n =
        static_cast<size_t>(std::min<uint64_t>(len - done, cs - in_chunk));
    HAVEN_ASSIGN_OR_RETURN(const Bytes* chunk, Chunk(index));
    if (chunk == nullptr) {
      std::memset(buf + done, 0, n);
    } else {
      if (in_chunk + n > chunk->size())
        return DataLoss("chunk " + std::to_string(index) + " of disk " +
                        disk_.name + " is shorter than the disk says");
      std::memcpy(buf + done, chunk->data() + in_chunk, n);
    }
    done += n;
  }
  stats_.bytes_read += len;
  return len;
}

DiskReadStats DiskReader::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace haven::restore
