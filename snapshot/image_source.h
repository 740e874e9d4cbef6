// snapshot/: capture a point in time from a source. This file: a disk image
// read as is — a raw image file or a block device — with its allocation map
// (SEEK_DATA/SEEK_HOLE), so unallocated ranges are never read.
#ifndef HAVEN_SNAPSHOT_IMAGE_SOURCE_H_
#define HAVEN_SNAPSHOT_IMAGE_SOURCE_H_

#include <sys/stat.h>

#include <cstdint>
#include <memory>
#include <string>

#include "base/file.h"
#include "snapshot/disk_source.h"

namespace haven::snapshot {

// What identifies the version of a file; compared before and after a read
// to notice a writer (or a file replaced meanwhile: device and inode).
struct SourceFingerprint {
  uint64_t dev = 0, ino = 0;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  bool operator==(const SourceFingerprint&) const = default;
};
SourceFingerprint FingerprintOf(const struct stat& st);
// stat(2) of `path` (symbolic links followed).
Result<SourceFingerprint> FingerprintPath(const std::string& path);

class ImageSource : public DiskSource {
 public:
  static Result<std::unique_ptr<ImageSource>> Open(const std::string& path);

  const std::string& path() const { return path_; }
  const std::string& description() const override { return path_; }
  uint64_t size() const override { return size_; }
  bool is_block_device() const { return block_device_; }

  // True if [begin, end) may hold data; false if it is entirely a hole.
  // Not thread-safe (caches the last data extent found).
  Result<bool> RangeHasData(uint64_t begin, uint64_t end);
  // Reads exactly `len` bytes at `offset`. Thread-safe.
  Status Read(uint64_t offset, uint8_t* buf, size_t len) const;
  Result<SourceFingerprint> Fingerprint() const;

  // DiskSource: holes from the allocation map; changed = fingerprint moved.
  Result<RangeState> Classify(uint64_t begin, uint64_t end) override;
  Status Read(uint64_t offset, uint8_t* buf, size_t len) override {
    return static_cast<const ImageSource*>(this)->Read(offset, buf, len);
  }
  Result<bool> ChangedDuringRead() override;
  std::string consistency_reason() const override;

 private:
  ImageSource() = default;
  std::string path_;
  UniqueFd fd_;
  uint64_t size_ = 0;
  bool block_device_ = false;
  bool seek_data_ = true;
  SourceFingerprint opened_;
  uint64_t cached_from_ = 1, cached_next_ = 0;  // SEEK_DATA(cached_from_)
  uint64_t data_end_ = 0;  // SEEK_HOLE(cached_next_): the cache ends here
};

}  // namespace haven::snapshot

#endif  // HAVEN_SNAPSHOT_IMAGE_SOURCE_H_
