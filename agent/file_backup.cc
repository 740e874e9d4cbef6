#include "agent/file_backup.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <boost/filesystem.hpp>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>

#include "agent/image_backup.h"
#include "base/file.h"
#include "base/glob.h"
#include "base/process.h"
#include "base/time.h"
#include "repository/file_tree.h"
#include "repository/latest_point.h"

namespace haven::agent {
namespace {

namespace fs = boost::filesystem;
using repository::ChunkId;
using repository::ChunkType;
using repository::FileRecord;
using repository::FileType;
using repository::Manifest;
using repository::Repository;

constexpr size_t kWindow = 4096;  // entries between the walker and the catalog
constexpr size_t kMaxWarnings = 1000;  // kept in the manifest's notes
constexpr char kCacheTag[] = "Signature: 8a477f597d28d172789f06886806bc55";

int64_t Ns(const struct timespec& t) {
  return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

std::string Why(int err) { return std::strerror(err); }

// What a parent point knew of a regular file.
// What a parent point knew of an entry: a regular file whose size, mtime,
// ctime and inode match is not read again; any entry whose ctime and inode
// match keeps its xattrs without asking (setting one changes the ctime).
struct Known {
  FileType type;
  uint8_t flags;
  uint64_t size, inode;
  int64_t mtime_ns, ctime_ns;
  uint64_t first, count;
  std::vector<std::pair<uint64_t, uint64_t>> extents;
  std::vector<std::pair<std::string, std::string>> xattrs;
};

// One catalog entry on its way from the walker to the catalog.
struct Item {
  FileRecord rec;
  enum How { kNoContent, kReuse, kRead } how = kNoContent;
  std::vector<ChunkId> ids;  // kReuse: the parent's; kRead: by a worker
  std::string warning;        // set by a worker
  bool done = false;
};

// Reads one file's data ranges into chunks (a worker's job).
class FileReader {
 public:
  FileReader(PointSink& sink, const FastCdc& cdc, CancelToken cancel)
      : sink_(sink),
        cdc_(cdc),
        cancel_(std::move(cancel)),
        ctx_(sink.compression_level()) {
    buf_.resize(2 * static_cast<size_t>(cdc.params().max_size));
  }

  // Fills item.ids and item.rec's extents/size; a problem becomes
  // item.warning (and a flag), never an error. An error stops the backup.
  Status Read(Item& item, std::atomic<uint64_t>& bytes_read) {
    FileRecord& r = item.rec;
    int fd = open(r.path.c_str(),
                  O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME | O_NONBLOCK);
    if (fd < 0 && errno == EPERM)  // O_NOATIME needs ownership
      fd = open(r.path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return Unreadable(item, "cannot open: " + Why(errno));
    UniqueFd file(fd);
    for (int attempt = 0;; ++attempt) {
      struct stat before, after;
      if (fstat(fd, &before) != 0)
        return Unreadable(item, "cannot stat: " + Why(errno));
      if (!S_ISREG(before.st_mode) || before.st_ino != r.inode)
        return Unreadable(item, "replaced while the backup ran");
      item.ids.clear();
      r.extents.clear();
      Status s = ReadRanges(fd, before, item, bytes_read);
      if (!s.ok()) {
        if (s.code() == Code::kIoError) return Unreadable(item, s.message());
        return s;
      }
      if (fstat(fd, &after) != 0)
        return Unreadable(item, "cannot stat: " + Why(errno));
      const bool same = after.st_size == before.st_size &&
                        Ns(after.st_mtim) == Ns(before.st_mtim) &&
                        Ns(after.st_ctim) == Ns(before.st_ctim) &&
                        r.size == static_cast<uint64_t>(before.st_size);
      // The record describes what was read: a later run compares with it.
      r.mtime_ns = Ns(before.st_mtim);
      r.ctime_ns = Ns(before.st_ctim);
      if (same) return OkStatus();
      if (attempt == 1) {
        r.flags |= repository::kFlagChanged;
        item.warning = "changed while it was read (twice); the content kept "
                       "may mix old and new data";
        return OkStatus();
      }
    }
  }

 private:
  Status Unreadable(Item& item, const std::string& why) {
    item.rec.flags |= repository::kFlagPartial;
    item.rec.extents.clear();
    item.ids.clear();
    item.warning = why;
    return OkStatus();
  }

  // The file's data ranges: the whole file unless it has holes.
  std::vector<std::pair<uint64_t, uint64_t>> DataRanges(
      int fd, const struct stat& st) {
    const uint64_t size = st.st_size;
    std::vector<std::pair<uint64_t, uint64_t>> out;
    if (size == 0) return out;
    if (static_cast<uint64_t>(st.st_blocks) * 512 >= size) {
      out.push_back({0, size});
      return out;
    }
    off_t pos = 0;
    while (static_cast<uint64_t>(pos) < size) {
      off_t data = lseek(fd, pos, SEEK_DATA);
      if (data < 0) break;  // ENXIO: only a hole is left
      off_t hole = lseek(fd, data, SEEK_HOLE);
      if (hole < 0) hole = static_cast<off_t>(size);
      hole = std::min<off_t>(hole, static_cast<off_t>(size));
      if (hole > data)
        out.push_back({static_cast<uint64_t>(data),
                       static_cast<uint64_t>(hole - data)});
      pos = hole;
    }
    return out;
  }

  Status ReadRanges(int fd, const struct stat& st, Item& item,
                    std::atomic<uint64_t>& bytes_read) {
    FileRecord& r = item.rec;
    r.size = st.st_size;
    auto ranges = DataRanges(fd, st);
    size_t have = 0;  // bytes in buf_ not yet cut
    auto emit = [&](bool last) -> Status {
      size_t pos = 0;
      while (pos < have) {
        size_t n = cdc_.NextCut(buf_.data() + pos, have - pos, last);
        if (n == 0) break;
        ByteSpan chunk(buf_.data() + pos, n);
        ChunkId id = sink_.IdFor(ChunkType::kData, chunk);
        HAVEN_RETURN_IF_ERROR(
            sink_.Put(ChunkType::kData, id, chunk, ctx_).status());
        item.ids.push_back(id);
        pos += n;
      }
      std::memmove(buf_.data(), buf_.data() + pos, have - pos);
      have -= pos;
      return OkStatus();
    };
    for (const auto& [offset, length] : ranges) {
      uint64_t done = 0;
      while (done < length) {
        size_t want = static_cast<size_t>(
            std::min<uint64_t>(buf_.size() - have, length - done));
        ssize_t got = pread(fd, buf_.data() + have, want,
                            static_cast<off_t>(offset + done));
        if (got < 0) {
          if (errno == EINTR) continue;
          return IoError("read failed at offset " +
                         std::to_string(offset + done) + ": " + Why(errno));
        }
        if (got == 0) {  // shrank meanwhile: keep what there is
          r.size = offset + done;
          break;
        }
        have += static_cast<size_t>(got);
        done += static_cast<uint64_t>(got);
        bytes_read += static_cast<uint64_t>(got);
        if (have == buf_.size()) {
          HAVEN_RETURN_IF_ERROR(emit(false));
          HAVEN_RETURN_IF_ERROR(cancel_.Check("the file backup"));
        }
      }
      if (done > 0) r.extents.push_back({offset, done});
      if (done < length) break;
    }
    HAVEN_RETURN_IF_ERROR(emit(true));
    return OkStatus();
  }

  PointSink& sink_;
  const FastCdc& cdc_;
  CancelToken cancel_;
  repository::WriteContext ctx_;
  Bytes buf_;
};

// Owner and group names, looked up once each.
class Names {
 public:
  const std::string& User(uint32_t uid) {
    auto it = users_.find(uid);
    if (it != users_.end()) return it->second;
    struct passwd pw, *found = nullptr;
    char buf[4096];
    std::string name;
    if (getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found)
      name = pw.pw_name;
    return users_.emplace(uid, name.substr(0, 255)).first->second;
  }
  const std::string& Group(uint32_t gid) {
    auto it = groups_.find(gid);
    if (it != groups_.end()) return it->second;
    struct group gr, *found = nullptr;
    char buf[4096];
    std::string name;
    if (getgrgid_r(gid, &gr, buf, sizeof buf, &found) == 0 && found)
      name = gr.gr_name;
    return groups_.emplace(gid, name.substr(0, 255)).first->second;
  }

 private:
  std::unordered_map<uint32_t, std::string> users_, groups_;
};

// Extended attributes (POSIX ACLs among them), read without following a
// symlink. Empty when the file system has none.
Status ReadXattrs(const std::string& path,
                  std::vector<std::pair<std::string, std::string>>& out) {
  out.clear();
  std::string names(256, '\0');
  ssize_t n;
  while ((n = llistxattr(path.c_str(), names.data(), names.size())) < 0) {
    if (errno == ENOTSUP || errno == ENOSYS) return OkStatus();
    if (errno != ERANGE) return ErrnoStatus("list xattrs", errno);
    ssize_t need = llistxattr(path.c_str(), nullptr, 0);
    if (need < 0) return ErrnoStatus("list xattrs", errno);
    names.resize(static_cast<size_t>(need) + 1);
  }
  names.resize(static_cast<size_t>(n));
  for (size_t pos = 0; pos < names.size();) {
    std::string name(names.c_str() + pos);
    pos += name.size() + 1;
    if (name.empty()) continue;
    std::string value(256, '\0');
    ssize_t v;
    while ((v = lgetxattr(path.c_str(), name.c_str(), value.data(),
                          value.size())) < 0) {
      if (errno == ENODATA) break;  // removed meanwhile
      if (errno != ERANGE) return ErrnoStatus("read xattr " + name, errno);
      ssize_t need = lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
      if (need < 0) return ErrnoStatus("read xattr " + name, errno);
      value.resize(static_cast<size_t>(need) + 1);
    }
    if (v < 0) continue;
    value.resize(static_cast<size_t>(v));
    out.emplace_back(std::move(name), std::move(value));
  }
  std::sort(out.begin(), out.end());
  return OkStatus();
}

bool IsCacheDir(const std::string& dir) {
  int fd = open((dir + "/CACHEDIR.TAG").c_str(),
                O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return false;
  UniqueFd f(fd);
  char buf[sizeof kCacheTag - 1];
  return read(fd, buf, sizeof buf) == static_cast<ssize_t>(sizeof buf) &&
         std::memcmp(buf, kCacheTag, sizeof buf) == 0;
}

std::string JoinPath(const std::string& dir, const std::string& name) {
  return dir == "/" ? "/" + name : dir + "/" + name;
}

class Backup {
 public:
  Backup(PointSink& sink, const FileBackupOptions& o, ExcludeRules rules,
         FastCdc cdc, FastCdc catalog_cdc)
      : sink_(sink),
        o_(o),
        rules_(std::move(rules)),
        cdc_(cdc),
        catalog_cdc_(catalog_cdc),
        tree_ctx_(sink.compression_level()),
        content_(StoreNode()),
        catalog_(StoreNode()) {}

  Result<FileBackupResult> Run(const std::vector<std::string>& roots,
                               const std::optional<Manifest>& parent);
  // Finishes both streams, flushes, and writes the manifest.
  Status Commit(const FileBackupOptions& o, const std::string& time,
                const std::vector<std::string>& roots,
                const std::optional<Manifest>& parent, double start,
                FileBackupResult& result);

 private:
  repository::StoreNodeFn StoreNode() {
    return [this](ByteSpan node) -> Result<ChunkId> {
      ChunkId id = sink_.IdFor(ChunkType::kTree, node);
      HAVEN_RETURN_IF_ERROR(
          sink_.Put(ChunkType::kTree, id, node, tree_ctx_).status());
      return id;
    };
  }
  Status LoadParent(const Manifest& parent);
  // The parent's chunk ids of an unchanged file, into `ids`; false when one
  // of them is gone (lost and cleared by a repair, or no longer in the
  // index): the file is then read again rather than referencing a hole.
  Result<bool> Reuse(const Known& k, std::vector<ChunkId>& ids);
  Status Walk(const std::string& path, bool full, int depth);
  // `dirfd`: `dir` opened, or -1 (then `dir`/`name` is looked up by path).
  Status Enter(const std::string& path, int dirfd, const std::string& name,
               bool full, int depth);
  Status Add(std::unique_ptr<Item> item);
  Status Drain(bool wait_all);
  Status Emit(Item& item);
  Status CutCatalog(bool last);
  void Warn(const std::string& path, const std::string& why);
  void WorkerLoop();
  void Fail(const Status& s);
  void Progress(bool final);

  PointSink& sink_;
  const FileBackupOptions& o_;
  ExcludeRules rules_;
  FastCdc cdc_, catalog_cdc_;
  repository::WriteContext tree_ctx_;
  repository::TreeWriter content_, catalog_;
  Names names_;
  FileBackupResult result_;
  std::set<std::string> roots_, ancestors_;
  std::vector<std::string> mounts_;  // not entered (--one-file-system)
  dev_t root_dev_ = 0;

  // Parent point: what it knew of each file, and its content list.
  std::unordered_map<std::string, Known> known_;
  std::unique_ptr<repository::TreeReader> parent_content_;
  repository::ReadContext parent_ctx_;
  // (dev, inode) of files with several links -> the path that holds them.
  std::map<std::pair<uint64_t, uint64_t>, std::string> links_;

  // Walker -> workers -> catalog, in order.
  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  std::deque<std::unique_ptr<Item>> order_;
  std::deque<Item*> work_;
  bool stop_ = false;
  Status error_;
  std::vector<std::thread> threads_;

  Bytes catalog_buf_;
  uint64_t content_count_ = 0, content_bytes_ = 0, catalog_bytes_ = 0;
  std::atomic<uint64_t> bytes_read_{0};
  uint64_t done_bytes_ = 0;
  double start_ = MonotonicSeconds(), last_progress_ = 0;
};

Status Backup::LoadParent(const Manifest& parent) {
  HAVEN_RETURN_IF_ERROR(
      sink_.ForEachRecord(parent, [&](FileRecord&& r) -> Status {
        known_.emplace(std::move(r.path),
                       Known{r.type, r.flags, r.size, r.inode, r.mtime_ns,
                             r.ctime_ns, r.content_first, r.content_count,
                             std::move(r.extents), std::move(r.xattrs)});
        return OkStatus();
      }));
  const repository::DiskManifest* content = parent.FindStream("content");
  parent_content_ = std::make_unique<repository::TreeReader>(
      content->tree, sink_.NodeLoader(parent_ctx_));
  return OkStatus();
}

Result<bool> Backup::Reuse(const Known& k, std::vector<ChunkId>& ids) {
  ids.clear();
  for (uint64_t i = 0; i < k.count; ++i) {
    HAVEN_ASSIGN_OR_RETURN(ChunkId id, parent_content_->Get(k.first + i));
    if (id.IsZero()) return false;
    HAVEN_ASSIGN_OR_RETURN(bool stored, sink_.Has(id));
    if (!stored) return false;
    ids.push_back(id);
  }
  return true;
}

void Backup::Warn(const std::string& path, const std::string& why) {
  std::string w = path + ": " + why;
  if (o_.on_warning) o_.on_warning(w);
  result_.warnings.push_back(std::move(w));
}

void Backup::Fail(const Status& s) {
  std::lock_guard<std::mutex> l(mu_);
  if (error_.ok()) error_ = s;
  stop_ = true;
  work_cv_.notify_all();
  done_cv_.notify_all();
}

void Backup::WorkerLoop() {
  FileReader reader(sink_, cdc_, o_.cancel);
  while (true) {
    Item* item;
    {
      std::unique_lock<std::mutex> l(mu_);
      work_cv_.wait(l, [&] { return stop_ || !work_.empty(); });
      if (work_.empty()) return;  // stopping
      item = work_.front();
      work_.pop_front();
    }
    Status s = reader.Read(*item, bytes_read_);
    if (!s.ok()) return Fail(s.WithContext(item->rec.path));
    std::lock_guard<std::mutex> l(mu_);
    item->done = true;
    done_cv_.notify_all();
  }
}

Status Backup::Add(std::unique_ptr<Item> item) {
  if (o_.cancel.cancelled()) {
    Status cancelled = o_.cancel.Check("the file backup");
    Fail(cancelled);
    return cancelled;
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!error_.ok()) return error_;
    if (item->how == Item::kRead) {
      work_.push_back(item.get());
      work_cv_.notify_one();
    } else {
      item->done = true;
    }
    order_.push_back(std::move(item));
  }
  return Drain(false);
}

// Hands finished items at the head of the queue to the catalog; waits for
// the head when the window is full (or for all, at the end).
Status Backup::Drain(bool wait_all) {
  while (true) {
    std::unique_ptr<Item> head;
    {
      std::unique_lock<std::mutex> l(mu_);
      if (wait_all || order_.size() >= kWindow)
        done_cv_.wait(l, [&] {
          return !error_.ok() || order_.empty() || order_.front()->done;
        });
      if (!error_.ok()) return error_;
      if (order_.empty() || !order_.front()->done) return OkStatus();
      head = std::move(order_.front());
      order_.pop_front();
    }
    HAVEN_RETURN_IF_ERROR(Emit(*head));
  }
}

Status Backup::Emit(Item& item) {
  FileRecord& r = item.rec;
  if (!item.warning.empty()) Warn(r.path, item.warning);
  r.content_first = content_count_;
  if (item.how == Item::kReuse) {
    for (const ChunkId& id : item.ids) HAVEN_RETURN_IF_ERROR(content_.Add(id));
    ++result_.files_unchanged;
  } else if (item.how == Item::kRead) {
    for (const ChunkId& id : item.ids) HAVEN_RETURN_IF_ERROR(content_.Add(id));
    r.content_count = item.ids.size();
    if (!r.partial()) ++result_.files_read;
  }
  content_count_ += r.content_count;
  if (r.type == FileType::kFile && !r.partial()) {
    content_bytes_ += r.DataBytes();
    done_bytes_ += r.size;
  }
  ++result_.entries;
  HAVEN_RETURN_IF_ERROR(repository::AppendRecord(r, catalog_buf_));
  if (catalog_buf_.size() >= 2 * catalog_cdc_.params().max_size)
    HAVEN_RETURN_IF_ERROR(CutCatalog(false));
  Progress(false);
  return OkStatus();
}

Status Backup::CutCatalog(bool last) {
  size_t pos = 0;
  while (pos < catalog_buf_.size()) {
    size_t n = catalog_cdc_.NextCut(catalog_buf_.data() + pos,
                                    catalog_buf_.size() - pos, last);
    if (n == 0) break;
    ByteSpan chunk(catalog_buf_.data() + pos, n);
    ChunkId id = sink_.IdFor(ChunkType::kData, chunk);
    HAVEN_RETURN_IF_ERROR(
        sink_.Put(ChunkType::kData, id, chunk, tree_ctx_).status());
    HAVEN_RETURN_IF_ERROR(sink_.OnCatalogChunk(chunk));
    HAVEN_RETURN_IF_ERROR(catalog_.Add(id));
    catalog_bytes_ += n;
    pos += n;
  }
  catalog_buf_.erase(catalog_buf_.begin(), catalog_buf_.begin() + pos);
  return OkStatus();
}

void Backup::Progress(bool final) {
  if (!o_.progress) return;
  double now = MonotonicSeconds();
  if (!final && now - last_progress_ < o_.progress_interval) return;
  last_progress_ = now;
  haven::Progress p = ByteProgress(done_bytes_, 0, sink_.new_stored_bytes(),
                                   now - start_, final);
  p.phase = "backup";
  p.item = o_.name;
  o_.progress(p);
}

// Records the entry `name` in directory `dir` and, for a directory that
// is backed up whole (`full`) or leads to one, what it holds.
Status Backup::Enter(const std::string& dir, int dirfd,
                     const std::string& name, bool full, int depth) {
  const std::string path = dir.empty() ? "/" : JoinPath(dir, name);
  if (full && !dir.empty() && rules_.Excluded(path)) return OkStatus();
  struct stat st;
  // Relative to the open directory: the kernel does not walk the whole
  // path again for every entry.
  if ((dirfd >= 0 ? fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW)
                  : lstat(path.c_str(), &st)) != 0) {
    if (errno == ENOENT) return OkStatus();  // deleted since it was listed
    Warn(path, "cannot stat: " + Why(errno));
    return OkStatus();
  }
  auto item = std::make_unique<Item>();
  FileRecord& r = item->rec;
  r.path = path;
  r.mode = st.st_mode & 07777;
  r.uid = st.st_uid;
  r.gid = st.st_gid;
  r.user = names_.User(st.st_uid);
  r.group = names_.Group(st.st_gid);
  r.atime_ns = Ns(st.st_atim);
  r.mtime_ns = Ns(st.st_mtim);
  r.ctime_ns = Ns(st.st_ctim);
  r.inode = st.st_ino;
  r.dev = st.st_dev;
  r.nlink = static_cast<uint32_t>(st.st_nlink);
  if (S_ISREG(st.st_mode)) {
    r.type = FileType::kFile;
    r.size = st.st_size;
    ++result_.files;
    result_.bytes += r.size;
  } else if (S_ISDIR(st.st_mode)) {
    r.type = FileType::kDir;
    ++result_.dirs;
  } else if (S_ISLNK(st.st_mode)) {
    r.type = FileType::kSymlink;
    std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
    ssize_t n = dirfd >= 0 ? readlinkat(dirfd, name.c_str(), target.data(),
                                        target.size())
                           : readlink(path.c_str(), target.data(), target.size());
    if (n < 0) {
      Warn(path, "cannot read the link: " + Why(errno));
      return OkStatus();
    }
    target.resize(static_cast<size_t>(n));
    r.target = std::move(target);
    r.size = r.target.size();
    ++result_.symlinks;
  } else if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode) ||
             S_ISBLK(st.st_mode)) {
    r.type = S_ISFIFO(st.st_mode)  ? FileType::kFifo
             : S_ISCHR(st.st_mode) ? FileType::kCharDev
                                   : FileType::kBlockDev;
    r.rdev = st.st_rdev;
    ++result_.other;
  } else {
    return OkStatus();  // sockets belong to a running program: not kept
  }
  auto known = known_.find(path);
  if (known != known_.end() && known->second.type == r.type &&
      known->second.inode == r.inode && known->second.ctime_ns == r.ctime_ns) {
    r.xattrs = known->second.xattrs;
  } else if (Status s = ReadXattrs(path, r.xattrs); !s.ok()) {
    Warn(path, s.message() + "; its extended attributes are not kept");
  }

