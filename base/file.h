// POSIX file helpers with the durability steps Haven's write ordering needs.
#ifndef HAVEN_BASE_FILE_H_
#define HAVEN_BASE_FILE_H_

#include <string>

#include "base/bytes.h"
#include "base/status.h"

namespace haven {

// Owns a file descriptor; closes it on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

Result<UniqueFd> OpenFile(const std::string& path, int flags, int mode = 0644);

// Writes all of `data` at `offset`, retrying short writes and EINTR.
Status PWriteAll(int fd, const uint8_t* data, size_t len, uint64_t offset,
                 const std::string& what);
// Reads exactly `len` bytes at `offset`; a short read is reported as DataLoss
// (the file is shorter than something that named it claims).
Status PReadExact(int fd, uint8_t* data, size_t len, uint64_t offset,
                  const std::string& what);

Status FsyncFd(int fd, const std::string& what);
Status FsyncDir(const std::string& dir);

// Writes `data` to `path` durably: temp file in the same directory, fsync,
// rename over `path`, fsync the directory. Readers see the old or the new
// content, never a mix.
Status WriteFileAtomic(const std::string& path, ByteSpan data,
                       int mode = 0644);
// Like WriteFileAtomic but fails with AlreadyExists if `path` exists.
Status WriteFileExclusive(const std::string& path, ByteSpan data,
                          int mode = 0644);

// Reads a whole file, refusing files over `max_size` bytes.
Result<Bytes> ReadFile(const std::string& path, size_t max_size);

// mkdir -p; fsyncs each directory it creates and its parent.
Status MakeDirs(const std::string& path, int mode = 0700);

}  // namespace haven

#endif  // HAVEN_BASE_FILE_H_
