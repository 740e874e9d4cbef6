// Tests for restore/file_point.h over catalogs built directly in a real
// repository: the catalog bytes are written with AppendRecord, stored as
// data chunks, listed by chunk-list trees and committed as a point of kind
// "files" (as agent/file_backup.cc's Backup::Commit does). That lets the
// tests build what BackupFiles never writes: hostile names, duplicate
// paths, hard links to nothing, symlinks with entries "under" them, lost
// chunks, content that disagrees with its data ranges. The restore of such
// a point must keep every good entry, report the bad ones, and write
// nothing outside its target.
#include "restore/file_point.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "repository/chunk_tree.h"
#include "repository/file_tree.h"
#include "restore/file_restore.h"
#include "tests/unit/repository_test_util.h"
#include "tests/unit/test_util.h"

namespace haven::restore {

void PrintTo(const FileRestoreProblem& p, std::ostream* os) {
  *os << "{path \"" << PrintableName(p.path) << "\", what \"" << PrintableName(p.what) << "\"}";
}

namespace {

using repository::ChunkId;
using repository::ChunkType;
using repository::FileRecord;
using repository::FileType;
using repository::Manifest;
using repository::Repository;
using ::haven::testing_util::IsOk;
using ::haven::testing_util::PathExists;
using ::haven::testing_util::RandomData;
using ::haven::testing_util::ReadWholeFile;
using ::haven::testing_util::StatusIs;
using ::haven::testing_util::WriteWholeFile;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

constexpr int64_t kT0 = 1600000000123456789;  // 2020-09-13, odd ns

Bytes B(std::string_view s) { return Bytes(s.begin(), s.end()); }

// ------------------------------------------------------------- the builder
// Collects records (and the content chunks of regular files) and commits
// them as a point of kind "files".
class PointBuilder {
 public:
  FileRecord& Dir(const std::string& path, uint32_t mode = 0755) {
    FileRecord r;
    r.type = FileType::kDir;
    r.path = path;
    r.mode = mode;
    r.nlink = 2;
    return Add(r);
  }
  // A regular file whose content is cut into `pieces` chunks.
  FileRecord& File(const std::string& path, const Bytes& content, uint32_t mode = 0644,
                   size_t pieces = 1) {
    FileRecord r;
    r.type = FileType::kFile;
    r.path = path;
    r.mode = mode;
    r.size = content.size();
    if (!content.empty()) r.extents = {{0, content.size()}};
    std::vector<Bytes> chunks;
    pieces = std::max<size_t>(1, std::min(pieces, content.size()));
    for (size_t i = 0; i < pieces && !content.empty(); ++i) {
      size_t from = content.size() * i / pieces, to = content.size() * (i + 1) / pieces;
      chunks.emplace_back(content.begin() + static_cast<long>(from),
                          content.begin() + static_cast<long>(to));
    }
    return Add(r, chunks);
  }
  FileRecord& File(const std::string& path, std::string_view text, uint32_t mode = 0644) {
    return File(path, B(text), mode);
  }
  FileRecord& Symlink(const std::string& path, const std::string& target) {
    FileRecord r;
    r.type = FileType::kSymlink;
    r.path = path;
    r.mode = 0777;
    r.target = target;
    r.size = target.size();
    return Add(r);
  }
  FileRecord& HardLink(const std::string& path, const std::string& target, uint64_t size) {
    FileRecord r;
    r.type = FileType::kFile;
    r.flags = repository::kFlagHardLink;
    r.path = path;
    r.mode = 0644;
    r.target = target;
    r.size = size;
    r.nlink = 2;
    return Add(r);
  }
  FileRecord& Special(const std::string& path, FileType type, uint64_t rdev = 0) {
    FileRecord r;
    r.type = type;
    r.path = path;
    r.mode = 0640;
    r.rdev = rdev;
    return Add(r);
  }
  // Any record; `chunks` become its content (content_first/count are set
  // at commit). `lost`: its chunk ids are the zero id, as after a repair.
  FileRecord& Add(FileRecord r, std::vector<Bytes> chunks = {}, bool lost = false) {
    if (r.mtime_ns == 0) r.mtime_ns = kT0;
    if (r.atime_ns == 0) r.atime_ns = kT0 - 1000;
    if (r.ctime_ns == 0) r.ctime_ns = kT0;
    entries_.push_back({std::move(r), std::move(chunks), lost});
    return entries_.back().rec;
  }

  // Stores everything and commits the point; the catalog is cut into
  // chunks of `catalog_piece` bytes (0: one chunk).
  Result<Manifest> Commit(Repository& repo, const std::string& name, size_t catalog_piece = 0,
                          const std::string& time = "2024-01-02T03:04:05.000000Z") {
    auto writer = repo.NewWriter();
    repository::WriteContext ctx(repo.config().compression_level);
    auto store = [&](ByteSpan node) -> Result<ChunkId> {
      ChunkId id = repo.IdFor(ChunkType::kTree, node);
      HAVEN_RETURN_IF_ERROR(writer->Put(ChunkType::kTree, id, node, ctx).status());
      return id;
    };
    repository::TreeWriter content(store), catalog(store);
    uint64_t content_count = 0, content_bytes = 0;
    Bytes cat;
    repository::AppendCatalogHeader(cat);
    for (auto& e : entries_) {
      e.rec.content_first = content_count;
      e.rec.content_count = e.chunks.size();
      for (const Bytes& c : e.chunks) {
        ChunkId id;
        if (!e.lost) {
          id = repo.IdFor(ChunkType::kData, c);
          HAVEN_RETURN_IF_ERROR(writer->Put(ChunkType::kData, id, c, ctx).status());
        }
        HAVEN_RETURN_IF_ERROR(content.Add(id));
        content_bytes += c.size();
        ++content_count;
      }
      HAVEN_RETURN_IF_ERROR(repository::AppendRecord(e.rec, cat));
    }
    const size_t piece = catalog_piece ? catalog_piece : cat.size();
    for (size_t pos = 0; pos < cat.size(); pos += piece) {
      ByteSpan c(cat.data() + pos, std::min(piece, cat.size() - pos));
      ChunkId id = repo.IdFor(ChunkType::kData, c);
      HAVEN_RETURN_IF_ERROR(writer->Put(ChunkType::kData, id, c, ctx).status());
      HAVEN_RETURN_IF_ERROR(catalog.Add(id));
    }
    HAVEN_ASSIGN_OR_RETURN(repository::TreeRoot cat_root, catalog.Finish());
    HAVEN_ASSIGN_OR_RETURN(repository::TreeRoot con_root, content.Finish());
    HAVEN_RETURN_IF_ERROR(writer->Flush());
    Manifest m;
    m.name = name;
    m.kind = "files";
    m.time = time;
    m.hostname = "test";
    m.tool = "file_point_test";
    m.consistency = "file-level";
    repository::DiskManifest c1, c2;
    c1.name = c1.kind = "catalog";
    c1.size = cat.size();
    c1.tree = cat_root;
    c2.name = c2.kind = "content";
    c2.size = content_bytes;
    c2.tree = con_root;
    m.disks = {c1, c2};
    m.file_paths = {"/"};
    m.file_entries = entries_.size();
    HAVEN_RETURN_IF_ERROR(repo.CommitSnapshot(m));
    // As a reader gets it: through the manifest's own validation.
    return repo.LoadSnapshot(m.id);
  }

