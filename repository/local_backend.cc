#include "repository/local_backend.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "base/file.h"

namespace haven::repository {
namespace {

namespace fs = std::filesystem;

constexpr size_t kWriteBufferSize = 1 << 20;  // appends go out in 1 MiB runs

// Config is world-readable as it always was (it holds no secret); every
// other object is private to the owner.
int ModeFor(const std::string& name) { return name == "config" ? 0644 : 0600; }

// Temporary files: whole-object writes leave NAME.tmp-PID-N (base/file.h),
// streaming writes *.tmp under tmp/. Neither is an object.
bool IsTempName(const std::string& file) {
  return file.find(".tmp") != std::string::npos;
}

// The local caches and scratch space that share the directory (index/,
// index.damaged-*, locks/, tmp/) are not objects.
bool IsLocalCache(const std::string& name) {
  return name.rfind("index", 0) == 0 || name.rfind("locks/", 0) == 0 ||
         name.rfind("tmp/", 0) == 0;
}

std::string Parent(const std::string& path) {
  return fs::path(path).parent_path().string();
}

// The folder of a key appears on first use (protected/ did not exist in
// older repositories).
// st_mtim in ns since the epoch; never 0 (0 means "unknown", backend.h).
int64_t MtimeNs(const struct stat& st) {
  int64_t ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  return ns == 0 ? 1 : ns;
}

Status EnsureParent(const std::string& path) {
  std::string dir = Parent(path);
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) return OkStatus();
  return MakeDirs(dir);
}

class LocalReader : public ObjectReader {
 public:
  LocalReader(UniqueFd fd, uint64_t size) : fd_(std::move(fd)), size_(size) {}
  uint64_t size() const override { return size_; }
  Status ReadAt(uint64_t offset, size_t len, uint8_t* out,
                const std::string& what) override {
    return PReadExact(fd_.get(), out, len, offset, what);
  }

 private:
  UniqueFd fd_;
  uint64_t size_;
};

class LocalWriter : public ObjectWriter {
 public:
  static Result<std::unique_ptr<LocalWriter>> Create(std::string tmp_path,
                                                     std::string final_path) {
    std::unique_ptr<LocalWriter> w(new LocalWriter);
    // A live writer holds LOCK_EX; a cleaner (another process opening the
    // repository) that gets it knows the writer is gone and unlinks the
    // file. Between our create and our lock a cleaner may get there first:
    // then we wait for its lock and find the file unlinked, and create it
    // again.
    for (int attempt = 0;; ++attempt) {
      HAVEN_ASSIGN_OR_RETURN(
          w->fd_, OpenFile(tmp_path, O_RDWR | O_CREAT | O_EXCL, 0600));
      int r;
      do r = ::flock(w->fd_.get(), LOCK_EX);
      while (r != 0 && errno == EINTR);
      if (r != 0) return ErrnoStatus("lock " + tmp_path, errno);
      struct stat st;
      if (::fstat(w->fd_.get(), &st) != 0)
        return ErrnoStatus("stat " + tmp_path, errno);
      if (st.st_nlink > 0) break;
      if (attempt == 4)
        return Unavailable(tmp_path + " was removed by another process's "
                           "cleanup five times in a row");
    }
    w->tmp_path_ = std::move(tmp_path);
    w->final_path_ = std::move(final_path);
    return w;
  }
  ~LocalWriter() override {
    if (!committed_ && !tmp_path_.empty()) ::unlink(tmp_path_.c_str());
  }

  Status Append(ByteSpan data) override {
    buffer_.insert(buffer_.end(), data.begin(), data.end());
    if (buffer_.size() >= kWriteBufferSize) return FlushBuffer();
    return OkStatus();
  }
  uint64_t size() const override { return written_ + buffer_.size(); }

  Status Commit() override {
    HAVEN_RETURN_IF_ERROR(FlushBuffer());
    HAVEN_RETURN_IF_ERROR(FsyncFd(fd_.get(), tmp_path_));
    HAVEN_RETURN_IF_ERROR(EnsureParent(final_path_));
    // link() refuses to replace an existing object, unlike rename().
    if (::link(tmp_path_.c_str(), final_path_.c_str()) != 0) {
      if (errno == EEXIST) return AlreadyExists(final_path_ + " already exists");
      return ErrnoStatus("link to " + final_path_, errno);
    }
    committed_ = true;
    ::unlink(tmp_path_.c_str());
    return FsyncDir(Parent(final_path_));
  }

 private:
  LocalWriter() = default;
  Status FlushBuffer() {
    if (buffer_.empty()) return OkStatus();
    HAVEN_RETURN_IF_ERROR(PWriteAll(fd_.get(), buffer_.data(), buffer_.size(),
                                    written_, tmp_path_));
    // Start writeback now so the fsync in Commit() has little left to do.
    ::sync_file_range(fd_.get(), static_cast<off_t>(written_),
                      static_cast<off_t>(buffer_.size()),
                      SYNC_FILE_RANGE_WRITE);
    written_ += buffer_.size();
    buffer_.clear();
    return OkStatus();
  }

  std::string tmp_path_, final_path_;
  UniqueFd fd_;
  uint64_t written_ = 0;
  Bytes buffer_;
  bool committed_ = false;
};

}  // namespace

