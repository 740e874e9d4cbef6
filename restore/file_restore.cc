#include "restore/file_restore.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <tuple>

#include "base/bytes.h"
#include "base/file.h"
#include "base/time.h"

namespace haven::restore {
namespace {

constexpr int kMaxDepth = 256;      // deeper guest trees are reported
constexpr size_t kBlock = 1 << 20;  // file content moves in 1 MiB pieces
constexpr uint64_t kArchiveBuffer = 64ull << 20;  // see ArchiveSink::File
constexpr uint64_t kMinSparseHoles = 1 << 20;     // see ArchiveSink::Sparse
constexpr char kPartial[] = ".haven-partial";

// Fault injection for the crash-isolation test of `haven restore file`:
// HAVEN_FAULT_FILE_RESTORE_CRASH=N kills the process with SIGSEGV while
// its (N+1)-th file is being written, as a crash inside The Sleuth Kit on a
// crafted image would.
void MaybeCrash() {
  static const long after = [] {
    const char* v = std::getenv("HAVEN_FAULT_FILE_RESTORE_CRASH");
    return v ? std::atol(v) : -1;
  }();
  static long files = 0;
  if (after >= 0 && files++ >= after) std::raise(SIGSEGV);
}

// Holes are kept at this granularity at most: the block of the target's
// file system (st_blksize), no coarser than 4 KiB, no finer than 512.
constexpr size_t kMaxHoleGrain = 4096;

size_t HoleGrain(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_blksize <= 0) return kMaxHoleGrain;
  return std::clamp<size_t>(static_cast<size_t>(st.st_blksize), 512,
                            kMaxHoleGrain);
}

using Ranges = std::vector<std::pair<uint64_t, uint64_t>>;

// Calls `run(start, n)` for each run of data in `len` bytes of a file at
// `off`: the blocks of `grain` bytes (aligned to the file's start) that
// are not all zeros, adjacent ones joined. The all-zero blocks between
// are what a sparse copy leaves as holes.
Status ForEachDataRun(const uint8_t* data, size_t len, uint64_t off,
                      size_t grain,
                      const std::function<Status(size_t, size_t)>& run) {
  // The block at `i` (cut at a grain boundary of the file and at `len`).
  auto block = [&](size_t i) {
    return std::min<size_t>(grain - (off + i) % grain, len - i);
  };
  size_t i = 0;
  while (i < len) {
    if (IsAllZero(data + i, block(i))) {
      i += block(i);
      continue;
    }
    const size_t start = i;
    do {
      i += block(i);
    } while (i < len && !IsAllZero(data + i, block(i)));
    HAVEN_RETURN_IF_ERROR(run(start, i - start));
  }
  return OkStatus();
}

// Writes `len` bytes of a file at `off`, leaving out every all-zero block:
// a sparse guest file stays as sparse as the target's file system can keep
// it, not rounded up to the 1 MiB pieces content is read in.
Status WriteDataRuns(int fd, const uint8_t* data, size_t len, uint64_t off,
                     size_t grain, const std::string& where) {
  return ForEachDataRun(data, len, off, grain, [&](size_t start, size_t n) {
    return PWriteAll(fd, data + start, n, off + start, where);
  });
}

// A problem with one entry: it is skipped and reported, the restore goes
// on. Any other error stops the restore.
bool IsEntryProblem(const Status& s) {
  return s.code() == Code::kAlreadyExists || s.code() == Code::kDataLoss ||
         s.code() == Code::kFailedPrecondition;
}

// The code point starting at s[i] and its length in bytes; length 0 when
// the bytes there are not strict UTF-8 (overlong forms, surrogates and
// values past U+10FFFF are not).
std::pair<uint32_t, size_t> DecodeUtf8(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return {c, 1};
  size_t n;
  uint32_t cp, min;
  if ((c & 0xe0) == 0xc0) {
    n = 2, cp = c & 0x1f, min = 0x80;
  } else if ((c & 0xf0) == 0xe0) {
    n = 3, cp = c & 0x0f, min = 0x800;
  } else if ((c & 0xf8) == 0xf0) {
    n = 4, cp = c & 0x07, min = 0x10000;
  } else {
    return {0, 0};
  }
  if (i + n > s.size()) return {0, 0};
  for (size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xc0) != 0x80) return {0, 0};
    cp = (cp << 6) | (b & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
    return {0, 0};
  return {cp, n};
}

bool ValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t n = DecodeUtf8(s, i).second;
    if (n == 0) return false;
    i += n;
  }
  return true;
}

// Code points a terminal acts on rather than shows: C0/C1 controls and
// the bidirectional overrides that can make a name read backwards.
bool IsControlCodePoint(uint32_t cp) {
  return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) ||
         (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) ||
         cp == 0x200e || cp == 0x200f || cp == 0x061c;
}

struct timespec Ts(int64_t ns) {
  struct timespec t;
  t.tv_sec = ns / 1000000000;
  t.tv_nsec = ns % 1000000000;
  if (t.tv_nsec < 0) {
    t.tv_nsec += 1000000000;
    --t.tv_sec;
  }
  return t;
}

// What a sink did with one entry; the walk counts each apart, so a
// summary never counts a file kept in the target as restored.
enum class Placed {
  kWritten,  // made (a file with its content)
  kLinked,   // a hard link to a file written before
  kSkipped,  // kept: --overwrite if-newer and the target's is not older
};

// Where restored entries go. A directory handle is the sink's own (an
// open directory, or the entry path inside an archive).
class Sink {
 public:
  struct Dir {
    UniqueFd fd;      // directory target
    std::string rel;  // path inside the target, "" for its root
    bool created = false;
  };
  virtual ~Sink() = default;
  virtual Result<Dir> Root() = 0;
  virtual Result<Dir> MakeDir(Dir& parent, const std::string& name,
                              const GuestEntry& e) = 0;
  virtual Status FinishDir(Dir& dir, const GuestEntry& e) = 0;
  virtual Result<Placed> File(
      Dir& parent, const std::string& name, const GuestEntry& e,
      GuestTree& tree, const std::function<void(uint64_t)>& progress) = 0;
  virtual Result<Placed> Symlink(Dir& parent, const std::string& name,
                                 const GuestEntry& e) = 0;
  virtual Result<Placed> Fifo(Dir& parent, const std::string& name,
                              const GuestEntry& e) = 0;
  virtual Result<Placed> Device(Dir& parent, const std::string& name,
                                const GuestEntry& e) = 0;
  virtual Status Finish() = 0;
  virtual void Abort() = 0;
};