 private:
  struct Entry {
    FileRecord rec;
    std::vector<Bytes> chunks;
    bool lost = false;
  };
  std::deque<Entry> entries_;  // references handed out stay valid
};

// ------------------------------------------------------------------ helpers
std::set<std::string> Listing(const std::string& dir) {
  std::set<std::string> out;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec))
    out.insert(it->path().lexically_relative(dir).string());
  EXPECT_FALSE(ec) << "listing " << dir << ": " << ec.message();
  return out;
}

std::string ReadLink(const std::string& path) {
  char buf[4096];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
  if (n < 0) return "<readlink failed>";
  return std::string(buf, static_cast<size_t>(n));
}

struct stat Lstat(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << "lstat " << path;
  return st;
}

int64_t MtimeNs(const struct stat& st) {
  return st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec;
}

void SetMtime(const std::string& path, int64_t ns) {
  struct timespec t[2] = {{ns / 1000000000, ns % 1000000000}, {ns / 1000000000, ns % 1000000000}};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), t, AT_SYMLINK_NOFOLLOW), 0) << path;
}

auto Problem(const std::string& path, const auto& what) {
  return AllOf(Field(&FileRestoreProblem::path, path), Field(&FileRestoreProblem::what, what));
}

// Every path a restore of "/" would reach: List from the root down.
std::set<std::string> Reachable(FilePoint& p) {
  std::set<std::string> out;
  auto root = p.Lookup("/");
  EXPECT_THAT(root, IsOk());
  if (!root.ok()) return out;
  out.insert("/");
  std::function<void(const GuestEntry&, const std::string&)> walk =
      [&](const GuestEntry& dir, const std::string& path) {
        auto kids = p.List(dir);
        ASSERT_THAT(kids, IsOk());
        for (const GuestEntry& k : *kids) {
          const std::string kp = (path == "/" ? "" : path) + "/" + k.name;
          out.insert(kp);
          if (k.type == GuestType::kDir) walk(k, kp);
        }
      };
  walk(*root, "/");
  return out;
}

Result<Bytes> ReadAll(FilePoint& p, const std::string& path, size_t block = 1 << 20) {
  HAVEN_ASSIGN_OR_RETURN(GuestEntry e, p.Lookup(path));
  Bytes out;
  HAVEN_RETURN_IF_ERROR(p.ReadFile(
      e,
      [&](uint64_t off, const uint8_t* data, size_t len) -> Status {
        if (off != out.size()) return Internal("ReadFile: offset " + std::to_string(off) +
                                               " after " + std::to_string(out.size()) + " bytes");
        if (len == 0 || len > block) return Internal("ReadFile: a piece of " + std::to_string(len));
        out.insert(out.end(), data, data + len);
        return OkStatus();
      },
      block));
  return out;
}

// A GuestTree that forwards to a FilePoint and calls `before_read` before
// each file is read (to change the target while the restore runs).
class HookedTree : public GuestTree {
 public:
  explicit HookedTree(FilePoint& p) : p_(p) {}
  Result<GuestEntry> Lookup(const std::string& path) override { return p_.Lookup(path); }
  Result<std::vector<GuestEntry>> List(const GuestEntry& dir) override { return p_.List(dir); }
  Status ReadFile(const GuestEntry& file,
                  const std::function<Status(uint64_t, const uint8_t*, size_t)>& sink,
                  size_t block) override {
    if (before_read) before_read(file);
    return p_.ReadFile(file, sink, block);
  }
  bool has_unix_metadata() const override { return p_.has_unix_metadata(); }
  uint64_t max_file_size() const override { return p_.max_file_size(); }

  std::function<void(const GuestEntry&)> before_read;

 private:
  FilePoint& p_;
};

// ------------------------------------------------------------------ fixture
class FilePointTest : public testing_util::RepositoryTest {
 protected:
  void SetUp() override {
    RepositoryTest::SetUp();
    repo_ = OpenRepo(true);
    ASSERT_NE(repo_, nullptr);
    target_ = tmp_.Sub("target");
    outside_ = tmp_.Sub("outside");
    ASSERT_EQ(::mkdir(outside_.c_str(), 0755), 0);
  }

  std::unique_ptr<FilePoint> Open(PointBuilder& b, const std::string& name = "pt",
                                  size_t catalog_piece = 0) {
    auto m = b.Commit(*repo_, name, catalog_piece);
    EXPECT_THAT(m, IsOk());
    if (!m.ok()) return nullptr;
    auto p = FilePoint::Open(*repo_, *m);
    EXPECT_THAT(p, IsOk());
    if (!p.ok()) return nullptr;
    return std::move(p).value();
  }

  Result<FileRestoreStats> Restore(GuestTree& tree, const std::vector<std::string>& paths,
                                   Overwrite overwrite = Overwrite::kNever) {
    FileRestoreOptions o;
    o.path = target_;
    o.overwrite = overwrite;
    o.keep_setid = keep_setid_;
    o.devices = devices_;
    return RestoreGuestFiles(tree, paths, o);
  }

  std::string T(const std::string& rel) const { return target_ + "/" + rel; }

  std::unique_ptr<Repository> repo_;
  std::string target_, outside_;
  bool keep_setid_ = false, devices_ = false;
};

