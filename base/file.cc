#include "base/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <random>

namespace haven {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Result<UniqueFd> OpenFile(const std::string& path, int flags, int mode) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) return NotFound(path + ": no such file or directory");
    return ErrnoStatus("open " + path, err);
  }
  return UniqueFd(fd);
}

Status PWriteAll(int fd, const uint8_t* data, size_t len, uint64_t offset,
                 const std::string& what) {
  while (len > 0) {
    ssize_t n = ::pwrite(fd, data, len, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("write " + what, errno);
    }
    data += n;
    len -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return OkStatus();
}

Status PReadExact(int fd, uint8_t* data, size_t len, uint64_t offset,
                  const std::string& what) {
  while (len > 0) {
    ssize_t n = ::pread(fd, data, len, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("read " + what, errno);
    }
    if (n == 0) return DataLoss(what + ": file is shorter than expected");
    data += n;
    len -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return OkStatus();
}

Status FsyncFd(int fd, const std::string& what) {
  if (::fsync(fd) != 0) return ErrnoStatus("fsync " + what, errno);
  return OkStatus();
}

Status FsyncDir(const std::string& dir) {
  HAVEN_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(dir, O_RDONLY | O_DIRECTORY));
  return FsyncFd(fd.get(), dir);
}

namespace {

std::string TempNameFor(const std::string& path) {
  std::random_device rd;
  return path + ".tmp-" + std::to_string(::getpid()) + "-" +
         std::to_string(rd());
}

Status WriteTemp(const std::string& tmp, ByteSpan data, int mode) {
  HAVEN_ASSIGN_OR_RETURN(UniqueFd fd,
                         OpenFile(tmp, O_WRONLY | O_CREAT | O_EXCL, mode));
  Status s = PWriteAll(fd.get(), data.data(), data.size(), 0, tmp);
  if (s.ok()) s = FsyncFd(fd.get(), tmp);
  if (!s.ok()) ::unlink(tmp.c_str());
  return s;
}

}  // namespace

Status WriteFileAtomic(const std::string& path, ByteSpan data, int mode) {
  std::string tmp = TempNameFor(path);
  HAVEN_RETURN_IF_ERROR(WriteTemp(tmp, data, mode));
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus("rename to " + path, err);
  }
  return FsyncDir(std::filesystem::path(path).parent_path().string());
}

Status WriteFileExclusive(const std::string& path, ByteSpan data, int mode) {
  std::string tmp = TempNameFor(path);
  HAVEN_RETURN_IF_ERROR(WriteTemp(tmp, data, mode));
  // link() fails with EEXIST instead of replacing, unlike rename().
  if (::link(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    if (err == EEXIST) return AlreadyExists(path + " already exists");
    return ErrnoStatus("link to " + path, err);
  }
  ::unlink(tmp.c_str());
  return FsyncDir(std::filesystem::path(path).parent_path().string());
}

Result<Bytes> ReadFile(const std::string& path, size_t max_size) {
  HAVEN_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_RDONLY));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus("stat " + path, errno);
  if (static_cast<uint64_t>(st.st_size) > max_size)
    return DataLoss(path + ": file is " + std::to_string(st.st_size) +
                    " bytes, more than the limit of " +
                    std::to_string(max_size));
  Bytes data(static_cast<size_t>(st.st_size));
  HAVEN_RETURN_IF_ERROR(PReadExact(fd.get(), data.data(), data.size(), 0, path));
  return data;
}

Status MakeDirs(const std::string& path, int mode) {
  std::filesystem::path p(path);
  if (std::filesystem::is_directory(p)) return OkStatus();
  if (p.has_parent_path() && p.parent_path() != p)
    HAVEN_RETURN_IF_ERROR(MakeDirs(p.parent_path().string(), mode));
  if (::mkdir(path.c_str(), static_cast<mode_t>(mode)) != 0 && errno != EEXIST)
    return ErrnoStatus("mkdir " + path, errno);
  if (p.has_parent_path())
    return FsyncDir(p.parent_path().empty() ? "." : p.parent_path().string());
  return OkStatus();
}

}  // namespace haven
