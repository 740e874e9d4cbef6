#include "snapshot/image_source.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace haven::snapshot {

Result<std::unique_ptr<ImageSource>> ImageSource::Open(
    const std::string& path) {
  std::unique_ptr<ImageSource> s(new ImageSource);
  s->path_ = path;
  HAVEN_ASSIGN_OR_RETURN(s->fd_, OpenFile(path, O_RDONLY));
  struct stat st;
  if (::fstat(s->fd_.get(), &st) != 0)
    return ErrnoStatus("stat " + path, errno);
  if (S_ISBLK(st.st_mode)) {
    uint64_t bytes = 0;
    if (::ioctl(s->fd_.get(), BLKGETSIZE64, &bytes) != 0)
      return ErrnoStatus("size of block device " + path, errno);
    s->size_ = bytes;
    s->block_device_ = true;
    s->seek_data_ = false;  // block devices have no allocation map here
  } else if (S_ISREG(st.st_mode)) {
    s->size_ = static_cast<uint64_t>(st.st_size);
  } else {
    return InvalidArgument(path +
                           " is neither a regular file nor a block device");
  }
  ::posix_fadvise(s->fd_.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  HAVEN_ASSIGN_OR_RETURN(s->opened_, s->Fingerprint());
  return s;
}

Result<bool> ImageSource::RangeHasData(uint64_t begin, uint64_t end) {
  if (!seek_data_) return true;
  // The cache describes [cached_from_, data_end_): a hole up to
  // cached_next_, then data. Queries in increasing order cost two lseeks
  // per extent, not one per query.
  if (!(begin >= cached_from_ && begin < data_end_)) {
    off_t r = ::lseek(fd_.get(), static_cast<off_t>(begin), SEEK_DATA);
    if (r < 0) {
      if (errno == ENXIO) {
        r = static_cast<off_t>(size_);  // no data from here to the end
      } else if (errno == EINVAL || errno == EOPNOTSUPP) {
        seek_data_ = false;  // file system without SEEK_DATA: read everything
        return true;
      } else {
        return ErrnoStatus("SEEK_DATA on " + path_, errno);
      }
    }
    uint64_t hole = size_;
    if (static_cast<uint64_t>(r) < size_) {
      off_t h = ::lseek(fd_.get(), r, SEEK_HOLE);
      if (h < 0) return ErrnoStatus("SEEK_HOLE on " + path_, errno);
      hole = static_cast<uint64_t>(h);
    }
    cached_from_ = begin;
    cached_next_ = static_cast<uint64_t>(r);
    data_end_ = std::max(hole, cached_next_ + 1);
  }
  return cached_next_ < end;
}

Status ImageSource::Read(uint64_t offset, uint8_t* buf, size_t len) const {
  Status s = PReadExact(fd_.get(), buf, len, offset, path_);
  if (!s.ok() && s.code() == Code::kDataLoss)
    return IoError(path_ + " shrank while it was read (offset " +
                   std::to_string(offset) + ")");
  return s;
}

SourceFingerprint FingerprintOf(const struct stat& st) {
  SourceFingerprint f;
  f.dev = st.st_dev;
  f.ino = st.st_ino;
  f.size = static_cast<uint64_t>(st.st_size);
  f.mtime_ns = st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec;
  f.ctime_ns = st.st_ctim.tv_sec * 1000000000ll + st.st_ctim.tv_nsec;
  return f;
}

Result<SourceFingerprint> FingerprintPath(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoStatus("stat " + path, errno);
  return FingerprintOf(st);
}

Result<SourceFingerprint> ImageSource::Fingerprint() const {
  struct stat st;
  if (::fstat(fd_.get(), &st) != 0) return ErrnoStatus("stat " + path_, errno);
  SourceFingerprint f = FingerprintOf(st);
  if (block_device_) f.size = size_;
  return f;
}

Result<RangeState> ImageSource::Classify(uint64_t begin, uint64_t end) {
  HAVEN_ASSIGN_OR_RETURN(bool data, RangeHasData(begin, end));
  return data ? RangeState::kRead : RangeState::kHole;
}

Result<bool> ImageSource::ChangedDuringRead() {
  HAVEN_ASSIGN_OR_RETURN(SourceFingerprint now, Fingerprint());
  return !(now == opened_);
}

std::string ImageSource::consistency_reason() const {
  return block_device_ ? "block device read directly; its size did not change"
                       : "image file read directly; unchanged during the read";
}

}  // namespace haven::snapshot