// ------------------------------------------------------- a hostile catalog
TEST_F(FilePointTest, HostileCatalogRestoresTheGoodEntriesAndReportsTheBad) {
  struct stat passwd_before {};
  const bool have_passwd = ::lstat("/etc/passwd", &passwd_before) == 0;

  PointBuilder b;
  b.Dir("/");
  b.Dir("/x", 0750);
  b.File("/x/..", "dot dot");                       // invalid name
  b.File("/x/.", "dot");                            // invalid name
  FileRecord& a = b.File("/x/a", "good a");
  a.nlink = 2;  // /x/hl-ok links to it
  a.uid = 1234;
  a.gid = 5678;
  a.xattrs = {{"user.bin", std::string("\x00\x01\xff", 3)}};
  b.File("/x/a", "second a");                       // the same path again
  b.File("/x/new\nline", "nl");                     // control character
  b.File("/x/\x1b[2Jclear", "esc");                 // terminal escape
  b.HardLink("/x/hl-missing", "/x/nope", 3);        // target not in the point
  b.HardLink("/x/hl-dir", "/x/sub", 3);             // target a directory
  b.HardLink("/x/hl-self", "/x/hl-self", 3);        // target itself
  b.HardLink("/x/hl-size", "/x/a", 99);             // sizes disagree
  b.HardLink("/x/hl-ok", "/x/a", 6);
  FileRecord partial;
  partial.path = "/x/partial";
  partial.flags = repository::kFlagPartial;
  partial.mode = 0644;
  partial.size = 10;
  b.Add(partial);
  b.Symlink("/x/link", "/etc/passwd");
  b.File("/x/link/evil", "must not reach /etc");    // "under" a symlink
  b.Symlink("/x/out", outside_);
  b.File("/x/out/evil", "must not reach outside");  // "under" a symlink
  b.Dir("/x/sub");
  b.File("/x/sub/c", "c");
  b.File("/x/setuid", "#!/bin/sh\n", 04755);
  b.Special("/x/fifo", FileType::kFifo);
  b.Special("/x/dev", FileType::kCharDev, makedev(1, 3));
  b.File("/orphan/child", "no parent record");      // parent never listed
  auto p = Open(b, "pt", 97);  // a catalog of many small chunks
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->records().size(), 24u);

  auto r = Restore(*p, {"/"});
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(Listing(outside_), IsEmpty()) << "the restore wrote outside its target";
  EXPECT_EQ(Listing(target_),
            (std::set<std::string>{"x", "x/a", "x/hl-ok", "x/hl-size", "x/link", "x/out", "x/sub", "x/sub/c",
                                   "x/setuid", "x/fifo"}));
  EXPECT_EQ(ReadWholeFile(T("x/a")), B("good a"));
  EXPECT_EQ(ReadWholeFile(T("x/hl-ok")), B("good a"));
  EXPECT_EQ(Lstat(T("x/a")).st_ino, Lstat(T("x/hl-ok")).st_ino) << "hard link not restored as one";
  // hl-size names a file restored before: it is linked to it, whatever
  // size it claims (read on its own, its content is refused).
  EXPECT_EQ(r->hardlinks, 2u);
  EXPECT_EQ(Lstat(T("x/a")).st_ino, Lstat(T("x/hl-size")).st_ino);
  EXPECT_THAT(ReadAll(*p, "/x/hl-size"),
              StatusIs(Code::kDataLoss, HasSubstr("does not hold its content")));
  EXPECT_EQ(Lstat(T("x/a")).st_uid, 1234u);
  EXPECT_EQ(Lstat(T("x/a")).st_gid, 5678u);
  char xv[16];
  ASSERT_EQ(::getxattr(T("x/a").c_str(), "user.bin", xv, sizeof xv), 3);
  EXPECT_EQ(std::string(xv, 3), std::string("\x00\x01\xff", 3));
  EXPECT_EQ(ReadLink(T("x/link")), "/etc/passwd");
  EXPECT_EQ(ReadLink(T("x/out")), outside_);
  EXPECT_TRUE(S_ISLNK(Lstat(T("x/link")).st_mode));
  EXPECT_EQ(ReadWholeFile(T("x/sub/c")), B("c"));
  EXPECT_EQ(Lstat(T("x/setuid")).st_mode & 07777, 0755u) << "set-uid kept for a guest file";
  EXPECT_TRUE(S_ISFIFO(Lstat(T("x/fifo")).st_mode));
  EXPECT_EQ(Lstat(T("x")).st_mode & 07777, 0750u);
  EXPECT_EQ(MtimeNs(Lstat(T("x/a"))), kT0);
  if (have_passwd) {
    struct stat after = Lstat("/etc/passwd");
    EXPECT_EQ(after.st_size, passwd_before.st_size);
    EXPECT_EQ(MtimeNs(after), MtimeNs(passwd_before));
  }

  EXPECT_THAT(r->problems,
              UnorderedElementsAre(
                  Problem("/x/..", HasSubstr("invalid name")),
                  Problem("/x/.", HasSubstr("invalid name")),
                  Problem("/x/a", HasSubstr("name clash")),
                  Problem("/x/new\\x0aline", HasSubstr("control character")),
                  Problem("/x/\\x1b[2Jclear", HasSubstr("control character")),
                  Problem("/x/hl-missing", HasSubstr("does not hold its content")),
                  Problem("/x/hl-dir", HasSubstr("does not hold its content")),
                  Problem("/x/hl-self", HasSubstr("does not hold its content")),
                  Problem("/x/partial", HasSubstr("not captured")),
                  Problem("/x/dev", HasSubstr("special files are not restored")),
                  // Under a symlink or no directory: reported, never reached.
                  Problem("/x/link/evil", HasSubstr("not a directory")),
                  Problem("/x/out/evil", HasSubstr("not a directory")),
                  Problem("/orphan/child", HasSubstr("not in the backup"))));
  // a, sub/c, setuid written; hl-ok and hl-size are links (counted apart).
  EXPECT_EQ(r->files, 3u);
  EXPECT_EQ(r->symlinks, 2u);
  EXPECT_EQ(r->fifos, 1u);
  EXPECT_FALSE(r->complete());
}

// Records no directory leads to (under a symlink, or whose parent has no
// record) are in the point but can never be restored. file_restore.h:
// "Entries that cannot be restored are skipped and listed in `problems`";
// spec: exit 0 only when everything was restored.
// HAVEN GAP (restore/file_point.cc, FilePoint::Open / List): such records
// are dropped without a word: the restore reports no problem for them and
// is complete(). BackupFiles never writes them, so only a damaged or
// crafted catalog (which needs the repository key) has them.
TEST_F(FilePointTest, RecordsNoDirectoryLeadsToAreReported) {
  PointBuilder b;
  b.Dir("/");
  b.Symlink("/link", outside_);
  b.File("/link/evil", "under a symlink");
  b.File("/orphan/child", "no parent record");
  b.File("/ok", "ok");
  auto p = Open(b);
  ASSERT_NE(p, nullptr);
  auto r = Restore(*p, {"/"});
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(Listing(outside_), IsEmpty());
  EXPECT_EQ(Listing(target_), (std::set<std::string>{"link", "ok"}));
  EXPECT_THAT(r->problems, Contains(Field(&FileRestoreProblem::path, HasSubstr("evil"))));
  EXPECT_THAT(r->problems, Contains(Field(&FileRestoreProblem::path, HasSubstr("child"))));
  EXPECT_FALSE(r->complete()) << "entries of the point were not restored, yet complete()";
}

TEST_F(FilePointTest, AHostilePathGivenDirectlyIsRefusedByName) {
  PointBuilder b;
  b.Dir("/");
  b.Dir("/x");
  b.File("/x/..", "dot dot");
  b.File("/x/ok", "ok");
  auto p = Open(b);
  ASSERT_NE(p, nullptr);
  auto r = Restore(*p, {"/x/..", "/x/ok"});
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems, ElementsAre(Problem("/x/..", HasSubstr("invalid name"))));
  EXPECT_EQ(Listing(target_), (std::set<std::string>{"ok"}));
  EXPECT_THAT(Listing(tmp_.path()), Not(Contains("dot dot")));
  EXPECT_THAT(Listing(outside_), IsEmpty());
}