  if (r.type == FileType::kFile) {
    if (r.nlink > 1) {
      auto [it, first] = links_.emplace(std::make_pair(r.dev, r.inode), path);
      if (!first) {  // its content is with the first path
        r.flags |= repository::kFlagHardLink;
        r.target = it->second;
        return Add(std::move(item));
      }
    }
    if (known != known_.end() && known->second.type == FileType::kFile &&
        known->second.flags == 0 && known->second.size == r.size &&
        known->second.inode == r.inode &&
        known->second.mtime_ns == r.mtime_ns &&
        known->second.ctime_ns == r.ctime_ns) {
      HAVEN_ASSIGN_OR_RETURN(bool reused,
                             Reuse(known->second, item->ids));
      if (reused) {
        item->how = Item::kReuse;
        r.content_count = known->second.count;
        r.extents = known->second.extents;
      } else {
        item->how = Item::kRead;
      }
    } else if (r.size > 0) {
      item->how = Item::kRead;
    }
    return Add(std::move(item));
  }
  if (r.type != FileType::kDir) return Add(std::move(item));

  // A directory: itself first, then what it holds.
  const bool whole = full || roots_.count(path);
  // Each path given is its own file system's top (no path lies in another).
  if (roots_.count(path)) root_dev_ = st.st_dev;
  if (full && !roots_.count(path) && o_.one_file_system &&
      st.st_dev != root_dev_) {
    mounts_.push_back(path);  // kept empty, as asked
    return Add(std::move(item));
  }
  HAVEN_RETURN_IF_ERROR(Add(std::move(item)));
  if (whole && o_.exclude_caches && IsCacheDir(path)) {
    return Enter(path, -1, "CACHEDIR.TAG", true, depth + 1);
  }
  return Walk(path, whole, depth + 1);
}

// The children of directory `path`, sorted by name: all of them when the
// directory is backed up whole, else only the roots and their ancestors.
Status Backup::Walk(const std::string& path, bool full, int depth) {
  if (depth > 4096) {
    Warn(path, "deeper than 4096 directories; its contents are not kept");
    return OkStatus();
  }
  std::vector<std::string> names;
  if (full) {
    boost::system::error_code ec;
    fs::directory_iterator it(path, ec), end;
    for (; !ec && it != end; it.increment(ec))
      names.push_back(it->path().filename().string());
    if (ec) {
      Warn(path, "cannot list: " + ec.message() +
                     "; the directory is kept without (all of) its entries");
    }
  } else {
    const std::string prefix = path == "/" ? "/" : path + "/";
    for (const auto* set : {&roots_, &ancestors_})
      for (auto it = set->lower_bound(prefix);
           it != set->end() && it->compare(0, prefix.size(), prefix) == 0;
           ++it)
        if (it->size() > prefix.size() &&
            it->find('/', prefix.size()) == std::string::npos)
          names.push_back(it->substr(prefix.size()));
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  UniqueFd dir(fd);  // -1 (not open): entries are looked up by path
  for (const std::string& name : names) {
    if (!full && !roots_.count(JoinPath(path, name)) &&
        !ancestors_.count(JoinPath(path, name)))
      continue;
    HAVEN_RETURN_IF_ERROR(Enter(path, fd, name, full, depth));
  }
  return OkStatus();
}

Result<FileBackupResult> Backup::Run(const std::vector<std::string>& roots,
                                     const std::optional<Manifest>& parent) {
  for (const std::string& r : roots) {
    roots_.insert(r);
    for (std::string_view a = repository::ParentPath(r); !a.empty();
         a = repository::ParentPath(a))
      ancestors_.insert(std::string(a));
  }
  if (parent) HAVEN_RETURN_IF_ERROR(LoadParent(*parent));
  repository::AppendCatalogHeader(catalog_buf_);

  int n = o_.threads > 0 ? o_.threads
                         : std::max(1u, std::thread::hardware_concurrency());
  for (int i = 0; i < n; ++i) threads_.emplace_back([this] { WorkerLoop(); });
  Status walked = Enter("", -1, "/", roots_.count("/") > 0, 0);
  if (walked.ok()) walked = Drain(true);
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
    if (!walked.ok() && error_.ok()) error_ = walked;
    work_.clear();
    work_cv_.notify_all();
  }
  for (auto& t : threads_) t.join();
  threads_.clear();
  if (!error_.ok()) return sink_.Abandon(error_);
  HAVEN_RETURN_IF_ERROR(CutCatalog(true));
  return result_;
}

Status Backup::Commit(const FileBackupOptions& o, const std::string& time,
                      const std::vector<std::string>& roots,
                      const std::optional<Manifest>& parent, double start,
                      FileBackupResult& result) {
  HAVEN_ASSIGN_OR_RETURN(repository::TreeRoot catalog, catalog_.Finish());
  HAVEN_ASSIGN_OR_RETURN(repository::TreeRoot content, content_.Finish());
  HAVEN_RETURN_IF_ERROR(sink_.Flush());
  // The last moment a cancel is honoured: after it, the point commits.
  HAVEN_RETURN_IF_ERROR(o.cancel.Check("the file backup"));
  Manifest& m = result.manifest;
  m.name = o.name;
  m.kind = "files";
  m.time = time;
  m.hostname = HostName();
  m.tool = "haven 0.1.0";
  if (!o.pre.empty()) {
    m.consistency = "application-consistent";
    m.consistency_reason = "files read between the --pre and --post commands";
  } else {
    m.consistency = "file-level";
    m.consistency_reason =
        "each file read on its own while the system ran (no --pre command)";
  }
  if (parent) m.parent = parent->id;
  repository::DiskManifest cat;
  cat.name = "catalog";
  cat.kind = "catalog";
  cat.size = catalog_bytes_;
  cat.tree = catalog;
  repository::DiskManifest con;
  con.name = "content";
  con.kind = "content";
  con.size = content_bytes_;
  con.tree = content;
  m.disks = {cat, con};
  m.file_paths = roots;
  m.file_entries = result.entries;
  m.partial = !result.warnings.empty();
  for (size_t i = 0; i < result.warnings.size() && i < kMaxWarnings; ++i)
    m.notes.push_back(result.warnings[i]);
  if (result.warnings.size() > kMaxWarnings)
    m.notes.push_back("... and " +
                      std::to_string(result.warnings.size() - kMaxWarnings) +
                      " more warnings");
  for (const std::string& mount : mounts_)
    m.notes.push_back(mount + ": another file system, not entered "
                              "(--one-file-system)");
  m.stats.logical_bytes = result.bytes;
  m.stats.read_bytes = bytes_read_;
  m.stats.hole_bytes = 0;
  m.stats.new_chunks = sink_.new_chunks();
  m.stats.new_raw_bytes = sink_.new_raw_bytes();
  m.stats.new_stored_bytes = sink_.new_stored_bytes();
  m.stats.duration_seconds = MonotonicSeconds() - start;
  result.bytes_read = bytes_read_;
  HAVEN_RETURN_IF_ERROR(sink_.Commit(m));
  Progress(true);
  return OkStatus();
}

}  // namespace