std::string Join(const std::string& rel, const std::string& name) {
  return rel.empty() ? name : rel + "/" + name;
}

// ---------------------------------------------------------------- directory
class DirSink : public Sink {
 public:
  DirSink(const FileRestoreOptions& o, bool unix_metadata,
          FileRestoreStats& stats)
      : path_(o.path),
        owners_(o.owners && unix_metadata && geteuid() == 0),
        want_owners_(o.owners && unix_metadata),
        keep_setid_(o.keep_setid && geteuid() == 0),
        overwrite_(o.overwrite),
        sync_(o.sync),
        unix_metadata_(unix_metadata),
        dry_run_(o.dry_run),
        max_planned_(o.max_planned),
        stats_(stats) {}

  // A symlink as the target is refused, saying so: a symlink planted at a
  // shared path (/tmp/r) would send a restore run as root anywhere.
  Result<Dir> Root() override {
    struct stat st;
    if (lstat(path_.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
      char to[4096];
      ssize_t n = readlink(path_.c_str(), to, sizeof to - 1);
      const std::string where =
          n > 0 ? "'" + std::string(to, static_cast<size_t>(n)) + "'"
                : std::string("another path");
      return InvalidArgument(
          path_ + " is a symlink (to " + where +
          "); a restore does not write through a symlink it did not make: "
          "give the directory itself as the target");
    }
    if (lstat(path_.c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
      return InvalidArgument(path_ + " exists and is not a directory");
    if (dry_run_ && lstat(path_.c_str(), &st) != 0) {
      Dir d;  // made by the run: nothing in it yet
      d.created = true;
      return d;
    }
    if (!dry_run_) HAVEN_RETURN_IF_ERROR(MakeDirs(path_, 0755));
    int fd = open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus("open " + path_, errno);
    root_fd_ = fd;
    Dir d;
    d.fd = UniqueFd(fd);
    return d;
  }

  Result<Dir> MakeDir(Dir& parent, const std::string& name,
                      const GuestEntry& e) override {
    Dir d;
    d.rel = Join(parent.rel, name);
    if (dry_run_) {
      // Made by the run when missing: the parent is new, or has no entry.
      struct stat st;
      if (parent.fd.get() < 0 || fstatat(parent.fd.get(), name.c_str(), &st,
                                         AT_SYMLINK_NOFOLLOW) != 0) {
        d.created = true;
        Plan(d.rel, e, "create");
        return d;
      }
    } else if (mkdirat(parent.fd.get(), name.c_str(), 0700) == 0) {
      d.created = true;
    } else if (errno != EEXIST) {
      return ErrnoStatus("mkdir " + Where(d.rel), errno);
    }
    int fd = openat(parent.fd.get(), name.c_str(),
                    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOTDIR || errno == ELOOP)
        return AlreadyExists(Where(d.rel) +
                             " exists in the target and is not a directory");
      return ErrnoStatus("open " + Where(d.rel), errno);
    }
    d.fd = UniqueFd(fd);
    return d;
  }

  Status FinishDir(Dir& dir, const GuestEntry& e) override {
    // A directory that was there; or a dry run.
    if (!dir.created || dry_run_) return OkStatus();
    return Apply(dir.fd.get(), e, dir.rel);
  }

  Result<Placed> File(Dir& parent, const std::string& name, const GuestEntry& e,
                      GuestTree& tree,
                      const std::function<void(uint64_t)>& progress) override {
    const std::string rel = Join(parent.rel, name);
    HAVEN_ASSIGN_OR_RETURN(bool go, MayPlace(parent, name, e, rel));
    if (dry_run_) return PlanEntry(parent, name, e, rel, go);
    if (!go) return Placed::kSkipped;
    if (!e.hardlink.empty()) {
      auto it = links_.find(e.hardlink);
      if (it != links_.end()) {
        HAVEN_RETURN_IF_ERROR(Link(parent, name, it->second.get(), rel));
        return Placed::kLinked;
      }
    }
    std::string tmp;
    HAVEN_ASSIGN_OR_RETURN(
        int fd, Temp("create", rel, tmp, [&](const std::string& t) {
          return openat(parent.fd.get(), t.c_str(),
                        O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                        0600);
        }));
    UniqueFd out(fd);
    const size_t grain = HoleGrain(fd);
    Status s = tree.ReadFile(
        e,
        [&](uint64_t off, const uint8_t* data, size_t len) -> Status {
          HAVEN_RETURN_IF_ERROR(
              WriteDataRuns(fd, data, len, off, grain, Where(rel)));
          progress(len);
          return OkStatus();
        },
        kBlock);
    if (s.ok() && ftruncate(fd, static_cast<off_t>(e.size)) != 0)
      s = ErrnoStatus("truncate " + Where(rel), errno);
    if (s.ok()) s = Apply(fd, e, rel);
    if (!s.ok()) return Discard(parent, tmp, s);
    // Start writing it out now, so the final sync has little left to wait
    // for.
    if (sync_) sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    MaybeCrash();
    HAVEN_RETURN_IF_ERROR(Place(parent, tmp, name, rel));
    if (!e.hardlink.empty() && links_.size() < kMaxLinkFds) {
      int pfd = openat(parent.fd.get(), name.c_str(),
                       O_PATH | O_NOFOLLOW | O_CLOEXEC);
      if (pfd >= 0) links_.emplace(e.hardlink, UniqueFd(pfd));
    }
    return Placed::kWritten;
  }

  Result<Placed> Symlink(Dir& parent, const std::string& name,
                         const GuestEntry& e) override {
    return Special(parent, name, e, "symlink", [&](const std::string& t) {
      return symlinkat(e.link_target.c_str(), parent.fd.get(), t.c_str());
    });
  }

  Result<Placed> Fifo(Dir& parent, const std::string& name,
                      const GuestEntry& e) override {
    return Special(parent, name, e, "mkfifo", [&](const std::string& t) {
      return mkfifoat(parent.fd.get(), t.c_str(), 0600);
    });
  }

  Result<Placed> Device(Dir& parent, const std::string& name,
                        const GuestEntry& e) override {
    if (geteuid() != 0)
      return FailedPrecondition("device nodes can only be made by root");
    const mode_t type = e.type == GuestType::kCharDev ? S_IFCHR : S_IFBLK;
    return Special(parent, name, e, "mknod", [&](const std::string& t) {
      return mknodat(parent.fd.get(), t.c_str(), type | 0600,
                     static_cast<dev_t>(e.rdev));
    });
  }

  // Everything written reaches the disk before success is reported.
  Status Finish() override {
    links_.clear();
    if (owner_skipped_)
      stats_.problems.push_back(
          {path_, "owners not restored: only root can give files to other "
                  "users (everything is owned by the user who restored)"});
    if (!dry_run_ && sync_ && root_fd_ >= 0 && syncfs(root_fd_) != 0)
      return ErrnoStatus("sync " + path_, errno);
    return OkStatus();
  }
  void Abort() override {}

 private:
  static constexpr size_t kMaxLinkFds = 256;

  std::string Where(const std::string& rel) const { return path_ + "/" + rel; }

  // A dry run's decision for an entry MayPlace allowed (`go`) or kept.
  Placed PlanEntry(Dir& parent, const std::string& name, const GuestEntry& e,
                   const std::string& rel, bool go) {
    if (!go) {
      Plan(rel, e, "skip");
      return Placed::kSkipped;
    }
    NoteOwner(e);
    if (!e.hardlink.empty() && !planned_links_.insert(e.hardlink).second) {
      Plan(rel, e, "link");
      return Placed::kLinked;
    }
    struct stat st;
    const bool exists =
        parent.fd.get() >= 0 &&
        fstatat(parent.fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
    Plan(rel, e, exists ? "replace" : "create");
    return Placed::kWritten;
  }
  void Plan(const std::string& rel, const GuestEntry& e, const char* action) {
    if (stats_.planned.size() >= max_planned_) {
      ++stats_.planned_more;
      return;
    }
    stats_.planned.push_back({PrintableName(rel), GuestTypeName(e.type),
                              e.type == GuestType::kFile ? e.size : 0, action});
  }
  Status Exists(const std::string& rel) const {
    return AlreadyExists(Where(rel) + " exists in the target; not replaced");
  }

  // Whether `name` may be written (false: skipped, --overwrite if-newer).
  Result<bool> MayPlace(Dir& parent, const std::string& name,
                        const GuestEntry& e, const std::string& rel) {
    struct stat st;
    if (fstatat(parent.fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
      return true;
    if (S_ISDIR(st.st_mode))
      return AlreadyExists(Where(rel) +
                           " is a directory in the target; not replaced");
    switch (overwrite_) {
      case Overwrite::kNever:
        return Exists(rel);
      case Overwrite::kIfNewer: {
        const int64_t theirs =
            static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 +
            st.st_mtim.tv_nsec;
        return e.mtime_ns > theirs;
      }
      case Overwrite::kAlways:
        return true;
    }
    return true;
  }

  // Creates an entry under a fresh temporary name in `parent` (a guest
  // may hold a file named like one: another is tried).
  // `make` returns a descriptor or 0 on success, -1 with errno on failure;
  // `what` names the operation in the error.
  Result<int> Temp(const std::string& what, const std::string& rel,
                   std::string& tmp,
                   const std::function<int(const std::string&)>& make) {
    int r = -1;
    for (int attempt = 0; r < 0 && attempt < 16; ++attempt) {
      tmp = std::string(kPartial) + "." + std::to_string(getpid()) + "." +
            std::to_string(rng_());
      r = make(tmp);
      if (r < 0 && errno != EEXIST) break;
    }
    if (r < 0) return ErrnoStatus(what + " " + Where(rel), errno);
    return r;
  }
  Status Discard(Dir& parent, const std::string& tmp, Status s) {
    unlinkat(parent.fd.get(), tmp.c_str(), 0);
    return s;
  }
  // Moves the finished temporary entry to its name: never replacing, or
  // (--overwrite) atomically replacing a file, never a directory.
  Status Place(Dir& parent, const std::string& tmp, const std::string& name,
               const std::string& rel) {
    const int dfd = parent.fd.get();
    int r = overwrite_ == Overwrite::kNever
                ? renameat2(dfd, tmp.c_str(), dfd, name.c_str(),
                            RENAME_NOREPLACE)
                : renameat(dfd, tmp.c_str(), dfd, name.c_str());
    if (r == 0) return OkStatus();
    int err = errno;
    return Discard(parent, tmp,
                   err == EEXIST    ? Exists(rel)
                   : err == EISDIR || err == ENOTEMPTY
                       ? AlreadyExists(Where(rel) +
                                       " became a directory in the target; "
                                       "not replaced")
                       : ErrnoStatus("rename " + Where(rel), err));
  }
  // A symlink, FIFO or device node: made under a temporary name, its
  // metadata set by name (opening it could block or follow it), placed.
  Result<Placed> Special(Dir& parent, const std::string& name,
                         const GuestEntry& e, const char* what,
                         const std::function<int(const std::string&)>& make) {
    const std::string rel = Join(parent.rel, name);
    HAVEN_ASSIGN_OR_RETURN(bool go, MayPlace(parent, name, e, rel));
    if (dry_run_) return PlanEntry(parent, name, e, rel, go);
    if (!go) return Placed::kSkipped;
    std::string tmp;
    HAVEN_RETURN_IF_ERROR(Temp(what, rel, tmp, make).status());
    Status s = ApplyByName(parent, tmp, e, rel,
                           /*chmod=*/e.type != GuestType::kSymlink);
    if (!s.ok()) return Discard(parent, tmp, s);
    HAVEN_RETURN_IF_ERROR(Place(parent, tmp, name, rel));
    return Placed::kWritten;
  }
  // A second link to a file restored before (through /proc, which needs
  // no privilege, unlike linkat's AT_EMPTY_PATH).
  Status Link(Dir& parent, const std::string& name, int target_fd,
              const std::string& rel) {
    std::string tmp;
    const std::string proc = "/proc/self/fd/" + std::to_string(target_fd);
    HAVEN_ASSIGN_OR_RETURN(
        int r, Temp("link", rel, tmp, [&](const std::string& t) {
          return linkat(AT_FDCWD, proc.c_str(), parent.fd.get(), t.c_str(),
                        AT_SYMLINK_FOLLOW);
        }));
    (void)r;
    return Place(parent, tmp, name, rel);
  }
  // Apply() for what cannot be opened (a symlink, a FIFO): by name in
  // `parent`, never following a symlink swapped in meanwhile.
  Status ApplyByName(Dir& parent, const std::string& name, const GuestEntry& e,
                     const std::string& rel, bool chmod) {
    const int dfd = parent.fd.get();
    NoteOwner(e);
    if (owners_ &&
        fchownat(dfd, name.c_str(), e.uid, e.gid, AT_SYMLINK_NOFOLLOW) != 0)
      return ErrnoStatus("chown " + Where(rel), errno);
    if (chmod &&
        fchmodat(dfd, name.c_str(), Mode(e), AT_SYMLINK_NOFOLLOW) != 0)
      return ErrnoStatus("chmod " + Where(rel), errno);
    struct timespec times[2] = {Ts(e.atime_ns), Ts(e.mtime_ns)};
    if (utimensat(dfd, name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0)
      return ErrnoStatus("set times of " + Where(rel), errno);
    return OkStatus();
  }
  uint32_t Mode(const GuestEntry& e) const {
    if (!unix_metadata_) return e.type == GuestType::kDir ? 0755 : 0644;
    return e.mode & (keep_setid_ ? 07777 : 01777);
  }
  void NoteOwner(const GuestEntry& e) {
    if (want_owners_ && !owners_ && (e.uid != geteuid() || e.gid != getegid()))
      owner_skipped_ = true;
  }
  // Owner, then mode (chown clears set-id bits; they are set after it when
  // kept), then extended attributes (ACLs; after chown, which would clear
  // file capabilities), then times.
  Status Apply(int fd, const GuestEntry& e, const std::string& rel) {
    NoteOwner(e);
    if (owners_ && fchown(fd, e.uid, e.gid) != 0)
      return ErrnoStatus("chown " + Where(rel), errno);
    if (fchmod(fd, Mode(e)) != 0)
      return ErrnoStatus("chmod " + Where(rel), errno);
    for (const auto& [name, value] : e.xattrs) {
      if (fsetxattr(fd, name.c_str(), value.data(), value.size(), 0) != 0)
        stats_.problems.push_back(
            {Where(rel), "extended attribute " + PrintableName(name) +
                             " not restored: " + std::strerror(errno)});
    }
    struct timespec times[2] = {Ts(e.atime_ns), Ts(e.mtime_ns)};
    if (futimens(fd, times) != 0)
      return ErrnoStatus("set times of " + Where(rel), errno);
    return OkStatus();
  }

  std::string path_;
  bool owners_, want_owners_, keep_setid_;
  Overwrite overwrite_;
  bool sync_;
  bool unix_metadata_;
  bool dry_run_;
  size_t max_planned_;
  std::set<std::string> planned_links_;  // dry run: hard-link keys seen
  FileRestoreStats& stats_;
  bool owner_skipped_ = false;
  int root_fd_ = -1;  // owned by the root Dir, open for the whole restore
  std::map<std::string, UniqueFd> links_;  // hard-link key -> O_PATH fd
  std::mt19937_64 rng_{std::random_device{}()};
};

// ---------------------------------------------------------------- archive
struct ArchiveFree {
  void operator()(struct archive* a) const { archive_write_free(a); }
};
struct EntryFree {
  void operator()(struct archive_entry* e) const { archive_entry_free(e); }
};
using EntryPtr = std::unique_ptr<struct archive_entry, EntryFree>;

class ArchiveSink : public Sink {
 public:
  ArchiveSink(std::string path, bool zip, bool unix_metadata,
              std::function<Status(std::string_view)> writer = nullptr)
      : path_(std::move(path)),
        partial_(path_ + kPartial),
        zip_(zip),
        unix_metadata_(unix_metadata),
        writer_(std::move(writer)) {}
  ~ArchiveSink() override { Abort(); }

  Result<Dir> Root() override {
    if (writer_) return OpenStream();
    struct stat st;
    if (lstat(path_.c_str(), &st) == 0)
      return InvalidArgument(path_ +
                             " exists; an export never replaces a file");
    int fd = open(partial_.c_str(),
                  O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
      return errno == EEXIST
                 ? InvalidArgument(partial_ +
                                   " exists: another export to the same file "
                                   "is running, or one was interrupted "
                                   "(remove it)")
                 : ErrnoStatus("create " + partial_, errno);
    fd_ = UniqueFd(fd);
    a_.reset(archive_write_new());
    if (!a_) return Internal("archive_write_new failed");
    int r = zip_ ? archive_write_set_format_zip(a_.get())
                 // pax, not pax_restricted: it writes the ns times of every
                 // entry, not only of entries that need a pax header anyway.
                 : archive_write_set_format_pax(a_.get());
    if (r == ARCHIVE_OK) r = archive_write_open_fd(a_.get(), fd_.get());
    if (r != ARCHIVE_OK) return Error("open");
    return Dir{};
  }

  Result<Dir> MakeDir(Dir& parent, const std::string& name,
                      const GuestEntry& e) override {
    Dir d;
    d.rel = Join(parent.rel, name);
    d.created = true;
    EntryPtr entry = Entry(d.rel, e, AE_IFDIR);
    HAVEN_RETURN_IF_ERROR(Header(entry.get(), d.rel));
    return d;
  }
  Status FinishDir(Dir&, const GuestEntry&) override { return OkStatus(); }

  // An entry's header holds its size, so a file whose content then fails
  // to read would leave a wrong entry. Files up to 64 MiB are read first
  // and skipped cleanly on failure; a larger one that fails mid-way
  // fails the whole export (the partial archive is removed).
  Result<Placed> File(Dir& parent, const std::string& name, const GuestEntry& e,
                      GuestTree& tree,
                      const std::function<void(uint64_t)>& progress) override {
    const std::string rel = Join(parent.rel, name);
    EntryPtr entry = Entry(rel, e, AE_IFREG);
    // Zip has no hard links: there every name gets the content.
    if (!e.hardlink.empty() && !zip_) {
      auto [it, first] = links_.emplace(e.hardlink, rel);
      if (!first) {  // a second link: a header naming the first, no data
        archive_entry_set_hardlink(entry.get(), it->second.c_str());
        archive_entry_set_size(entry.get(), 0);
        HAVEN_RETURN_IF_ERROR(Header(entry.get(), rel));
        return Placed::kLinked;
      }
    }
    archive_entry_set_size(entry.get(), static_cast<la_int64_t>(e.size));
    auto write = [&](const uint8_t* data, size_t len) -> Status {
      if (archive_write_data(a_.get(), data, len) !=
              static_cast<la_ssize_t>(len) ||
          !write_error_.ok())
        return Error("write " + rel);
      progress(len);
      return OkStatus();
    };
    if (e.size <= kArchiveBuffer) {
      Bytes content;
      content.reserve(static_cast<size_t>(e.size));
      HAVEN_RETURN_IF_ERROR(tree.ReadFile(
          e,
          [&](uint64_t, const uint8_t* data, size_t len) -> Status {
            if (content.size() + len > e.size)
              return DataLoss("file system gave more bytes than the size");
            content.insert(content.end(), data, data + len);
            return OkStatus();
          },
          kBlock));
      if (!zip_) {  // holes: the all-zero 4 KiB blocks of what was read
        Ranges data;
        HAVEN_RETURN_IF_ERROR(ForEachDataRun(
            content.data(), content.size(), 0, kMaxHoleGrain,
            [&](size_t start, size_t n) {
              data.emplace_back(start, n);
              return OkStatus();
            }));
        Sparse(entry.get(), data, content.size());
      }
      HAVEN_RETURN_IF_ERROR(Header(entry.get(), rel));
      MaybeCrash();
      HAVEN_RETURN_IF_ERROR(write(content.data(), content.size()));
      return Placed::kWritten;
    }
    // Too large to hold: the holes are the file system's (its block map),
    // and every byte read in one must be zero, or the export fails (the
    // archive would hold other content than the file).
    std::optional<Ranges> data;
    if (!zip_) data = tree.DataRanges(e);
    if (data && !Sparse(entry.get(), *data, e.size)) data.reset();
    HAVEN_RETURN_IF_ERROR(Header(entry.get(), rel));
    size_t next = 0;  // the first range of `data` not wholly behind
    Status s = tree.ReadFile(
        e,
        [&](uint64_t off, const uint8_t* bytes, size_t len) -> Status {
          if (data) HAVEN_RETURN_IF_ERROR(HolesAreZero(*data, next, off, bytes, len));
          return write(bytes, len);
        },
        kBlock);
    if (!s.ok())
      return IoError(rel + " (" + std::to_string(e.size) +
                     " bytes) failed after its entry was started, so the "
                     "archive cannot be completed: " +
                     s.message());
    return Placed::kWritten;
  }

  // Marks the holes of a file of `size` bytes, whose data is `data`, in
  // its entry: pax (GNU sparse 1.0) then stores only the data, and tar
  // tools make the holes again on extraction. Only where the holes add up
  // to kMinSparseHoles (false otherwise): a sparse entry is named
  // GNUSparseFile.0/NAME for tar readers that know no GNU sparse, so an
  // ordinary file with a few zero blocks is stored plainly.
  static bool Sparse(struct archive_entry* entry, const Ranges& data,
                     uint64_t size) {
    uint64_t bytes = 0;
    for (const auto& [off, len] : data) bytes += len;
    if (bytes > size || size - bytes < kMinSparseHoles) return false;
    for (const auto& [off, len] : data)
      archive_entry_sparse_add_entry(entry, static_cast<la_int64_t>(off),
                                     static_cast<la_int64_t>(len));
    // A file of holes only: its last byte as data (libarchive's reader
    // reads an entry whose only range is empty as no bytes at all).
    if (data.empty())
      archive_entry_sparse_add_entry(entry, static_cast<la_int64_t>(size - 1),
                                     1);
    return true;
  }

  // DataLoss unless the bytes of [off, off + len) outside `data` are all
  // zeros. `next` carries the first range not wholly before `off` across
  // calls (pieces come in order).
  static Status HolesAreZero(const Ranges& data, size_t& next, uint64_t off,
                             const uint8_t* bytes, size_t len) {
    const uint64_t end = off + len;
    uint64_t pos = off;
    while (pos < end) {
      while (next < data.size() &&
             data[next].first + data[next].second <= pos)
        ++next;
      const uint64_t hole_end =
          next < data.size() ? std::min(end, data[next].first) : end;
      if (pos < hole_end && !IsAllZero(bytes + (pos - off), hole_end - pos))
        return DataLoss("the file system gave data inside a hole of the "
                        "file (at byte " + std::to_string(pos) + ")");
      if (next >= data.size()) break;
      pos = std::max(hole_end, data[next].first + data[next].second);
    }
    return OkStatus();
  }

  Result<Placed> Symlink(Dir& parent, const std::string& name,
                         const GuestEntry& e) override {
    const std::string rel = Join(parent.rel, name);
    EntryPtr entry = Entry(rel, e, AE_IFLNK);
    archive_entry_set_symlink(entry.get(), e.link_target.c_str());
    HAVEN_RETURN_IF_ERROR(Header(entry.get(), rel));
    return Placed::kWritten;
  }

  Result<Placed> Fifo(Dir& parent, const std::string& name,
                      const GuestEntry& e) override {
    const std::string rel = Join(parent.rel, name);
    if (zip_) return FailedPrecondition("a zip archive cannot hold a FIFO");
    EntryPtr entry = Entry(rel, e, AE_IFIFO);
    HAVEN_RETURN_IF_ERROR(Header(entry.get(), rel));
    return Placed::kWritten;
  }

  Result<Placed> Device(Dir& parent, const std::string& name,
                        const GuestEntry& e) override {
    const std::string rel = Join(parent.rel, name);
    if (zip_)
      return FailedPrecondition("a zip archive cannot hold a device node");
    EntryPtr entry =
        Entry(rel, e, e.type == GuestType::kCharDev ? AE_IFCHR : AE_IFBLK);
    archive_entry_set_rdev(entry.get(), static_cast<dev_t>(e.rdev));
    HAVEN_RETURN_IF_ERROR(Header(entry.get(), rel));
    return Placed::kWritten;
  }

  Status Finish() override {
    if (archive_write_close(a_.get()) != ARCHIVE_OK || !write_error_.ok())
      return Error("finish");
    a_.reset();
    if (writer_) {
      done_ = true;
      return OkStatus();
    }
    HAVEN_RETURN_IF_ERROR(FsyncFd(fd_.get(), partial_));
    fd_.reset();
    if (renameat2(AT_FDCWD, partial_.c_str(), AT_FDCWD, path_.c_str(),
                  RENAME_NOREPLACE) != 0)
      return ErrnoStatus("rename " + partial_ + " to " + path_, errno);
    done_ = true;
    std::string dir = path_.find('/') == std::string::npos
                          ? "."
                          : path_.substr(0, path_.rfind('/') + 1);
    return FsyncDir(dir);
  }

  void Abort() override {
    if (writer_) {
      a_.reset();
      return;
    }
    if (done_ || !fd_.valid()) return;
    a_.reset();
    fd_.reset();
    unlink(partial_.c_str());
  }

 private:
  // The archive into writer_ (no file, nothing to rename or remove).
  Result<Dir> OpenStream() {
    a_.reset(archive_write_new());
    if (!a_) return Internal("archive_write_new failed");
    int r = zip_ ? archive_write_set_format_zip(a_.get())
                 : archive_write_set_format_pax(a_.get());
    // The stream ends where the archive does: no padding to a 10 KiB block.
    if (r == ARCHIVE_OK) r = archive_write_set_bytes_in_last_block(a_.get(), 1);
    if (r == ARCHIVE_OK)
      r = archive_write_open2(a_.get(), this, nullptr, &ArchiveSink::WriteCb,
                              nullptr, nullptr);
    if (r != ARCHIVE_OK) return Error("open");
    return Dir{};
  }
  static la_ssize_t WriteCb(struct archive* a, void* self, const void* buf,
                            size_t len) {
    // Once the stream failed (the client went away) the bytes are dropped
    // but reported written: libarchive left in its fatal state leaks zip's
    // deflate state on free. The export stops at its next write instead,
    // which checks write_error_.
    (void)a;
    auto* sink = static_cast<ArchiveSink*>(self);
    if (sink->write_error_.ok())
      sink->write_error_ =
          sink->writer_(std::string_view(static_cast<const char*>(buf), len));
    return static_cast<la_ssize_t>(len);
  }

  EntryPtr Entry(const std::string& rel, const GuestEntry& e,
                 mode_t type) const {
    EntryPtr entry(archive_entry_new());
    // The guest's bytes as they are. (The UTF-8 setter would crash the pax
    // writer in the C locale, which Haven runs in: libarchive then has no
    // local form of the name.) pax marks names it cannot convert as binary.
    archive_entry_copy_pathname(entry.get(), rel.c_str());
    archive_entry_set_filetype(entry.get(), type);
    uint32_t mode =
        unix_metadata_ ? e.mode & 07777 : (type == AE_IFDIR ? 0755 : 0644);
    if (type == AE_IFLNK) mode = 0777;
    archive_entry_set_perm(entry.get(), mode);
    if (unix_metadata_) {
      archive_entry_set_uid(entry.get(), e.uid);
      archive_entry_set_gid(entry.get(), e.gid);
    }
    if (!e.user.empty()) archive_entry_copy_uname(entry.get(), e.user.c_str());
    if (!e.group.empty())
      archive_entry_copy_gname(entry.get(), e.group.c_str());
    if (!zip_)  // pax keeps them as SCHILY.xattr / SCHILY.acl records
      for (const auto& [name, value] : e.xattrs) {
        if (name == "system.posix_acl_access" &&
            AddAcl(entry.get(), ARCHIVE_ENTRY_ACL_TYPE_ACCESS, value))
          continue;
        if (name == "system.posix_acl_default" &&
            AddAcl(entry.get(), ARCHIVE_ENTRY_ACL_TYPE_DEFAULT, value))
          continue;
        archive_entry_xattr_add_entry(entry.get(), name.c_str(), value.data(),
                                      value.size());
      }
    struct timespec m = Ts(e.mtime_ns), a = Ts(e.atime_ns);
    archive_entry_set_mtime(entry.get(), m.tv_sec, m.tv_nsec);
    archive_entry_set_atime(entry.get(), a.tv_sec, a.tv_nsec);
    return entry;
  }
  // A POSIX ACL in its Linux xattr form (u32 version 2, then u16 tag,
  // u16 perm, u32 id per entry) as archive ACL entries, which tar tools
  // apply on extraction (`bsdtar --acls`). False if it does not parse.
  static bool AddAcl(struct archive_entry* entry, int type,
                     const std::string& value) {
    const auto* p = reinterpret_cast<const uint8_t*>(value.data());
    if (value.size() < 4 || (value.size() - 4) % 8 != 0 || GetU32(p) != 2)
      return false;
    std::vector<std::tuple<int, int, int>> entries;
    for (size_t off = 4; off < value.size(); off += 8) {
      const int tag = p[off] | (p[off + 1] << 8);
      const int perm = (p[off + 2] | (p[off + 3] << 8)) & 7;
      const int id = static_cast<int>(GetU32(p + off + 4));
      int t;
      switch (tag) {
        case 0x01: t = ARCHIVE_ENTRY_ACL_USER_OBJ; break;
        case 0x02: t = ARCHIVE_ENTRY_ACL_USER; break;
        case 0x04: t = ARCHIVE_ENTRY_ACL_GROUP_OBJ; break;
        case 0x08: t = ARCHIVE_ENTRY_ACL_GROUP; break;
        case 0x10: t = ARCHIVE_ENTRY_ACL_MASK; break;
        case 0x20: t = ARCHIVE_ENTRY_ACL_OTHER; break;
        default: return false;
      }
      entries.emplace_back(t, perm, id);
    }
    for (const auto& [t, perm, id] : entries)
      archive_entry_acl_add_entry(entry, type, perm, t, id, nullptr);
    return true;
  }
  Status Header(struct archive_entry* entry, const std::string& rel) {
    if (!write_error_.ok()) return write_error_;
    int r = archive_write_header(a_.get(), entry);
    // WARN: e.g. a name that is not valid in the archive's character set,
    // written as raw bytes; the entry itself is complete.
    if (r == ARCHIVE_OK || r == ARCHIVE_WARN) return OkStatus();
    return Error("entry " + rel);
  }
  Status Error(const std::string& what) const {
    // The stream's own error (the client went away) as it is.
    if (!write_error_.ok()) return write_error_;
    const char* e = a_ ? archive_error_string(a_.get()) : nullptr;
    return IoError(std::string(zip_ ? "zip " : "tar ") + what + " in " +
                   (writer_ ? std::string("the stream") : partial_) + ": " +
                   (e ? e : "unknown error"));
  }

  std::string path_, partial_;
  bool zip_, unix_metadata_;
  std::map<std::string, std::string> links_;  // hard-link key -> first entry
  UniqueFd fd_;
  std::unique_ptr<struct archive, ArchiveFree> a_;
  bool done_ = false;
  std::function<Status(std::string_view)> writer_;
  Status write_error_;
};

// ---------------------------------------------------------------- walk
class Walker {
 public:
  Walker(GuestTree& tree, Sink& sink, FileRestoreStats& stats,
         const ProgressFn& progress, bool devices, CancelToken cancel)
      : tree_(tree),
        sink_(sink),
        stats_(stats),
        progress_(progress),
        devices_(devices),
        cancel_(std::move(cancel)) {
    start_ = MonotonicSeconds();
  }

  // Restores `e`, found at guest path `path`, as `name` in `parent`.
  // Entry problems are recorded; the returned error stops the restore.
  Status Restore(Sink::Dir& parent, const GuestEntry& e,
                 const std::string& name, const std::string& path, int depth) {
    HAVEN_RETURN_IF_ERROR(cancel_.Check("the file restore"));
    Status s = RestoreOne(parent, e, name, path, depth);
    if (s.ok() || !IsEntryProblem(s)) return s;
    Problem(path, s.message());
    return OkStatus();
  }

  // The children of directory `e` (already made as `dir`).
  // `top` (for the target's root) is shared by every path given, so "/"
  // and another path cannot both put the same name there.
  Status Children(Sink::Dir& dir, const GuestEntry& e, const std::string& path,
                  int depth, std::set<std::string>* top = nullptr) {
    if (depth >= kMaxDepth) {
      Problem(path, "deeper than " + std::to_string(kMaxDepth) +
                        " directories; its contents are not restored");
      return OkStatus();
    }
    Result<std::vector<GuestEntry>> children = tree_.List(e);
    if (!children.ok()) {
      if (!IsEntryProblem(children.status())) return children.status();
      Problem(path, "cannot list: " + children.status().message());
      return OkStatus();
    }
    ancestors_.insert(e.inode);
    visited_.emplace(e.inode, path);
    std::set<std::string> own;
    std::set<std::string>& used = top ? *top : own;
    for (const GuestEntry& c : *children) {
      const std::string cpath =
          (path == "/" ? "" : path) + "/" + PrintableName(c.name);
      if (std::string why = InvalidNameReason(c.name); !why.empty()) {
        Problem(cpath, "invalid name (" + why + ")");
        continue;
      }
      if (!used.insert(c.name).second) {
        Problem(cpath, "name clash: the directory holds this name twice");
        continue;
      }
      HAVEN_RETURN_IF_ERROR(Restore(dir, c, c.name, cpath, depth + 1));
    }
    ancestors_.erase(e.inode);
    return OkStatus();
  }

 private:
  Status RestoreOne(Sink::Dir& parent, const GuestEntry& e,
                    const std::string& name, const std::string& path,
                    int depth) {
    switch (e.type) {
      case GuestType::kDir: {
        if (ancestors_.count(e.inode))
          return FailedPrecondition(
              "directory loop: it is one of its own parent directories");
        // A directory linked twice (impossible on a sound file system)
        // is restored once; walking every link could take 2^depth steps.
        if (auto it = visited_.find(e.inode); it != visited_.end())
          return FailedPrecondition("the same directory as " + it->second +
                                    " (a second link to it); restored once");
        HAVEN_ASSIGN_OR_RETURN(Sink::Dir dir, sink_.MakeDir(parent, name, e));
        HAVEN_RETURN_IF_ERROR(Children(dir, e, path, depth));
        HAVEN_RETURN_IF_ERROR(sink_.FinishDir(dir, e));
        // A directory that was there is entered, not restored.
        if (dir.created) ++stats_.dirs;
        return OkStatus();
      }
      case GuestType::kFile: {
        if (e.size > tree_.max_file_size())
          return FailedPrecondition("claims " + std::to_string(e.size) +
                                    " bytes, more than its volume holds (" +
                                    std::to_string(tree_.max_file_size()) +
                                    ")");
        HAVEN_ASSIGN_OR_RETURN(Placed p,
                               sink_.File(parent, name, e, tree_,
                                          [this](uint64_t n) { Progress(n); }));
        if (p == Placed::kWritten) stats_.bytes += e.size;
        return Count(p, stats_.files);
      }
      case GuestType::kSymlink:
        if (!e.link_problem.empty())
          return FailedPrecondition("symlink not restored: " + e.link_problem);
        if (e.link_target.empty() ||
            e.link_target.find('\0') != std::string::npos)
          return FailedPrecondition("symlink without a usable target");
        return Count(sink_.Symlink(parent, name, e), stats_.symlinks);
      case GuestType::kFifo:
        return Count(sink_.Fifo(parent, name, e), stats_.fifos);
      case GuestType::kCharDev:
      case GuestType::kBlockDev:
        if (!devices_) break;
        return Count(sink_.Device(parent, name, e), stats_.devices);
      case GuestType::kOther:
        return FailedPrecondition(
            "of unknown type, or its inode could not be read; not restored");
      default:
        break;
    }
    return FailedPrecondition(std::string(GuestTypeName(e.type)) +
                              ": special files are not restored");
  }

  // Counts what the sink did: `written` (the entry's type), a hard link,
  // or a skip; an error is passed on.
  Status Count(const Result<Placed>& placed, uint64_t& written) {
    if (!placed.ok()) return placed.status();
    switch (placed.value()) {
      case Placed::kWritten:
        ++written;
        break;
      case Placed::kLinked:
        ++stats_.hardlinks;
        break;
      case Placed::kSkipped:
        ++stats_.skipped;
        break;
    }
    return OkStatus();
  }
  void Problem(const std::string& path, const std::string& what) {
    stats_.problems.push_back({path, what});
  }
  void Progress(uint64_t n) {
    done_ += n;
    if (!progress_) return;
    double now = MonotonicSeconds();
    if (now - last_ < 0.2) return;
    last_ = now;
    haven::Progress p = ByteProgress(done_, 0, 0, now - start_, false);
    p.phase = "restore";
    progress_(p);
  }

  GuestTree& tree_;
  Sink& sink_;
  FileRestoreStats& stats_;
  const ProgressFn& progress_;
  bool devices_;
  CancelToken cancel_;
  std::set<uint64_t> ancestors_;
  std::map<uint64_t, std::string> visited_;  // directory inode -> path
  uint64_t done_ = 0;
  double start_ = 0, last_ = 0;
};

}  // namespace

std::string InvalidNameReason(std::string_view name) {
  if (name.empty()) return "empty";
  if (name == "." || name == "..") return "\"" + std::string(name) + "\"";
  if (name.size() > 255) return "longer than 255 bytes";
  for (char ch : name) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '/') return "holds '/'";
    if (c == 0) return "holds a NUL byte";
    if (c < 0x20 || c == 0x7f) return "holds a control character";
  }
  if (ValidUtf8(name)) {  // C1 controls, as UTF-8
    for (size_t i = 0; i < name.size();) {
      auto [cp, n] = DecodeUtf8(name, i);
      if (cp >= 0x80 && cp <= 0x9f) return "holds a control character";
      i += n;
    }
  }
  return "";
}

std::string PrintableName(std::string_view name) {
  std::string out;
  const bool utf8 = ValidUtf8(name);
  auto hex = [&out](std::string_view bytes) {
    for (char ch : bytes) {
      char buf[5];
      std::snprintf(buf, sizeof(buf), "\\x%02x",
                    static_cast<unsigned char>(ch));
      out += buf;
    }
  };
  for (size_t i = 0; i < name.size();) {
    if (!utf8) {
      const auto c = static_cast<unsigned char>(name[i]);
      if (c == '\\')
        out += "\\\\";
      else if (c < 0x20 || c >= 0x7f)
        hex(name.substr(i, 1));
      else
        out += name[i];
      ++i;
      continue;
    }
    auto [cp, n] = DecodeUtf8(name, i);
    if (cp == '\\')
      out += "\\\\";
    else if (IsControlCodePoint(cp))
      hex(name.substr(i, n));
    else
      out += name.substr(i, n);
    i += n;
  }
  return out;
}

Result<FileRestoreStats> RestoreGuestFiles(
    GuestTree& tree, const std::vector<std::string>& paths,
    const FileRestoreOptions& options) {
  const double start = MonotonicSeconds();
  if (paths.empty()) return InvalidArgument("no path to restore");
  if (options.path.empty() &&
      !(options.archive_writer && options.target != FileTarget::kDirectory))
    return InvalidArgument("no target given");
  if (options.dry_run && options.target != FileTarget::kDirectory)
    return InvalidArgument(
        "a dry run plans a restore into a folder, not into an archive");
  // Every path is looked up before anything is written.
  std::vector<GuestEntry> entries;
  for (const std::string& p : paths) {
    Result<GuestEntry> e = tree.Lookup(p);
    if (!e.ok() && e.status().code() == Code::kNotFound &&
        p.find_first_of("*?[") != std::string::npos)
      return NotFound(e.status().message() +
                      ": paths are taken as they are here, globs ('*', '?', "
                      "'[') are not expanded; name the files, or their "
                      "directory");
    if (!e.ok()) return e.status().WithContext(p);
    entries.push_back(std::move(*e));
  }
  FileRestoreStats stats;
  std::unique_ptr<Sink> sink;
  if (options.target == FileTarget::kDirectory)
    sink = std::make_unique<DirSink>(options, tree.has_unix_metadata(), stats);
  else
    sink = std::make_unique<ArchiveSink>(
        options.path, options.target == FileTarget::kZip,
        tree.has_unix_metadata(), options.archive_writer);
  HAVEN_ASSIGN_OR_RETURN(Sink::Dir root, sink->Root());
  Walker walker(tree, *sink, stats, options.progress, options.devices,
                options.cancel);
  std::set<std::string> used;
  Status s;
  for (size_t i = 0; i < paths.size() && s.ok(); ++i) {
    const GuestEntry& e = entries[i];
    if (e.name == "/") {  // the root: its contents go straight in
      s = walker.Children(root, e, "/", 0, &used);
      for (const auto& [path, why] : tree.Unreachable())
        stats.problems.push_back({PrintableName(path), why});
      continue;
    }
    std::string path = PrintableName(paths[i]);
    if (std::string why = InvalidNameReason(e.name); !why.empty()) {
      stats.problems.push_back({path, "invalid name (" + why + ")"});
      continue;
    }
    if (!used.insert(e.name).second) {
      stats.problems.push_back(
          {path, "name clash: another path given restores to " +
                     PrintableName(e.name)});
      continue;
    }
    s = walker.Restore(root, e, e.name, path, 0);
  }
  if (s.ok()) s = sink->Finish();
  if (!s.ok()) {
    sink->Abort();
    return s;
  }
  stats.seconds = MonotonicSeconds() - start;
  if (options.progress) {
    Progress p = ByteProgress(stats.bytes, stats.bytes, 0, stats.seconds, true);
    p.phase = "restore";
    options.progress(p);
  }
  return stats;
}

}  // namespace haven::restore