TEST_F(FilePointTest, SetIdBitsAndDevicesOnlyWhenAsked) {
  if (::geteuid() != 0) GTEST_SKIP() << "set-id bits and device nodes need root";
  PointBuilder b;
  b.Dir("/");
  b.File("/setuid", "x", 04755);
  b.File("/setgid", "y", 02750);
  b.Special("/null", FileType::kCharDev, makedev(1, 3));
  auto p = Open(b);
  ASSERT_NE(p, nullptr);
  keep_setid_ = true;
  devices_ = true;
  auto r = Restore(*p, {"/"});
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems, IsEmpty());
  EXPECT_EQ(Lstat(T("setuid")).st_mode & 07777, 04755u);
  EXPECT_EQ(Lstat(T("setgid")).st_mode & 07777, 02750u);
  struct stat st = Lstat(T("null"));
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(1, 3));
  EXPECT_EQ(r->devices, 1u);
}

// ----------------------------------------- the target changes meanwhile
TEST_F(FilePointTest, DirectorySwappedForASymlinkDuringTheRestoreIsNotFollowed) {
  PointBuilder b;
  b.Dir("/");
  b.Dir("/top");
  b.Dir("/top/d");
  b.File("/top/d/f1", RandomData(300000, 1), 0644, 3);
  b.File("/top/d/f2", "second");
  b.Dir("/top/d/e");
  b.File("/top/d/e/f3", "third");
  b.File("/top/zz", "last");
  b.File("/top/zz2", "after the second swap");
  auto p = Open(b);
  ASSERT_NE(p, nullptr);
  HookedTree tree(*p);
  int swaps = 0;
  tree.before_read = [&](const GuestEntry& f) {
    if (f.name == "f1") {  // top/d -> moved-d; top/d now points outside
      ASSERT_EQ(::rename(T("top/d").c_str(), T("moved-d").c_str()), 0);
      ASSERT_EQ(::symlink(outside_.c_str(), T("top/d").c_str()), 0);
      ++swaps;
    }
    if (f.name == "zz") {  // the whole of top
      ASSERT_EQ(::rename(T("top").c_str(), T("moved-top").c_str()), 0);
      ASSERT_EQ(::symlink(outside_.c_str(), T("top").c_str()), 0);
      ++swaps;
    }
  };
  auto r = Restore(tree, {"/"});
  ASSERT_EQ(swaps, 2);
  EXPECT_THAT(Listing(outside_), IsEmpty()) << "the restore wrote through a symlink";
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems, IsEmpty());
  EXPECT_EQ(Listing(target_),
            (std::set<std::string>{"top", "moved-top", "moved-top/d", "moved-top/zz",
                                   "moved-top/zz2", "moved-d", "moved-d/f1", "moved-d/f2",
                                   "moved-d/e", "moved-d/e/f3"}));
  EXPECT_EQ(ReadWholeFile(T("moved-d/f1")), RandomData(300000, 1));
  EXPECT_EQ(ReadWholeFile(T("moved-d/e/f3")), B("third"));
  EXPECT_EQ(ReadWholeFile(T("moved-top/zz2")), B("after the second swap"));
  EXPECT_EQ(ReadLink(T("top")), outside_);
  EXPECT_EQ(ReadLink(T("moved-top/d")), outside_);
}

// -------------------------------------------------------------- overwrite
class OverwriteTest : public FilePointTest {
 protected:
  void SetUp() override {
    FilePointTest::SetUp();
    PointBuilder b;
    b.Dir("/");
    b.Dir("/top");
    b.File("/top/f", "from the backup");
    b.Symlink("/top/l", "target-in-backup");
    b.Dir("/top/d");
    b.File("/top/d/g", "g");
    point_ = Open(b);
    ASSERT_NE(point_, nullptr);
    auto r = Restore(*point_, {"/top"});
    ASSERT_THAT(r, IsOk());
    ASSERT_THAT(r->problems, IsEmpty());
    // The target's own versions of f and l, newer than the backup's.
    ASSERT_EQ(::unlink(T("top/f").c_str()), 0);
    WriteWholeFile(T("top/f"), B("local edit"));
    SetMtime(T("top/f"), kT0 + 100);
    ASSERT_EQ(::unlink(T("top/l").c_str()), 0);
    ASSERT_EQ(::symlink("local-target", T("top/l").c_str()), 0);
    SetMtime(T("top/l"), kT0 + 100);
  }
  std::unique_ptr<FilePoint> point_;
};

TEST_F(OverwriteTest, NeverKeepsWhatIsThereAndReportsIt) {
  auto r = Restore(*point_, {"/top"}, Overwrite::kNever);
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems,
              UnorderedElementsAre(Problem("/top/f", HasSubstr("exists in the target; not replaced")),
                                   Problem("/top/l", HasSubstr("exists in the target; not replaced")),
                                   Problem("/top/d/g", HasSubstr("exists in the target"))));
  EXPECT_EQ(r->skipped, 0u);
  EXPECT_EQ(ReadWholeFile(T("top/f")), B("local edit"));
  EXPECT_EQ(ReadLink(T("top/l")), "local-target");
}

TEST_F(OverwriteTest, IfNewerSkipsTheTargetsNewerFiles) {
  auto r = Restore(*point_, {"/top"}, Overwrite::kIfNewer);
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems, IsEmpty());
  // f and l are newer in the target; g is as old as the backup's (not newer).
  EXPECT_EQ(r->skipped, 3u);
  // Nothing was written, so nothing is counted as restored (the
  // directories were there already: entered, not restored).
  EXPECT_EQ(r->files, 0u);
  EXPECT_EQ(r->symlinks, 0u);
  EXPECT_EQ(r->bytes, 0u);
  EXPECT_EQ(r->dirs, 0u);
  EXPECT_EQ(ReadWholeFile(T("top/f")), B("local edit"));
  EXPECT_EQ(ReadLink(T("top/l")), "local-target");
}

TEST_F(OverwriteTest, IfNewerReplacesTheTargetsOlderFiles) {
  SetMtime(T("top/f"), kT0 - 100);
  SetMtime(T("top/l"), kT0 - 100);
  auto r = Restore(*point_, {"/top"}, Overwrite::kIfNewer);
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems, IsEmpty());
  EXPECT_EQ(r->skipped, 1u);  // g
  EXPECT_EQ(r->files, 1u);     // f
  EXPECT_EQ(r->symlinks, 1u);  // l
  EXPECT_EQ(r->bytes, std::string("from the backup").size());
  EXPECT_EQ(ReadWholeFile(T("top/f")), B("from the backup"));
  EXPECT_EQ(MtimeNs(Lstat(T("top/f"))), kT0);
  EXPECT_EQ(ReadLink(T("top/l")), "target-in-backup");
  EXPECT_THAT(Listing(target_), Not(Contains(HasSubstr(".haven-partial"))));
}