Result<ExcludeRules> ExcludeRules::Create(const std::vector<std::string>& globs,
                                          const std::string& file) {
  ExcludeRules rules;
  for (const std::string& g : globs) {
    if (g.empty()) return InvalidArgument("--exclude: an empty pattern");
    rules.globs_.push_back(g);
  }
  if (!file.empty()) {
    HAVEN_ASSIGN_OR_RETURN(Bytes data, ReadFile(file, 16 << 20));
    std::string text(data.begin(), data.end());
    size_t start = 0;
    while (start < text.size()) {
      size_t end = text.find('\n', start);
      if (end == std::string::npos) end = text.size();
      std::string line = text.substr(start, end - start);
      start = end + 1;
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ' ||
                               line.back() == '\t'))
        line.pop_back();
      size_t first = line.find_first_not_of(" \t");
      if (first == std::string::npos || line[first] == '#') continue;
      rules.globs_.push_back(line.substr(first));
    }
  }
  return rules;
}

bool ExcludeRules::Excluded(const std::string& path) const {
  for (const std::string& g : globs_)
    if (MatchesGlob(g, path)) return true;
  return false;
}

Result<std::optional<Manifest>> LatestFilePoint(const Repository& repo,
                                                const std::string& name) {
  return repository::LatestPoint(repo, name, "files",
                                 repository::Unreadable::kSkip);
}