LocalBackend::LocalBackend(std::string root) : root_(std::move(root)) {
  while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
}

Status LocalBackend::CreateLayout() const {
  for (const char* sub : {"keys", "packs", "snapshots", "tmp"})
    HAVEN_RETURN_IF_ERROR(MakeDirs(root_ + "/" + sub));
  for (int i = 0; i < 256; ++i) {
    char name[3];
    std::snprintf(name, sizeof name, "%02x", i);
    std::string p = root_ + "/packs/" + name;
    if (::mkdir(p.c_str(), 0700) != 0 && errno != EEXIST)
      return ErrnoStatus("mkdir " + p, errno);
  }
  return FsyncDir(root_ + "/packs");
}

Result<std::vector<ObjectInfo>> LocalBackend::List(
    const std::string& prefix) const {
  if (!prefix.empty()) {
    if (prefix.back() != '/')
      return InvalidArgument("list prefix '" + prefix +
                             "' is not a folder (it must end in '/')");
    HAVEN_RETURN_IF_ERROR(
        ValidateObjectName(prefix.substr(0, prefix.size() - 1)));
  }
  std::vector<ObjectInfo> out;
  std::error_code ec;
  if (!fs::is_directory(root_, ec))
    return IoError("list " + root_ + ": " +
                   (ec ? ec.message() : "No such file or directory"));
  std::string top = prefix.empty() ? root_ : root_ + "/" + prefix;
  if (!fs::exists(top, ec)) return out;
  fs::recursive_directory_iterator it(top, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    // Paths under `top` all start with root_ + "/" (root_ has no trailing
    // slash), so the key is the rest; fs::relative would stat every parent.
    std::string name = it->path().string().substr(root_.size() + 1);
    std::error_code entry_ec;  // an entry removed while listing is skipped
    if (it->is_directory(entry_ec)) {
      if (IsLocalCache(name + "/")) it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file(entry_ec)) continue;
    std::string file = it->path().filename().string();
    if (IsTempName(file) || !ValidateObjectName(name).ok() ||
        IsLocalCache(name))
      continue;
    // One stat for size and change marker; a file removed meanwhile is
    // skipped.
    struct stat st;
    if (::stat(it->path().c_str(), &st) != 0) continue;
    out.push_back({std::move(name), static_cast<uint64_t>(st.st_size),
                   MtimeNs(st)});
  }
  if (ec) return IoError("list " + top + ": " + ec.message());
  return out;
}

Result<uint64_t> LocalBackend::Stat(const std::string& name) const {
  HAVEN_ASSIGN_OR_RETURN(ObjectInfo info, Info(name));
  return info.size;
}

Result<ObjectInfo> LocalBackend::Info(const std::string& name) const {
  HAVEN_RETURN_IF_ERROR(ValidateObjectName(name));
  struct stat st;
  std::string path = PathOf(name);
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return NotFound("no object " + name + " in " + root_);
    return ErrnoStatus("stat " + path, errno);
  }
  return ObjectInfo{name, static_cast<uint64_t>(st.st_size), MtimeNs(st)};
}

Result<std::unique_ptr<ObjectReader>> LocalBackend::OpenReader(
    const std::string& name) const {
  HAVEN_RETURN_IF_ERROR(ValidateObjectName(name));
  return OpenLocalFile(PathOf(name));
}

Result<std::unique_ptr<ObjectReader>> OpenLocalFile(const std::string& path) {
  HAVEN_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_RDONLY));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus("stat " + path, errno);
  return std::unique_ptr<ObjectReader>(
      new LocalReader(std::move(fd), static_cast<uint64_t>(st.st_size)));
}

Status LocalBackend::WriteAtomic(const std::string& name, ByteSpan data,
                                 WriteMode mode) {
  HAVEN_RETURN_IF_ERROR(ValidateObjectName(name));
  std::string path = PathOf(name);
  HAVEN_RETURN_IF_ERROR(EnsureParent(path));
  return mode == WriteMode::kCreate
             ? WriteFileExclusive(path, data, ModeFor(name))
             : WriteFileAtomic(path, data, ModeFor(name));
}

Result<std::unique_ptr<ObjectWriter>> LocalBackend::NewObjectWriter(
    const std::string& name) {
  HAVEN_RETURN_IF_ERROR(ValidateObjectName(name));
  // Packs keep the temporary name they always had (tmp/pack-<name>.tmp).
  std::string base = fs::path(name).filename().string();
  std::string flat = name.rfind("packs/", 0) == 0 ? "pack-" + base : name;
  for (char& c : flat)
    if (c == '/') c = '-';
  HAVEN_ASSIGN_OR_RETURN(
      auto w, LocalWriter::Create(root_ + "/tmp/" + flat + ".tmp", PathOf(name)));
  return std::unique_ptr<ObjectWriter>(std::move(w));
}

Status LocalBackend::Delete(const std::string& name) {
  HAVEN_RETURN_IF_ERROR(ValidateObjectName(name));
  std::string path = PathOf(name);
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return NotFound("no object " + name + " in " + root_);
    return ErrnoStatus("remove " + path, errno);
  }
  return FsyncDir(Parent(path));
}

}  // namespace haven::repository