TEST_F(OverwriteTest, AlwaysReplacesFilesAndSymlinksButNeverADirectory) {
  // Where the backup has a file, the target now has a directory.
  ASSERT_EQ(::unlink(T("top/d/g").c_str()), 0);
  ASSERT_EQ(::mkdir(T("top/d/g").c_str(), 0755), 0);
  ASSERT_EQ(::symlink(outside_.c_str(), T("top/d/g/escape").c_str()), 0);
  auto r = Restore(*point_, {"/top"}, Overwrite::kAlways);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->skipped, 0u);
  EXPECT_THAT(r->problems,
              ElementsAre(Problem("/top/d/g", HasSubstr("is a directory in the target"))));
  EXPECT_EQ(ReadWholeFile(T("top/f")), B("from the backup"));
  EXPECT_EQ(ReadLink(T("top/l")), "target-in-backup");
  EXPECT_THAT(Listing(outside_), IsEmpty());
}

TEST_F(OverwriteTest, AlwaysReplacesASymlinkInsteadOfWritingThroughIt) {
  WriteWholeFile(outside_ + "/victim", B("victim"));
  ASSERT_EQ(::unlink(T("top/f").c_str()), 0);
  ASSERT_EQ(::symlink((outside_ + "/victim").c_str(), T("top/f").c_str()), 0);
  auto r = Restore(*point_, {"/top"}, Overwrite::kAlways);
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems, IsEmpty());
  EXPECT_FALSE(S_ISLNK(Lstat(T("top/f")).st_mode));
  EXPECT_EQ(ReadWholeFile(T("top/f")), B("from the backup"));
  EXPECT_EQ(ReadWholeFile(outside_ + "/victim"), B("victim"));
}

// ------------------------------------------------------------------ select
class SelectTest : public FilePointTest {
 protected:
  void SetUp() override {
    FilePointTest::SetUp();
    PointBuilder b;
    b.Dir("/");
    b.Dir("/home");
    b.File("/home/e.bin", "e");
    b.Dir("/srv");
    b.Dir("/srv/data");
    b.File("/srv/data/a.txt", "a");
    b.File("/srv/data/b.log", "b");
    b.Dir("/srv/data/sub");
    b.File("/srv/data/sub/c.txt", "c");
    b.Dir("/srv/other");
    b.File("/srv/other/d.txt", "d");
    point_ = Open(b);
    ASSERT_NE(point_, nullptr);
  }
  std::set<std::string> all_ = {"/",
                                "/home",
                                "/home/e.bin",
                                "/srv",
                                "/srv/data",
                                "/srv/data/a.txt",
                                "/srv/data/b.log",
                                "/srv/data/sub",
                                "/srv/data/sub/c.txt",
                                "/srv/other",
                                "/srv/other/d.txt"};
  std::unique_ptr<FilePoint> point_;
};

TEST_F(SelectTest, EverythingByDefaultAndForAnEmptyListOrRoot) {
  EXPECT_EQ(Reachable(*point_), all_);
  ASSERT_THAT(point_->Select({}), IsOk());
  EXPECT_EQ(Reachable(*point_), all_);
  ASSERT_THAT(point_->Select({"/"}), IsOk());
  EXPECT_EQ(Reachable(*point_), all_);
}

TEST_F(SelectTest, APathBringsItsSubtreeAndItsParents) {
  for (const char* p : {"/srv/data/sub", "/srv/data/sub/", "/srv/data/sub//"}) {
    SCOPED_TRACE(p);
    ASSERT_THAT(point_->Select({p}), IsOk());
    EXPECT_EQ(Reachable(*point_), (std::set<std::string>{"/", "/srv", "/srv/data", "/srv/data/sub",
                                                         "/srv/data/sub/c.txt"}));
  }
  ASSERT_THAT(point_->Select({"/srv/data/a.txt", "/home"}), IsOk());
  EXPECT_EQ(Reachable(*point_), (std::set<std::string>{"/", "/srv", "/srv/data", "/srv/data/a.txt",
                                                       "/home", "/home/e.bin"}));
}

TEST_F(SelectTest, NameGlobsMatchNamesAnywhere) {
  ASSERT_THAT(point_->Select({"*.txt"}), IsOk());
  EXPECT_EQ(Reachable(*point_),
            (std::set<std::string>{"/", "/srv", "/srv/data", "/srv/data/a.txt", "/srv/data/sub",
                                   "/srv/data/sub/c.txt", "/srv/other", "/srv/other/d.txt"}));
  ASSERT_THAT(point_->Select({"su?"}), IsOk());  // a directory: with its subtree
  EXPECT_EQ(Reachable(*point_), (std::set<std::string>{"/", "/srv", "/srv/data", "/srv/data/sub",
                                                       "/srv/data/sub/c.txt"}));
  ASSERT_THAT(point_->Select({"[ab].*"}), IsOk());
  EXPECT_EQ(Reachable(*point_), (std::set<std::string>{"/", "/srv", "/srv/data", "/srv/data/a.txt",
                                                       "/srv/data/b.log"}));
}

TEST_F(SelectTest, PathGlobsDoNotCrossSlashes) {
  ASSERT_THAT(point_->Select({"/srv/*"}), IsOk());
  std::set<std::string> want = all_;
  want.erase("/home");
  want.erase("/home/e.bin");
  EXPECT_EQ(Reachable(*point_), want);
  ASSERT_THAT(point_->Select({"/srv/*/*.txt"}), IsOk());
  EXPECT_EQ(Reachable(*point_), (std::set<std::string>{"/", "/srv", "/srv/data", "/srv/data/a.txt",
                                                       "/srv/other", "/srv/other/d.txt"}));
  // '*' does not cross '/': /srv/data/sub/c.txt is two levels down.
  EXPECT_THAT(point_->Select({"/srv/*.txt"}),
              StatusIs(Code::kNotFound, HasSubstr("/srv/*.txt: matches nothing")));
}

TEST_F(SelectTest, UnknownPathsAndEmptyGlobsAreNotFound) {
  EXPECT_THAT(point_->Select({"/nope"}),
              StatusIs(Code::kNotFound, HasSubstr("/nope: not in this recovery point")));
  EXPECT_THAT(point_->Select({"/srv", "/srv/data/zzz"}),
              StatusIs(Code::kNotFound, HasSubstr("/srv/data/zzz: not in this recovery point")));
  EXPECT_THAT(point_->Select({"srv"}), StatusIs(Code::kNotFound, HasSubstr("srv: not in")));
  EXPECT_THAT(point_->Select({"*.doc"}),
              StatusIs(Code::kNotFound, HasSubstr("*.doc: matches nothing")));
  EXPECT_THAT(point_->Select({"/home/*.txt"}),
              StatusIs(Code::kNotFound, HasSubstr("matches nothing")));
}

TEST_F(SelectTest, RestoreOfTheRootRestoresOnlyTheSelection) {
  ASSERT_THAT(point_->Select({"/srv/data/sub", "*.log"}), IsOk());
  auto r = Restore(*point_, {"/"});
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems, IsEmpty());
  EXPECT_EQ(Listing(target_), (std::set<std::string>{"srv", "srv/data", "srv/data/sub",
                                                     "srv/data/sub/c.txt", "srv/data/b.log"}));
  EXPECT_EQ(ReadWholeFile(T("srv/data/sub/c.txt")), B("c"));
}