namespace {

Status RunHook(const std::string& which, const std::string& cmd,
               double timeout) {
  HookRequest hook;
  hook.name = "the " + which + " command";
  hook.command = cmd;
  hook.timeout = timeout;
  return haven::RunHook(hook);
}

// Absolute, normalized, no trailing '/'; the path must exist.
Result<std::string> RootPath(const std::string& given) {
  if (given.empty()) return InvalidArgument("an empty path");
  if (given.find('\0') != std::string::npos)
    return InvalidArgument("a path with a NUL byte");
  fs::path p = fs::absolute(fs::path(given)).lexically_normal();
  // The directories above it are resolved (a path under a symlinked
  // directory, e.g. /lib on a merged-/usr system, is stored under its real
  // path, where the walk from / finds it); the last component is kept as
  // is, so a symlink given is stored as a symlink.
  if (p.has_parent_path() && p.parent_path() != p.root_path()) {
    boost::system::error_code ec;
    fs::path parent = fs::canonical(p.parent_path(), ec);
    if (ec) return InvalidArgument(given + ": " + ec.message());
    p = parent / p.filename();
  }
  std::string s = p.string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  if (s.size() > 1 && s.ends_with("/.")) s.resize(s.size() - 2);
  struct stat st;
  if (lstat(s.c_str(), &st) != 0)
    return InvalidArgument(given + ": " + Why(errno));
  if (!repository::IsCatalogPath(s))
    return InvalidArgument(given + ": cannot be made an absolute path");
  return s;
}

}  // namespace