// --------------------------------------------------------- lookup and read
TEST_F(FilePointTest, LookupListAndMetadata) {
  PointBuilder b;
  b.Dir("/");
  b.Dir("/d", 0700);
  FileRecord& f = b.File("/d/f", "content", 0640);
  f.uid = 7;
  f.gid = 8;
  f.user = "seven";
  f.group = "eight";
  f.xattrs = {{"user.a", "1"}};
  b.Symlink("/d/l", "f");
  b.Special("/d/blk", FileType::kBlockDev, makedev(8, 1));
  auto p = Open(b);
  ASSERT_NE(p, nullptr);
  auto root = p->Lookup("");
  ASSERT_THAT(root, IsOk());
  EXPECT_EQ(root->name, "/");
  EXPECT_EQ(root->type, GuestType::kDir);
  auto e = p->Lookup("/d/f");
  ASSERT_THAT(e, IsOk());
  EXPECT_EQ(e->name, "f");
  EXPECT_EQ(e->type, GuestType::kFile);
  EXPECT_EQ(e->size, 7u);
  EXPECT_EQ(e->mode, 0640u);
  EXPECT_EQ(e->uid, 7u);
  EXPECT_EQ(e->user, "seven");
  EXPECT_EQ(e->group, "eight");
  EXPECT_EQ(e->mtime_ns, kT0);
  EXPECT_EQ(e->xattrs, f.xattrs);
  EXPECT_EQ(e->hardlink, "");
  auto l = p->Lookup("/d/l");
  ASSERT_THAT(l, IsOk());
  EXPECT_EQ(l->link_target, "f");
  auto blk = p->Lookup("/d/blk");
  ASSERT_THAT(blk, IsOk());
  EXPECT_EQ(blk->type, GuestType::kBlockDev);
  EXPECT_EQ(blk->rdev, makedev(8, 1));
  EXPECT_THAT(p->Lookup("/d/nope"), StatusIs(Code::kNotFound, HasSubstr("/d/nope: not in")));
  auto d = p->Lookup("/d/");
  ASSERT_THAT(d, IsOk());
  auto kids = p->List(*d);
  ASSERT_THAT(kids, IsOk());
  std::vector<std::string> names;
  for (const auto& k : *kids) names.push_back(k.name);
  EXPECT_THAT(names, UnorderedElementsAre("f", "l", "blk"));
  EXPECT_THAT(p->List(*e), StatusIs(Code::kInvalidArgument, HasSubstr("not a directory")));
  GuestEntry bogus;
  bogus.name = "bogus";
  bogus.inode = 1000;
  EXPECT_THAT(p->List(bogus), StatusIs(Code::kInvalidArgument, HasSubstr("not a directory")));
  EXPECT_THAT(p->ReadFile(bogus, [](uint64_t, const uint8_t*, size_t) { return OkStatus(); }),
              StatusIs(Code::kInvalidArgument, HasSubstr("not in this recovery point")));
  EXPECT_TRUE(p->has_unix_metadata());
  ASSERT_NE(p->Find("/d/l"), nullptr);
  EXPECT_EQ(p->Find("/d/l")->target, "f");
  EXPECT_EQ(p->Find("/nope"), nullptr);
}

TEST_F(FilePointTest, ReadFileGivesTheContentInBlocksAndHolesAsZeros) {
  PointBuilder b;
  b.Dir("/");
  const Bytes big = RandomData(1000003, 5);
  b.File("/big", big, 0644, 4);
  // A sparse file: data at [10, 15) and [50, 55) of 100 bytes, its 10
  // content bytes in two chunks that do not follow the ranges (3 + 7).
  FileRecord sparse;
  sparse.path = "/sparse";
  sparse.mode = 0644;
  sparse.size = 100;
  sparse.extents = {{10, 5}, {50, 5}};
  b.Add(sparse, {B("abc"), B("defghij")});
  FileRecord holes;  // all hole
  holes.path = "/holes";
  holes.mode = 0644;
  holes.size = 3 << 20;
  b.Add(holes);
  b.File("/empty", "");
  auto p = Open(b);
  ASSERT_NE(p, nullptr);
  for (size_t block : {size_t{1} << 20, size_t{7}, size_t{65536}}) {
    SCOPED_TRACE(block);
    auto got = ReadAll(*p, "/big", block);
    ASSERT_THAT(got, IsOk());
    EXPECT_TRUE(*got == big);
  }
  auto s = ReadAll(*p, "/sparse", 4);
  ASSERT_THAT(s, IsOk());
  Bytes want(100, 0);
  std::memcpy(want.data() + 10, "abcde", 5);
  std::memcpy(want.data() + 50, "fghij", 5);
  EXPECT_EQ(*s, want);
  auto h = ReadAll(*p, "/holes");
  ASSERT_THAT(h, IsOk());
  EXPECT_EQ(*h, Bytes(3 << 20, 0));
  auto e = ReadAll(*p, "/empty");
  ASSERT_THAT(e, IsOk());
  EXPECT_TRUE(e->empty());
  EXPECT_EQ(p->chunks_read(), 4u * 3 + 2 * 1);  // big thrice, sparse once
  EXPECT_EQ(p->max_file_size(), 1ull << 56);

  // Restored: holes stay holes.
  auto r = Restore(*p, {"/"});
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems, IsEmpty());
  EXPECT_EQ(ReadWholeFile(T("sparse")), want);
  EXPECT_EQ(ReadWholeFile(T("big")), big);
  EXPECT_EQ(Lstat(T("holes")).st_size, 3 << 20);
  EXPECT_LT(Lstat(T("holes")).st_blocks * 512, 1 << 20) << "holes written as data";
}