Result<FileBackupResult> BackupFiles(Repository& repo,
                                     const FileBackupOptions& o) {
  LocalPointSink sink(repo);
  return BackupFiles(sink, o);
}

Result<FileBackupResult> BackupFiles(PointSink& sink,
                                     const FileBackupOptions& o) {
  if (o.name.empty())
    return InvalidArgument("a backup name is required (--name)");
  if (o.paths.empty()) return InvalidArgument("no path to back up");
  const double start = MonotonicSeconds();
  std::string started = NowIso8601();
  if (!o.time.empty()) {
    auto t = ParseIsoTime(o.time);
    if (!t.ok()) return t.status().WithContext("--time");
    started = o.time;
  }
  std::vector<std::string> roots;
  for (const std::string& p : o.paths) {
    HAVEN_ASSIGN_OR_RETURN(std::string r, RootPath(p));
    roots.push_back(r);
  }
  std::sort(roots.begin(), roots.end());
  // A path inside another one is already in it.
  std::vector<std::string> kept;
  for (const std::string& r : roots) {
    bool inside = false;
    for (const std::string& k : kept)
      if (k == "/" || r == k || r.starts_with(k + "/")) inside = true;
    if (!inside) kept.push_back(r);
  }
  HAVEN_ASSIGN_OR_RETURN(ExcludeRules rules,
                         ExcludeRules::Create(o.excludes, o.exclude_file));
  HAVEN_ASSIGN_OR_RETURN(FastCdc cdc, FastCdc::Create(o.cdc));
  HAVEN_ASSIGN_OR_RETURN(FastCdc catalog_cdc, FastCdc::Create(kCatalogCdc));
  HAVEN_ASSIGN_OR_RETURN(std::optional<Manifest> parent,
                         sink.LatestPoint(o.name, "files"));

  if (!o.pre.empty()) HAVEN_RETURN_IF_ERROR(RunHook("--pre", o.pre, o.hook_timeout));
  Backup backup(sink, o, std::move(rules), cdc, catalog_cdc);
  Result<FileBackupResult> walked = backup.Run(kept, parent);
  // The application is released as soon as the files are read, whatever
  // happened.
  Status post;
  if (!o.post.empty()) post = RunHook("--post", o.post, o.hook_timeout);
  if (!walked.ok()) return walked.status();
  FileBackupResult result = std::move(*walked);
  if (!post.ok()) result.warnings.push_back(post.message());
  HAVEN_RETURN_IF_ERROR(backup.Commit(o, started, kept, parent, start, result));
  return result;
}

}  // namespace haven::agent