TEST_F(FilePointTest, ContentThatDisagreesWithItsDataRangesIsDataLoss) {
  PointBuilder b;
  b.Dir("/");
  FileRecord more;  // 8 content bytes for 5 bytes of ranges
  more.path = "/more";
  more.size = 10;
  more.extents = {{0, 5}};
  b.Add(more, {B("12345678")});
  FileRecord less;  // 4 content bytes for 10 bytes of ranges
  less.path = "/less";
  less.size = 10;
  less.extents = {{0, 10}};
  b.Add(less, {B("1234")});
  FileRecord none;  // ranges, no content
  none.path = "/none";
  none.size = 10;
  none.extents = {{0, 10}};
  b.Add(none);
  FileRecord lost;  // its chunk cleared by a repair
  lost.path = "/lost";
  lost.size = 4;
  lost.extents = {{0, 4}};
  b.Add(lost, {B("1234")}, /*lost=*/true);
  FileRecord partial;
  partial.path = "/partial";
  partial.flags = repository::kFlagPartial;
  partial.size = 4;
  b.Add(partial);
  b.File("/good", "good");
  auto p = Open(b);
  ASSERT_NE(p, nullptr);
  EXPECT_THAT(ReadAll(*p, "/more"),
              StatusIs(Code::kDataLoss, HasSubstr("more content than its data ranges hold")));
  EXPECT_THAT(ReadAll(*p, "/less"),
              StatusIs(Code::kDataLoss, HasSubstr("shorter than its data ranges")));
  EXPECT_THAT(ReadAll(*p, "/none"),
              StatusIs(Code::kDataLoss, HasSubstr("shorter than its data ranges")));
  EXPECT_THAT(ReadAll(*p, "/lost"),
              StatusIs(Code::kDataLoss, HasSubstr("chunk 0 of its content was lost")));
  EXPECT_THAT(ReadAll(*p, "/partial"), StatusIs(Code::kDataLoss, HasSubstr("not captured")));
  // A restore skips each of them (no partial file left) and keeps the rest.
  auto r = Restore(*p, {"/"});
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->problems.size(), 5u);
  EXPECT_EQ(Listing(target_), (std::set<std::string>{"good"}));
}

TEST_F(FilePointTest, ContentIdsOfFilesAndHardLinks) {
  PointBuilder b;
  b.Dir("/");
  b.File("/a", RandomData(1000, 1), 0644, 3);
  b.File("/b", RandomData(1000, 1), 0644, 3);  // the same bytes, the same cuts
  b.File("/c", RandomData(1000, 2), 0644, 3);
  b.HardLink("/h", "/a", 1000);
  b.HardLink("/dangling", "/nope", 1000);
  b.File("/empty", "");
  auto p = Open(b);
  ASSERT_NE(p, nullptr);
  auto a = p->ContentIds(*p->Find("/a"));
  auto bb = p->ContentIds(*p->Find("/b"));
  auto c = p->ContentIds(*p->Find("/c"));
  auto h = p->ContentIds(*p->Find("/h"));
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(bb, IsOk());
  ASSERT_THAT(c, IsOk());
  ASSERT_THAT(h, IsOk());
  EXPECT_EQ(a->size(), 3u);
  EXPECT_EQ(*a, *bb);
  EXPECT_NE(*a, *c);
  EXPECT_EQ(*h, *a);
  for (const ChunkId& id : *a) EXPECT_FALSE(id.IsZero());
  auto d = p->ContentIds(*p->Find("/dangling"));
  ASSERT_THAT(d, IsOk());
  EXPECT_THAT(*d, IsEmpty());
  auto e = p->ContentIds(*p->Find("/empty"));
  ASSERT_THAT(e, IsOk());
  EXPECT_THAT(*e, IsEmpty());
}

// A hard link is counted as one, in a folder and in a tar; the files
// count holds only files written with their content.
TEST_F(FilePointTest, HardLinksAreCountedApartFromFiles) {
  PointBuilder b;
  b.Dir("/");
  b.Dir("/d");
  b.File("/d/a", "shared").nlink = 3;
  b.HardLink("/d/h1", "/d/a", 6);
  b.HardLink("/d/h2", "/d/a", 6);
  b.File("/d/b", "bb");
  auto p = Open(b);
  ASSERT_NE(p, nullptr);
  auto dir = Restore(*p, {"/d"});
  ASSERT_THAT(dir, IsOk());
  EXPECT_THAT(dir->problems, IsEmpty());
  EXPECT_EQ(dir->files, 2u);
  EXPECT_EQ(dir->hardlinks, 2u);
  EXPECT_EQ(dir->bytes, 6u + 2u);
  EXPECT_EQ(dir->dirs, 1u);
  EXPECT_EQ(Lstat(T("d/a")).st_ino, Lstat(T("d/h2")).st_ino);
  EXPECT_EQ(Lstat(T("d/a")).st_nlink, 3u);
  for (FileTarget archive : {FileTarget::kTar, FileTarget::kZip}) {
    FileRestoreOptions o;
    o.target = archive;
    o.path = target_ + (archive == FileTarget::kTar ? ".tar" : ".zip");
    auto r = RestoreGuestFiles(*p, {"/d"}, o);
    ASSERT_THAT(r, IsOk());
    EXPECT_THAT(r->problems, IsEmpty());
    if (archive == FileTarget::kTar) {  // links as link entries
      EXPECT_EQ(r->files, 2u);
      EXPECT_EQ(r->hardlinks, 2u);
      EXPECT_EQ(r->bytes, 6u + 2u);
    } else {  // zip has no links: every name carries the content
      EXPECT_EQ(r->files, 4u);
      EXPECT_EQ(r->hardlinks, 0u);
      EXPECT_EQ(r->bytes, 3 * 6u + 2u);
    }
    EXPECT_EQ(r->dirs, 1u);
    EXPECT_TRUE(PathExists(o.path));
  }
}

// ------------------------------------------------------ broken points
TEST_F(FilePointTest, ImagePointsAreRefused) {
  Manifest m;
  m.kind = "image";
  m.name = "vm";
  m.id = "0123456789abcdef";
  auto p = FilePoint::Open(*repo_, m);
  EXPECT_THAT(p, StatusIs(Code::kInvalidArgument, HasSubstr("not a file backup")));
}

TEST_F(FilePointTest, StreamsWhoseSizeDisagreesWithTheManifestAreDataLoss) {
  PointBuilder b;
  b.Dir("/");
  b.File("/f", "f");
  auto m = b.Commit(*repo_, "pt", 16);
  ASSERT_THAT(m, IsOk());
  ASSERT_THAT(FilePoint::Open(*repo_, *m), IsOk());
  Manifest longer = *m;
  longer.disks[0].size += 1;
  EXPECT_THAT(FilePoint::Open(*repo_, longer),
              StatusIs(Code::kDataLoss, HasSubstr("its manifest says")));
  Manifest shorter = *m;
  shorter.disks[0].size -= 1;
  EXPECT_THAT(FilePoint::Open(*repo_, shorter),
              StatusIs(Code::kDataLoss, HasSubstr("longer than its manifest says")));
}

// file_tree.h, ReadStream: "A hole (a chunk lost and cleared by `haven
// repair snapshots`) is DataLoss naming the chunk."
// HAVEN BUG (repository/file_tree.cc, ReadStream, `if (id.IsZero()) return
// DataLoss(... " was lost (cleared by a repair)")`): WalkTree never visits
// a zero id (repository/chunk_tree.cc, Walk: `if (!child.IsZero())
// visit(...)`), so that check is dead code. The catalog is parsed with the
// lost chunk's bytes simply missing: the error is whatever the parser
// trips over first ("catalog entry /: truncated or too long" here), or,
// when the gap falls between records, the records after it are handed on
// and only the final size check ("N bytes, its manifest says M") fails.
// The code is DataLoss either way; the message never names the lost chunk.
TEST_F(FilePointTest, ALostCatalogChunkIsDataLoss) {
  PointBuilder b;
  b.Dir("/");
  b.File("/f", "f");
  auto m = b.Commit(*repo_, "pt", 16);
  ASSERT_THAT(m, IsOk());
  ASSERT_GT(m->disks[0].tree.count, 2u);
  std::vector<ChunkId> ids;
  repository::ReadContext rctx;
  repository::TreeReader reader(m->disks[0].tree, repo_->TreeNodeLoader(rctx));
  for (uint64_t i = 0; i < m->disks[0].tree.count; ++i) {
    auto id = reader.Get(i);
    ASSERT_THAT(id, IsOk());
    ids.push_back(*id);
  }
  // The same catalog with its second chunk cleared by a repair.
  ids[1] = ChunkId{};
  auto writer = repo_->NewWriter();
  repository::WriteContext ctx(repo_->config().compression_level);
  repository::TreeWriter t([&](ByteSpan node) -> Result<ChunkId> {
    ChunkId id = repo_->IdFor(ChunkType::kTree, node);
    HAVEN_RETURN_IF_ERROR(writer->Put(ChunkType::kTree, id, node, ctx).status());
    return id;
  });
  for (const ChunkId& id : ids) ASSERT_THAT(t.Add(id), IsOk());
  auto root = t.Finish();
  ASSERT_THAT(root, IsOk());
  ASSERT_THAT(writer->Flush(), IsOk());
  Manifest lost = *m;
  lost.disks[0].tree = *root;
  auto p = FilePoint::Open(*repo_, lost);
  EXPECT_THAT(p, StatusIs(Code::kDataLoss, ::testing::_));
  EXPECT_THAT(p, StatusIs(Code::kDataLoss, HasSubstr("catalog chunk 1 was lost")));
}

TEST_F(FilePointTest, ACatalogThatDoesNotParseIsDataLoss) {
  PointBuilder b;
  b.Dir("/");
  FileRecord bad;
  bad.path = "/f";
  bad.size = 10;
  bad.extents = {{5, 10}};  // beyond size: DecodeRecord refuses it
  b.Add(bad);
  auto m = b.Commit(*repo_, "pt");
  ASSERT_THAT(m, IsOk());
  EXPECT_THAT(FilePoint::Open(*repo_, *m),
              StatusIs(Code::kDataLoss, HasSubstr("a data range lies outside the file")));
}

TEST_F(FilePointTest, ForEachRecordRefusesAPointWithoutStreams) {
  Manifest m;
  m.kind = "files";
  m.id = "0123456789abcdef";
  EXPECT_THAT(repository::ForEachRecord(*repo_, m, [](FileRecord&&) { return OkStatus(); }),
              StatusIs(Code::kInvalidArgument, HasSubstr("is not a file backup")));
}

// HAVEN BUG (restore/file_point.cc, FilePoint::FilePoint, the initializer
// `content_(*m.FindStream("content"))`): Open checks only m.kind, then the
// constructor dereferences FindStream("content") before ForEachRecord can
// say "is not a file backup"; for a manifest of kind "files" without
// streams that is a null dereference (UBSan: "file_point.cc:171: reference
// binding to null pointer of type 'const struct DiskManifest'"; without
// sanitizers, a crash copying it). Manifest::FromJson refuses such
// manifests, so only an in-memory Manifest reaches it. Disabled: it takes
// the whole test binary down.
TEST_F(FilePointTest, OpenOfAFilesPointWithoutStreamsIsAnError) {
  Manifest m;
  m.kind = "files";
  m.id = "0123456789abcdef";
  EXPECT_THAT(FilePoint::Open(*repo_, m),
              StatusIs(Code::kDataLoss, HasSubstr("without its catalog")));
}

// -------------------------------------------------------------------- diff
TEST_F(FilePointTest, DiffPointsSortsChangesIntoTheirKinds) {
  auto common = [&](PointBuilder& b) {
    b.Dir("/");
    b.File("/same", RandomData(5000, 9), 0644, 2);
    b.Dir("/dir");
    b.File("/dir/same", "same");
  };
  PointBuilder a, c;
  common(a);
  common(c);
  a.File("/mod", "AAAA");
  c.File("/mod", "AAAAB");  // size
  a.File("/mod-same-size", "abcd");
  c.File("/mod-same-size", "abce");  // only the chunk ids differ
  a.File("/meta", "m", 0644);
  c.File("/meta", "m", 0600);
  a.File("/owner", "o").uid = 1;
  c.File("/owner", "o").uid = 2;
  a.File("/group", "g").gid = 1;
  c.File("/group", "g").gid = 2;
  a.File("/mtime", "t");
  c.File("/mtime", "t").mtime_ns = kT0 + 1;
  a.File("/atime", "t");
  c.File("/atime", "t").atime_ns = kT0 + 5;  // not a change
  a.File("/xattr", "x").xattrs = {{"user.k", "1"}};
  c.File("/xattr", "x").xattrs = {{"user.k", "2"}};
  a.File("/gone", "gone");
  c.File("/new", "new");
  a.File("/typechg", "was a file");
  c.Dir("/typechg");
  a.Symlink("/link", "t1");
  c.Symlink("/link", "t2");
  a.Special("/dev", FileType::kCharDev, 1);
  c.Special("/dev", FileType::kCharDev, 2);
  FileRecord pa;
  pa.path = "/became-partial";
  pa.mode = 0644;
  pa.size = 1;
  pa.extents = {{0, 1}};
  a.Add(pa, {B("p")});
  pa.flags = repository::kFlagPartial;
  pa.extents.clear();
  c.Add(pa);
  auto pa_point = Open(a, "a");
  auto pc_point = Open(c, "c");
  ASSERT_NE(pa_point, nullptr);
  ASSERT_NE(pc_point, nullptr);
  auto d = DiffPoints(*pa_point, *pc_point);
  ASSERT_THAT(d, IsOk());
  EXPECT_THAT(d->added, ElementsAre("/new"));
  EXPECT_THAT(d->removed, ElementsAre("/gone"));
  EXPECT_THAT(d->modified,
              ElementsAre("/became-partial", "/dev", "/link", "/mod", "/mod-same-size"));
  EXPECT_THAT(d->metadata, ElementsAre("/group", "/meta", "/mtime", "/owner", "/xattr"));
  EXPECT_THAT(d->type, ElementsAre("/typechg"));

  auto same = DiffPoints(*pa_point, *pa_point);
  ASSERT_THAT(same, IsOk());
  EXPECT_THAT(same->added, IsEmpty());
  EXPECT_THAT(same->removed, IsEmpty());
  EXPECT_THAT(same->modified, IsEmpty());
  EXPECT_THAT(same->metadata, IsEmpty());
  EXPECT_THAT(same->type, IsEmpty());

  auto back = DiffPoints(*pc_point, *pa_point);
  ASSERT_THAT(back, IsOk());
  EXPECT_THAT(back->added, ElementsAre("/gone"));
  EXPECT_THAT(back->removed, ElementsAre("/new"));
}

}  // namespace
}  // namespace haven::restore
