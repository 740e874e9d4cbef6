// Tests for restore/file_restore.h: RestoreGuestFiles over a fake GuestTree
// (an in-memory tree, so hostile names, loops, sizes and read failures can
// be injected), into a directory and into tar and zip archives read back
// with libarchive's reader. The directory tests check that nothing is ever
// written outside the target: hostile names, existing symlinks in the
// target, and symlinks swapped in while the restore runs.
#include "restore/file_restore.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/test_util.h"

namespace haven::restore {

// Readable gmock output for problem lists.
void PrintTo(const FileRestoreProblem& p, std::ostream* os) {
  *os << "{path \"" << PrintableName(p.path) << "\", what \""
      << PrintableName(p.what) << "\"}";
}

namespace {

using ::haven::testing_util::IsOk;
using ::haven::testing_util::PathExists;
using ::haven::testing_util::RandomData;
using ::haven::testing_util::ReadWholeFile;
using ::haven::testing_util::StatusIs;
using ::haven::testing_util::TempDir;
using ::haven::testing_util::WriteWholeFile;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using ::testing::UnorderedElementsAre;

constexpr uint64_t kMiB = 1 << 20;
constexpr int64_t kBaseNs = 1600000000123456789;  // 2020-09-13, odd ns

// --------------------------------------------------------------- fake tree
// An in-memory GuestTree. Node 0 is the root ("/"); every node's inode is
// 100 + its index, so linking a node twice gives two entries with one
// inode (hard-linked or looping directories).
class FakeTree : public GuestTree {
 public:
  static constexpr int kRoot = 0;

  FakeTree() { Add(-1, "/", GuestType::kDir, 0755); }

  int Dir(int parent, std::string name, uint32_t mode = 0755) {
    return Add(parent, std::move(name), GuestType::kDir, mode);
  }
  int File(int parent, std::string name, Bytes content, uint32_t mode = 0644) {
    int id = Add(parent, std::move(name), GuestType::kFile, mode);
    nodes_[id].entry.size = content.size();
    nodes_[id].content = std::move(content);
    return id;
  }
  int File(int parent, std::string name, std::string_view text,
           uint32_t mode = 0644) {
    return File(parent, std::move(name), Bytes(text.begin(), text.end()), mode);
  }
  int Symlink(int parent, std::string name, std::string target) {
    int id = Add(parent, std::move(name), GuestType::kSymlink, 0777);
    nodes_[id].entry.link_target = std::move(target);
    nodes_[id].entry.size = nodes_[id].entry.link_target.size();
    return id;
  }
  int Fifo(int parent, std::string name, uint32_t mode = 0640) {
    return Add(parent, std::move(name), GuestType::kFifo, mode);
  }
  int Special(int parent, std::string name, GuestType type) {
    return Add(parent, std::move(name), type, 0600);
  }
  // Another entry for an existing node in `parent`, under its own name or
  // under `name` (a hard-linked directory: same inode, other name).
  void Link(int parent, int child) { nodes_[parent].children.push_back({child, {}}); }
  void LinkAs(int parent, int child, std::string name) {
    nodes_[parent].children.push_back({child, std::move(name)});
  }
  // Lookup(path) returns node `id` as is (e.g. an entry with a hostile name).
  void Alias(const std::string& path, int id) { aliases_[path] = id; }
  // ReadFile of node `id` returns `s` once `after` bytes were delivered.
  void Fail(int id, uint64_t after, Status s) { faults_[id] = {after, std::move(s)}; }

  GuestEntry& entry(int id) { return nodes_[id].entry; }
  const Bytes& content(int id) const { return nodes_[id].content; }

  Result<GuestEntry> Lookup(const std::string& path) override {
    if (auto it = aliases_.find(path); it != aliases_.end())
      return nodes_[it->second].entry;
    if (path.empty() || path[0] != '/') return InvalidArgument("fake: relative " + path);
    int cur = kRoot;
    size_t i = 1;
    while (i < path.size()) {
      size_t j = path.find('/', i);
      if (j == std::string::npos) j = path.size();
      const std::string part = path.substr(i, j - i);
      i = j + 1;
      if (part.empty()) continue;
      int next = -1;
      for (const auto& [c, alias] : nodes_[cur].children)
        if (alias.value_or(nodes_[c].entry.name) == part) {
          next = c;
          break;
        }
      if (next < 0) return NotFound("fake: " + part + " not found");
      cur = next;
    }
    return nodes_[cur].entry;
  }

  Result<std::vector<GuestEntry>> List(const GuestEntry& dir) override {
    ++list_calls;
    if (list_budget >= 0 && list_calls > list_budget)
      return IoError("fake: more List calls than the test allows");
    if (on_list) on_list(dir);
    const int id = ById(dir.inode);
    if (id < 0) return NotFound("fake: no inode " + std::to_string(dir.inode));
    if (nodes_[id].entry.type != GuestType::kDir)
      return FailedPrecondition("fake: not a directory");
    std::vector<GuestEntry> out;
    for (const auto& [c, alias] : nodes_[id].children) {
      out.push_back(nodes_[c].entry);
      if (alias) out.back().name = *alias;
    }
    return out;
  }

  Status ReadFile(const GuestEntry& file,
                  const std::function<Status(uint64_t, const uint8_t*, size_t)>& sink,
                  size_t block) override {
    ++read_calls;
    read_names.push_back(file.name);
    const int id = ById(file.inode);
    if (id < 0) return NotFound("fake: no inode");
    const Bytes& c = nodes_[id].content;
    auto fault = faults_.find(id);
    if (block == 0) return Internal("fake: block 0");
    for (uint64_t off = 0; off < c.size(); off += block) {
      if (fault != faults_.end() && off >= fault->second.first) return fault->second.second;
      const size_t n = static_cast<size_t>(std::min<uint64_t>(block, c.size() - off));
      if (on_piece) on_piece(file, off);
      Status s = sink(off, c.data() + off, n);
      if (!s.ok()) return s;
    }
    if (fault != faults_.end()) return fault->second.second;
    return OkStatus();
  }

  std::optional<std::vector<std::pair<uint64_t, uint64_t>>> DataRanges(
      const GuestEntry& file) override {
    auto it = ranges_.find(ById(file.inode));
    if (it == ranges_.end()) return std::nullopt;
    return it->second;
  }
  // DataRanges of node `id`: what the file system would say it allocated.
  void Ranges(int id, std::vector<std::pair<uint64_t, uint64_t>> r) { ranges_[id] = std::move(r); }

  bool has_unix_metadata() const override { return unix_metadata; }
  uint64_t max_file_size() const override { return max_size; }

  bool unix_metadata = true;
  uint64_t max_size = 1ull << 40;
  int list_calls = 0;
  int list_budget = -1;  // < 0: unlimited
  int read_calls = 0;
  std::vector<std::string> read_names;
  std::function<void(const GuestEntry&)> on_list;
  std::function<void(const GuestEntry&, uint64_t offset)> on_piece;

 private:
  struct Node {
    GuestEntry entry;
    Bytes content;
    std::vector<std::pair<int, std::optional<std::string>>> children;
  };

  int Add(int parent, std::string name, GuestType type, uint32_t mode) {
    const int id = static_cast<int>(nodes_.size());
    Node n;
    n.entry.name = std::move(name);
    n.entry.inode = 100 + static_cast<uint64_t>(id);
    n.entry.type = type;
    n.entry.mode = mode;
    n.entry.uid = 1000 + static_cast<uint32_t>(id);
    n.entry.gid = 2000 + static_cast<uint32_t>(id);
    n.entry.mtime_ns = kBaseNs + int64_t{id} * 1000000007;
    n.entry.atime_ns = kBaseNs - 3 * 86400 * 1000000000ll + int64_t{id} * 13;
    n.entry.ctime_ns = kBaseNs;
    nodes_.push_back(std::move(n));
    if (parent >= 0) nodes_[parent].children.push_back({id, {}});
    return id;
  }
  int ById(uint64_t inode) const {
    if (inode < 100 || inode - 100 >= nodes_.size()) return -1;
    return static_cast<int>(inode - 100);
  }

  std::vector<Node> nodes_;
  std::map<std::string, int> aliases_;
  std::map<int, std::pair<uint64_t, Status>> faults_;
  std::map<int, std::vector<std::pair<uint64_t, uint64_t>>> ranges_;
};

// ----------------------------------------------------------------- helpers
struct stat Lstat(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << "lstat " << path;
  return st;
}

uint64_t AllocatedBytes(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return ~0ull;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

int64_t MtimeNs(const struct stat& st) {
  return st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec;
}
int64_t AtimeNs(const struct stat& st) {
  return st.st_atim.tv_sec * 1000000000ll + st.st_atim.tv_nsec;
}

std::string ReadLink(const std::string& path) {
  char buf[4096];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
  if (n < 0) return "<readlink failed>";
  return std::string(buf, static_cast<size_t>(n));
}

std::string Str(const Bytes& b) { return std::string(b.begin(), b.end()); }
Bytes B(std::string_view s) { return Bytes(s.begin(), s.end()); }

// Every path under `dir`, relative, not following symlinks.
std::set<std::string> Listing(const std::string& dir) {
  std::set<std::string> out;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec))
    out.insert(it->path().lexically_relative(dir).string());
  EXPECT_FALSE(ec) << "listing " << dir << ": " << ec.message();
  return out;
}

std::vector<std::string> PartialFiles(const std::string& dir) {
  std::vector<std::string> out;
  for (const std::string& p : Listing(dir))
    if (p.find(".haven-partial") != std::string::npos) out.push_back(p);
  return out;
}

auto Problem(const std::string& path, const auto& what) {
  return AllOf(Field(&FileRestoreProblem::path, path),
               Field(&FileRestoreProblem::what, what));
}

// ---------------------------------------------------------- archive reader
struct Archived {
  std::string path;
  mode_t type = 0;
  mode_t perm = 0;
  int64_t mtime = 0;
  int64_t uid = -1, gid = -1;
  std::string symlink;
  std::string data;
  int sparse = 0;  // ranges of a sparse entry's map (0: not sparse)
};

// Every entry of the archive at `path` (tar or zip). Zip stores directory
// names with a trailing '/'; it is removed here so tar and zip compare alike.
std::vector<Archived> ReadArchive(const std::string& path) {
  std::vector<Archived> out;
  struct archive* a = archive_read_new();
  archive_read_support_format_all(a);
  archive_read_support_filter_all(a);
  if (archive_read_open_filename(a, path.c_str(), 1 << 16) != ARCHIVE_OK) {
    ADD_FAILURE() << "open " << path << ": " << archive_error_string(a);
    archive_read_free(a);
    return out;
  }
  struct archive_entry* e;
  int r;
  while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
    Archived x;
    x.path = archive_entry_pathname(e) ? archive_entry_pathname(e) : "<null>";
    x.type = archive_entry_filetype(e);
    if (x.type == AE_IFDIR && x.path.size() > 1 && x.path.back() == '/') x.path.pop_back();
    x.perm = archive_entry_perm(e);
    x.mtime = archive_entry_mtime(e);
    x.uid = archive_entry_uid(e);
    x.gid = archive_entry_gid(e);
    if (archive_entry_symlink(e)) x.symlink = archive_entry_symlink(e);
    x.sparse = archive_entry_sparse_count(e);
    char buf[65536];
    la_ssize_t n;
    while ((n = archive_read_data(a, buf, sizeof buf)) > 0) x.data.append(buf, static_cast<size_t>(n));
    if (n < 0) ADD_FAILURE() << "read data of " << x.path << ": " << archive_error_string(a);
    out.push_back(std::move(x));
  }
  if (r != ARCHIVE_EOF) ADD_FAILURE() << "read header in " << path << ": " << archive_error_string(a);
  archive_read_free(a);
  return out;
}

std::vector<std::string> Names(const std::vector<Archived>& entries) {
  std::vector<std::string> out;
  for (const auto& e : entries) out.push_back(e.path);
  return out;
}

const Archived* FindEntry(const std::vector<Archived>& entries, const std::string& path) {
  for (const auto& e : entries)
    if (e.path == path) return &e;
  return nullptr;
}

// No absolute path, no ".." or "." component, no empty component.
void ExpectSafeNames(const std::vector<Archived>& entries) {
  for (const auto& e : entries) {
    EXPECT_FALSE(e.path.empty());
    EXPECT_NE(e.path.front(), '/') << e.path;
    size_t i = 0;
    while (i <= e.path.size()) {
      size_t j = e.path.find('/', i);
      if (j == std::string::npos) j = e.path.size();
      const std::string part = e.path.substr(i, j - i);
      EXPECT_TRUE(part != ".." && part != "." && !part.empty())
          << "entry " << PrintableName(e.path) << " has component \"" << part << "\"";
      i = j + 1;
    }
  }
}

// ------------------------------------------------------------------ names
TEST(InvalidNameReasonTest, Table) {
  const std::string n255(255, 'n'), n256(256, 'n');
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"ok.txt", ""},
      {"with space and ümlaut", ""},
      {"...", ""},
      {".hidden", ""},
      {"\xff\xfe not utf-8", ""},  // raw bytes are fine on Linux
      {n255, ""},
      {"", "empty"},
      {".", "\".\""},
      {"..", "\"..\""},
      {n256, "longer than 255 bytes"},
      {"a/b", "holds '/'"},
      {"../../etc/x", "holds '/'"},
      {"/", "holds '/'"},
      {std::string("nul\0x", 5), "holds a NUL byte"},
      {std::string(1, '\0'), "holds a NUL byte"},
      {"new\nline", "holds a control character"},
      {"tab\t", "holds a control character"},
      {"\x1b[2Jclear", "holds a control character"},
      {"del\x7f", "holds a control character"},
      {"\x01", "holds a control character"},
  };
  for (const auto& [name, want] : cases)
    EXPECT_EQ(InvalidNameReason(name), want) << "name \"" << PrintableName(name) << "\"";
}

TEST(PrintableNameTest, Table) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"plain.txt", "plain.txt"},
      {"", ""},
      {"sp ace", "sp ace"},
      {"back\\slash", "back\\\\slash"},
      {"new\nline", "new\\x0aline"},
      {"\x1b[2J", "\\x1b[2J"},
      {"del\x7f", "del\\x7f"},
      {std::string("nul\0x", 5), "nul\\x00x"},
      {"\t", "\\x09"},
      {"caf\xc3\xa9", "caf\xc3\xa9"},           // valid UTF-8 stays
      {"\xe2\x82\xac", "\xe2\x82\xac"},         // 3-byte sequence
      {"\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"}, // 4-byte sequence
      {"\xff", "\\xff"},
      {"caf\xc3", "caf\\xc3"},                  // truncated sequence
      {"\xc3\xa9\xff", "\\xc3\\xa9\\xff"},      // not UTF-8: every high byte
      {"\xe2\x82", "\\xe2\\x82"},
  };
  for (const auto& [name, want] : cases)
    EXPECT_EQ(PrintableName(name), want) << "name of " << name.size() << " bytes";
}

// ------------------------------------------------------------ directories
class FileRestoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(tmp_.path().empty());
    target_ = tmp_.Sub("target");
    outside_ = tmp_.Sub("outside");
    ASSERT_EQ(::mkdir(outside_.c_str(), 0755), 0);
  }

  Result<FileRestoreStats> Restore(const std::vector<std::string>& paths,
                                   FileTarget target = FileTarget::kDirectory,
                                   const std::string& path = "") {
    FileRestoreOptions o;
    o.target = target;
    o.path = path.empty() ? target_ : path;
    o.owners = owners_;
    o.progress = progress_;
    return RestoreGuestFiles(tree_, paths, o);
  }

  std::string T(const std::string& rel) const { return target_ + "/" + rel; }

  TempDir tmp_;
  FakeTree tree_;
  std::string target_, outside_;
  bool owners_ = true;
  ProgressFn progress_;
};

TEST_F(FileRestoreTest, RestoresTreeWithContentModesTimesAndOwners) {
  const int top = tree_.Dir(FakeTree::kRoot, "top", 0750);
  const int hello = tree_.File(top, "hello.txt", "hello, world\n", 0644);
  const int suid = tree_.File(top, "setuid", "#!/bin/sh\necho root\n", 04755);
  const int sgid = tree_.File(top, "setgid", "x", 02750);
  const int empty = tree_.File(top, "empty", "", 0444);
  const int sub = tree_.Dir(top, "sub", 02775);
  const int deep = tree_.Dir(sub, "deep", 01777);
  const int big = tree_.File(deep, "data.bin", RandomData(2 * kMiB + 12345, 7), 0600);
  const int abs = tree_.Symlink(top, "abs-link", "/etc/passwd");
  const int rel = tree_.Symlink(top, "rel-link", "../../outside/escape");
  const int dangling = tree_.Symlink(sub, "dangling", "nowhere/at/all");
  const int fifo = tree_.Fifo(top, "fifo", 04640);
  const int empty_dir = tree_.Dir(top, "empty-dir", 0711);

  auto r = Restore({"/top"});
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems, IsEmpty());
  EXPECT_TRUE(r->complete());
  EXPECT_EQ(r->files, 5u);
  EXPECT_EQ(r->dirs, 4u);  // top, sub, deep, empty-dir
  EXPECT_EQ(r->symlinks, 3u);
  const uint64_t bytes = tree_.content(hello).size() + tree_.content(suid).size() +
                         tree_.content(sgid).size() + tree_.content(big).size();
  EXPECT_EQ(r->bytes, bytes);

  EXPECT_EQ(Listing(target_),
            (std::set<std::string>{"top", "top/hello.txt", "top/setuid", "top/setgid",
                                   "top/empty", "top/sub", "top/sub/deep",
                                   "top/sub/deep/data.bin", "top/abs-link", "top/rel-link",
                                   "top/sub/dangling", "top/fifo", "top/empty-dir"}));
  EXPECT_THAT(PartialFiles(target_), IsEmpty());

  // atime before anything reads the files.
  EXPECT_EQ(AtimeNs(Lstat(T("top/hello.txt"))), tree_.entry(hello).atime_ns);
  EXPECT_EQ(AtimeNs(Lstat(T("top/sub/deep/data.bin"))), tree_.entry(big).atime_ns);

  struct Want {
    const char* rel;
    int id;
    mode_t type;
    mode_t perm;
  };
  const std::vector<Want> wants = {
      {"top", top, S_IFDIR, 0750},
      {"top/hello.txt", hello, S_IFREG, 0644},
      {"top/setuid", suid, S_IFREG, 0755},    // set-user-id dropped
      {"top/setgid", sgid, S_IFREG, 0750},    // set-group-id dropped
      {"top/empty", empty, S_IFREG, 0444},
      {"top/sub", sub, S_IFDIR, 0775},        // set-group-id dropped
      {"top/sub/deep", deep, S_IFDIR, 01777}, // sticky kept
      {"top/sub/deep/data.bin", big, S_IFREG, 0600},
      {"top/fifo", fifo, S_IFIFO, 0640},
      {"top/empty-dir", empty_dir, S_IFDIR, 0711},
      {"top/abs-link", abs, S_IFLNK, 0},
      {"top/rel-link", rel, S_IFLNK, 0},
      {"top/sub/dangling", dangling, S_IFLNK, 0},
  };
  ASSERT_EQ(::geteuid(), 0u) << "these tests run as root (owners are restored)";
  for (const Want& w : wants) {
    SCOPED_TRACE(w.rel);
    struct stat st = Lstat(T(w.rel));
    EXPECT_EQ(st.st_mode & S_IFMT, w.type);
    if (w.type != S_IFLNK) {
      EXPECT_EQ(st.st_mode & 07777, w.perm);
    }
    // Directories get their time after their children were made.
    EXPECT_EQ(MtimeNs(st), tree_.entry(w.id).mtime_ns);
    EXPECT_EQ(st.st_uid, tree_.entry(w.id).uid);
    EXPECT_EQ(st.st_gid, tree_.entry(w.id).gid);
  }

  EXPECT_EQ(ReadWholeFile(T("top/hello.txt")), tree_.content(hello));
  EXPECT_EQ(ReadWholeFile(T("top/setuid")), tree_.content(suid));
  EXPECT_EQ(ReadWholeFile(T("top/empty")), Bytes{});
  EXPECT_TRUE(ReadWholeFile(T("top/sub/deep/data.bin")) == tree_.content(big));
  EXPECT_EQ(ReadLink(T("top/abs-link")), "/etc/passwd");
  EXPECT_EQ(ReadLink(T("top/rel-link")), "../../outside/escape");
  EXPECT_EQ(ReadLink(T("top/sub/dangling")), "nowhere/at/all");
  // Symlinks were made, never followed.
  EXPECT_THAT(Listing(outside_), IsEmpty());
  EXPECT_EQ(tree_.read_calls, 5);
}

TEST_F(FileRestoreTest, WithoutUnixMetadataModesAreDefaultsAndOwnersAreNotSet) {
  tree_.unix_metadata = false;
  const int top = tree_.Dir(FakeTree::kRoot, "Documents", 0500);
  const int f = tree_.File(top, "report.docx", "PK\x03\x04...", 04700);
  const int d = tree_.Dir(top, "Pictures", 0000);
  const int g = tree_.File(d, "cat.jpg", RandomData(5000, 3), 0111);

  auto r = Restore({"/Documents"});
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems, IsEmpty());
  struct Want {
    const char* rel;
    int id;
    mode_t perm;
  };
  for (const Want& w : std::vector<Want>{{"Documents", top, 0755},
                                         {"Documents/report.docx", f, 0644},
                                         {"Documents/Pictures", d, 0755},
                                         {"Documents/Pictures/cat.jpg", g, 0644}}) {
    SCOPED_TRACE(w.rel);
    struct stat st = Lstat(T(w.rel));
    EXPECT_EQ(st.st_mode & 07777, w.perm);
    EXPECT_EQ(st.st_uid, ::geteuid());  // not the made-up guest owner
    EXPECT_EQ(st.st_gid, ::getegid());
    EXPECT_EQ(MtimeNs(st), tree_.entry(w.id).mtime_ns);
  }
  EXPECT_EQ(ReadWholeFile(T("Documents/Pictures/cat.jpg")), tree_.content(g));
}

TEST_F(FileRestoreTest, OwnersOffKeepsTheRestoringUserButRestoresModes) {
  owners_ = false;
  const int top = tree_.Dir(FakeTree::kRoot, "home", 0700);
  tree_.File(top, "notes", "n", 0640);
  const int l = tree_.Symlink(top, "link", "notes");
  auto r = Restore({"/home"});
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems, IsEmpty());
  for (const char* rel : {"home", "home/notes", "home/link"}) {
    struct stat st = Lstat(T(rel));
    EXPECT_EQ(st.st_uid, ::geteuid()) << rel;
    EXPECT_EQ(st.st_gid, ::getegid()) << rel;
  }
  EXPECT_EQ(Lstat(T("home")).st_mode & 07777, 0700u);
  EXPECT_EQ(Lstat(T("home/notes")).st_mode & 07777, 0640u);
  EXPECT_EQ(MtimeNs(Lstat(T("home/link"))), tree_.entry(l).mtime_ns);
}

TEST_F(FileRestoreTest, SparseFileKeepsItsHoles) {
  const uint64_t size = 16 * kMiB;
  Bytes content(size, 0);
  const Bytes a = RandomData(4096, 11), b = RandomData(200, 12), c = RandomData(10, 13);
  std::copy(a.begin(), a.end(), content.begin());
  std::copy(b.begin(), b.end(), content.begin() + 9 * kMiB + 100);
  std::copy(c.begin(), c.end(), content.end() - 10);
  const int top = tree_.Dir(FakeTree::kRoot, "vm", 0755);
  tree_.File(top, "sparse.img", content);
  tree_.File(top, "zeros.img", Bytes(8 * kMiB, 0));
  Bytes tail_hole(5 * kMiB + 7, 0);
  tail_hole[0] = 1;
  tree_.File(top, "tail-hole", tail_hole);

  auto r = Restore({"/vm"});
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems, IsEmpty());
  EXPECT_EQ(r->bytes, size + 8 * kMiB + tail_hole.size());

  const std::string sparse = T("vm/sparse.img");
  EXPECT_EQ(Lstat(sparse).st_size, static_cast<off_t>(size));
  // Holes at block granularity: 4 KiB, 200 bytes and 10 bytes of data take
  // about three 4 KiB blocks, not the 1 MiB pieces content is read in.
  EXPECT_LE(AllocatedBytes(sparse), 64 * 1024u);
  EXPECT_TRUE(ReadWholeFile(sparse) == content);

  EXPECT_EQ(Lstat(T("vm/zeros.img")).st_size, static_cast<off_t>(8 * kMiB));
  EXPECT_LE(AllocatedBytes(T("vm/zeros.img")), 64 * 1024u);
  EXPECT_TRUE(ReadWholeFile(T("vm/zeros.img")) == Bytes(8 * kMiB, 0));

  EXPECT_EQ(Lstat(T("vm/tail-hole")).st_size, static_cast<off_t>(tail_hole.size()));
  EXPECT_LE(AllocatedBytes(T("vm/tail-hole")), 64 * 1024u);
  EXPECT_TRUE(ReadWholeFile(T("vm/tail-hole")) == tail_hole);
}

// A tar export stores only the data of a sparse file (pax, GNU sparse
// 1.0): a small one's holes are its all-zero 4 KiB blocks, a large one's
// (streamed) the file system's map, checked against what is read.
TEST_F(FileRestoreTest, TarStoresSparseFilesWithoutTheirHoles) {
  Bytes small(16 * kMiB, 0);
  const Bytes a = RandomData(4096, 21), b = RandomData(300, 22);
  std::copy(a.begin(), a.end(), small.begin() + 4096);
  std::copy(b.begin(), b.end(), small.begin() + 9 * kMiB);
  Bytes big(80 * kMiB, 0);
  std::copy(a.begin(), a.end(), big.begin());
  std::copy(b.begin(), b.end(), big.begin() + 70 * kMiB);
  // Holes of less than 1 MiB in all: stored plainly (a sparse entry is
  // GNUSparseFile.0/NAME to tar readers without GNU sparse).
  Bytes few = RandomData(512 * 1024, 23);
  std::fill(few.begin() + 64 * 1024, few.begin() + 128 * 1024, 0);
  const int top = tree_.Dir(FakeTree::kRoot, "vm");
  tree_.File(top, "small.img", small);
  tree_.File(top, "few-zeros.bin", few);
  const int big_id = tree_.File(top, "big.img", big);
  tree_.Ranges(big_id, {{0, 4096}, {70 * kMiB, 4096}});
  const std::string tar = tmp_.Sub("sparse.tar");
  auto r = Restore({"/vm"}, FileTarget::kTar, tar);
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems, IsEmpty());
  EXPECT_LE(::haven::testing_util::FileSize(tar), 1024 * 1024u);
  std::map<std::string, Archived> got;
  for (Archived& x : ReadArchive(tar)) got[x.path] = std::move(x);
  EXPECT_TRUE(got["vm/small.img"].data == std::string(small.begin(), small.end()));
  EXPECT_GE(got["vm/small.img"].sparse, 2);  // and an empty one at the end
  EXPECT_TRUE(got["vm/big.img"].data == std::string(big.begin(), big.end()));
  EXPECT_GE(got["vm/big.img"].sparse, 2);
  EXPECT_TRUE(got["vm/few-zeros.bin"].data == std::string(few.begin(), few.end()));
  EXPECT_EQ(got["vm/few-zeros.bin"].sparse, 0);

  // A map that calls data a hole fails the export: the archive would hold
  // zeros where the file has bytes.
  tree_.Ranges(big_id, {{0, 4096}});
  auto bad = Restore({"/vm"}, FileTarget::kTar, tmp_.Sub("bad.tar"));
  EXPECT_THAT(bad, StatusIs(Code::kIoError, HasSubstr("inside a hole of the file (at byte")));
  EXPECT_FALSE(PathExists(tmp_.Sub("bad.tar")));
}

// The hostile names a guest can hold, each as a file (and ".." also as a
// directory with a child): all reported, none created, nothing outside.
struct Hostile {
  std::string name;
  std::string reason;
};
std::vector<Hostile> HostileNames() {
  return {
      {"..", "\"..\""},
      {".", "\".\""},
      {"", "empty"},
      {"a/b", "holds '/'"},
      {"../../etc/x", "holds '/'"},
      {"../outside/pwned", "holds '/'"},
      {"new\nline", "holds a control character"},
      {"esc\x1b[2J", "holds a control character"},
      {"del\x7f", "holds a control character"},
      {std::string("nul\0x", 5), "holds a NUL byte"},
      {std::string(256, 'a'), "longer than 255 bytes"},
  };
}

TEST_F(FileRestoreTest, HostileNamesAreReportedAndNothingEscapesTheTarget) {
  const std::string canary = tmp_.Sub("canary");
  ASSERT_EQ(::mkdir(canary.c_str(), 0755), 0);
  const int top = tree_.Dir(FakeTree::kRoot, "top");
  tree_.File(top, "ok.txt", "fine");
  for (const Hostile& h : HostileNames()) tree_.File(top, h.name, "evil " + h.name);
  const int dotdot = tree_.Dir(top, "..");  // a second "..": a directory
  tree_.File(dotdot, "pwned", "escaped");
  const int ok_dir = tree_.Dir(top, "ok dir");
  tree_.File(ok_dir, "inner", "inner");
  tree_.File(ok_dir, "../../canary/pwned", "escaped");

  auto r = Restore({"/top"});
  ASSERT_THAT(r, IsOk());

  std::vector<::testing::Matcher<const FileRestoreProblem&>> want;
  for (const Hostile& h : HostileNames())
    want.push_back(Problem("/top/" + PrintableName(h.name),
                           AllOf(HasSubstr("invalid name"), HasSubstr(h.reason))));
  // The directory named "..": listed in the tree after the files, but the
  // name is refused before it is a clash with the file "..".
  want.push_back(Problem("/top/..", HasSubstr("invalid name")));
  want.push_back(Problem("/top/ok dir/../../canary/pwned",
                         AllOf(HasSubstr("invalid name"), HasSubstr("holds '/'"))));
  EXPECT_THAT(r->problems, ::testing::ElementsAreArray(want));
  // Escaped names in paths: no raw control byte or NUL reaches a message.
  for (const auto& p : r->problems)
    for (char ch : p.path)
      EXPECT_FALSE(static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f)
          << "raw control byte in problem path " << PrintableName(p.path);
  EXPECT_THAT(r->problems[1].path, "/top/.");
  EXPECT_THAT(r->problems[6].path, "/top/new\\x0aline");
  EXPECT_THAT(r->problems[7].path, "/top/esc\\x1b[2J");
  EXPECT_THAT(r->problems[9].path, "/top/nul\\x00x");

  EXPECT_EQ(r->files, 2u);  // ok.txt, ok dir/inner
  EXPECT_EQ(Listing(target_),
            (std::set<std::string>{"top", "top/ok.txt", "top/ok dir", "top/ok dir/inner"}));
  EXPECT_EQ(ReadWholeFile(T("top/ok.txt")), B("fine"));
  EXPECT_EQ(ReadWholeFile(T("top/ok dir/inner")), B("inner"));
  // Nothing beside the target: the temp root holds only what the test made.
  EXPECT_EQ(Listing(canary), std::set<std::string>{});
  EXPECT_THAT(Listing(outside_), IsEmpty());
  std::set<std::string> root_names;
  for (const auto& e : std::filesystem::directory_iterator(tmp_.path()))
    root_names.insert(e.path().filename().string());
  EXPECT_EQ(root_names, (std::set<std::string>{"target", "outside", "canary"}));
  EXPECT_FALSE(PathExists(std::filesystem::path(tmp_.path()).parent_path().string() + "/pwned"));
  // Only the valid files were read at all.
  EXPECT_THAT(tree_.read_names, ElementsAre("ok.txt", "inner"));
}

TEST_F(FileRestoreTest, HostileTopLevelNameIsReported) {
  const int evil = tree_.Dir(FakeTree::kRoot, "innocent");
  tree_.entry(evil).name = "..";  // what the file system says the entry is called
  tree_.File(evil, "pwned", "escaped");
  tree_.Alias("/innocent", evil);
  const int ctl = tree_.File(FakeTree::kRoot, "x", "escaped");
  tree_.entry(ctl).name = "a/../../b";
  tree_.Alias("/x", ctl);
  const int good = tree_.File(FakeTree::kRoot, "good", "good");
  (void)good;

  auto r = Restore({"/innocent", "/x", "/good"});
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems,
              ElementsAre(Problem("/innocent", HasSubstr("invalid name (\"..\")")),
                          Problem("/x", HasSubstr("invalid name (holds '/')"))));
  EXPECT_EQ(Listing(target_), std::set<std::string>{"good"});
  std::set<std::string> root_names;
  for (const auto& e : std::filesystem::directory_iterator(tmp_.path()))
    root_names.insert(e.path().filename().string());
  EXPECT_EQ(root_names, (std::set<std::string>{"target", "outside"}));
}

TEST_F(FileRestoreTest, NameClashInOneDirectoryRestoresTheFirst) {
  const int top = tree_.Dir(FakeTree::kRoot, "top");
  tree_.File(top, "same", "first");
  tree_.File(top, "other", "other");
  const int second = tree_.Dir(top, "same");
  tree_.File(second, "inside", "never");
  tree_.Symlink(top, "other", "/etc");

  auto r = Restore({"/top"});
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems,
              ElementsAre(Problem("/top/same", HasSubstr("name clash")),
                          Problem("/top/other", HasSubstr("name clash"))));
  EXPECT_EQ(ReadWholeFile(T("top/same")), B("first"));
  EXPECT_EQ(ReadWholeFile(T("top/other")), B("other"));
  EXPECT_TRUE(S_ISREG(Lstat(T("top/other")).st_mode));
  EXPECT_EQ(Listing(target_), (std::set<std::string>{"top", "top/same", "top/other"}));
}

TEST_F(FileRestoreTest, TwoPathsWithTheSameBaseNameClash) {
  const int a = tree_.Dir(FakeTree::kRoot, "a");
  const int b = tree_.Dir(FakeTree::kRoot, "b");
  const int da = tree_.Dir(a, "docs");
  const int db = tree_.Dir(b, "docs");
  tree_.File(da, "from-a", "A");
  tree_.File(db, "from-b", "B");

  auto r = Restore({"/a/docs", "/b/docs"});
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems,
              ElementsAre(Problem("/b/docs", AllOf(HasSubstr("name clash"),
                                                   HasSubstr("restores to docs")))));
  EXPECT_EQ(Listing(target_), (std::set<std::string>{"docs", "docs/from-a"}));
  EXPECT_EQ(ReadWholeFile(T("docs/from-a")), B("A"));
}

TEST_F(FileRestoreTest, DirectoryLoopIsReportedAndTheWalkEnds) {
  const int top = tree_.Dir(FakeTree::kRoot, "top");
  const int sub = tree_.Dir(top, "sub");
  tree_.File(sub, "f", "f");
  tree_.Link(sub, top);  // sub/top: the same inode as its grandparent
  tree_.Link(top, top);  // top/top: itself
  tree_.list_budget = 100;

  auto r = Restore({"/top"});
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems,
              ElementsAre(Problem("/top/sub/top", HasSubstr("directory loop")),
                          Problem("/top/top", HasSubstr("directory loop"))));
  EXPECT_EQ(tree_.list_calls, 2);  // top and sub, once each
  EXPECT_EQ(Listing(target_), (std::set<std::string>{"top", "top/sub", "top/sub/f"}));
}

TEST_F(FileRestoreTest, RootLoopIsReported) {
  const int d = tree_.Dir(FakeTree::kRoot, "d");
  tree_.LinkAs(d, FakeTree::kRoot, "again");  // d/again is the root
  tree_.File(FakeTree::kRoot, "f", "f");
  tree_.list_budget = 100;
  auto r = Restore({"/"});
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems, ElementsAre(Problem("/d/again", HasSubstr("directory loop"))));
  EXPECT_EQ(Listing(target_), (std::set<std::string>{"d", "f"}));
}

// A directory linked twice in each of 30 levels is no loop, but a walk
// that restores it once per path does 2^30 directories: an image of a few
// kilobytes must not cost unbounded time.
TEST_F(FileRestoreTest, DirectoryLinkedTwicePerLevelIsNotWalkedExponentially) {
  const int top = tree_.Dir(FakeTree::kRoot, "top");
  int cur = top;
  for (int i = 0; i < 30; ++i) {
    const int next = tree_.Dir(-1, "level" + std::to_string(i));
    tree_.LinkAs(cur, next, "a");
    tree_.LinkAs(cur, next, "b");
    cur = next;
  }
  tree_.File(cur, "leaf", "leaf");
  tree_.list_budget = 400;  // ends the walk (with an error) if it explodes
  auto r = Restore({"/top"});
  // Every directory's contents need listing once; 2^30 listings never end.
  EXPECT_LE(tree_.list_calls, 100);
  ASSERT_THAT(r, IsOk());
}

TEST_F(FileRestoreTest, DeepTreeIsBoundedAndReported) {
  int cur = FakeTree::kRoot;
  std::string deepest_reported;
  std::string path;
  for (int i = 0; i < 300; ++i) {
    cur = tree_.Dir(cur, "d" + std::to_string(i));
    path += "/d" + std::to_string(i);
    if (i == 256) deepest_reported = path;
  }
  tree_.File(cur, "bottom", "b");

  auto r = Restore({"/d0"});
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems,
              ElementsAre(Problem(deepest_reported, HasSubstr("deeper than 256"))));
  std::string rel = "d0";
  for (int i = 1; i <= 256; ++i) rel += "/d" + std::to_string(i);
  EXPECT_TRUE(PathExists(T(rel)));
  EXPECT_FALSE(PathExists(T(rel + "/d257")));
  EXPECT_EQ(r->dirs, 257u);
  EXPECT_EQ(tree_.list_calls, 256);
}

TEST_F(FileRestoreTest, FileLargerThanTheVolumeIsRefused) {
  tree_.max_size = 1ull << 30;
  const int top = tree_.Dir(FakeTree::kRoot, "top");
  const int huge = tree_.File(top, "huge", "tiny really");
  tree_.entry(huge).size = 2ull << 30;
  const int exact = tree_.File(top, "exact", "ok");
  tree_.entry(exact).size = 2;
  tree_.File(top, "after", "after");

  auto r = Restore({"/top"});
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems,
              ElementsAre(Problem("/top/huge", AllOf(HasSubstr("claims 2147483648 bytes"),
                                                     HasSubstr("(1073741824)")))));
  EXPECT_FALSE(PathExists(T("top/huge")));
  EXPECT_EQ(ReadWholeFile(T("top/exact")), B("ok"));
  EXPECT_EQ(ReadWholeFile(T("top/after")), B("after"));
  EXPECT_THAT(tree_.read_names, ElementsAre("exact", "after"));
  EXPECT_THAT(PartialFiles(target_), IsEmpty());
}

TEST_F(FileRestoreTest, DataLossInOneFileSkipsOnlyThatFile) {
  const int top = tree_.Dir(FakeTree::kRoot, "top");
  tree_.File(top, "a.txt", "before");
  const int bad = tree_.File(top, "bad.bin", RandomData(3 * kMiB, 5));
  tree_.Fail(bad, kMiB, DataLoss("injected: chunk 7 of disk0 is damaged"));
  const int sub = tree_.Dir(top, "sub");
  const int bad2 = tree_.File(sub, "bad-at-end", RandomData(1000, 6));
  tree_.Fail(bad2, 1000, DataLoss("injected: short read"));
  tree_.File(top, "z.txt", "after");

  auto r = Restore({"/top"});
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems,
              ElementsAre(Problem("/top/bad.bin", HasSubstr("injected: chunk 7 of disk0")),
                          Problem("/top/sub/bad-at-end", HasSubstr("injected: short read"))));
  EXPECT_EQ(r->files, 2u);
  EXPECT_EQ(r->bytes, 6u + 5u);
  EXPECT_EQ(Listing(target_),
            (std::set<std::string>{"top", "top/a.txt", "top/sub", "top/z.txt"}));
  EXPECT_THAT(PartialFiles(target_), IsEmpty());
  EXPECT_EQ(ReadWholeFile(T("top/z.txt")), B("after"));
}

TEST_F(FileRestoreTest, IoErrorStopsTheRestoreAndLeavesNoPartialFile) {
  const int top = tree_.Dir(FakeTree::kRoot, "top");
  tree_.File(top, "a.txt", "complete");
  const int bad = tree_.File(top, "b.bin", RandomData(2 * kMiB + 1, 8));
  tree_.Fail(bad, kMiB, IoError("injected: disk read failed"));
  tree_.File(top, "c.txt", "never reached");

  auto r = Restore({"/top"});
  EXPECT_THAT(r, StatusIs(Code::kIoError, HasSubstr("injected: disk read failed")));
  EXPECT_THAT(PartialFiles(target_), IsEmpty());
  EXPECT_FALSE(PathExists(T("top/b.bin")));
  EXPECT_FALSE(PathExists(T("top/c.txt")));
  // Files restored before the error are complete and stay.
  EXPECT_EQ(ReadWholeFile(T("top/a.txt")), B("complete"));
  EXPECT_THAT(tree_.read_names, ElementsAre("a.txt", "b.bin"));
}

TEST_F(FileRestoreTest, ListFailureWithDataLossIsReportedOtherErrorsStop) {
  const int top = tree_.Dir(FakeTree::kRoot, "top");
  const int sub = tree_.Dir(top, "sub");
  tree_.File(sub, "f", "f");
  tree_.File(top, "g", "g");
  tree_.on_list = [&](const GuestEntry&) {};
  // A fake whose List of "sub" fails: wrap the tree.
  struct Failing : GuestTree {
    FakeTree& t;
    uint64_t bad_inode;
    Status error;
    Failing(FakeTree& t, uint64_t bad, Status e) : t(t), bad_inode(bad), error(std::move(e)) {}
    Result<GuestEntry> Lookup(const std::string& p) override { return t.Lookup(p); }
    Result<std::vector<GuestEntry>> List(const GuestEntry& d) override {
      if (d.inode == bad_inode) return error;
      return t.List(d);
    }
    Status ReadFile(const GuestEntry& f,
                    const std::function<Status(uint64_t, const uint8_t*, size_t)>& s,
                    size_t block) override {
      return t.ReadFile(f, s, block);
    }
    bool has_unix_metadata() const override { return true; }
    uint64_t max_file_size() const override { return 1 << 30; }
  };
  Failing dataloss(tree_, tree_.entry(sub).inode, DataLoss("injected: bad directory block"));
  FileRestoreOptions o;
  o.path = target_;
  auto r = RestoreGuestFiles(dataloss, {"/top"}, o);
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems,
              ElementsAre(Problem("/top/sub", AllOf(HasSubstr("cannot list"),
                                                    HasSubstr("injected: bad directory")))));
  EXPECT_EQ(ReadWholeFile(T("top/g")), B("g"));

  Failing ioerror(tree_, tree_.entry(sub).inode, IoError("injected: EIO"));
  o.path = tmp_.Sub("target2");
  EXPECT_THAT(RestoreGuestFiles(ioerror, {"/top"}, o),
              StatusIs(Code::kIoError, HasSubstr("injected: EIO")));
}

TEST_F(FileRestoreTest, ExistingFilesAreNotReplacedAndExistingDirsKeepTheirMode) {
  ASSERT_EQ(::mkdir(target_.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(T("top").c_str(), 0711), 0);
  ASSERT_EQ(::chmod(T("top").c_str(), 0711), 0);
  WriteWholeFile(T("top/f.txt"), AsBytes("old content"));
  const std::string victim = outside_ + "/victim";
  WriteWholeFile(victim, AsBytes("victim"));
  ASSERT_EQ(::symlink(victim.c_str(), T("top/link.txt").c_str()), 0);
  ASSERT_EQ(::mkfifo(T("top/fifo").c_str(), 0600), 0);

  const int top = tree_.Dir(FakeTree::kRoot, "top", 0700);
  tree_.File(top, "f.txt", "new content");
  tree_.File(top, "link.txt", "through the link");
  tree_.File(top, "g.txt", "new file");
  tree_.Symlink(top, "f.txt2", "x");
  tree_.Fifo(top, "fifo");

  auto r = Restore({"/top"});
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems,
              ElementsAre(Problem("/top/f.txt", HasSubstr(T("top/f.txt") +
                                                          " exists in the target; not replaced")),
                          Problem("/top/link.txt", HasSubstr("exists in the target; not replaced")),
                          Problem("/top/fifo", HasSubstr("exists in the target; not replaced"))));
  EXPECT_EQ(ReadWholeFile(T("top/f.txt")), B("old content"));
  EXPECT_EQ(ReadWholeFile(victim), B("victim"));
  EXPECT_EQ(ReadLink(T("top/link.txt")), victim);
  EXPECT_EQ(ReadWholeFile(T("top/g.txt")), B("new file"));
  EXPECT_EQ(ReadLink(T("top/f.txt2")), "x");
  EXPECT_EQ(Lstat(T("top")).st_mode & 07777, 0711u);  // an existing dir is left as is
  EXPECT_THAT(PartialFiles(target_), IsEmpty());
  // The existing file was never even read from the guest.
  EXPECT_THAT(tree_.read_names, ElementsAre("g.txt"));
}

TEST_F(FileRestoreTest, ExistingSymlinkWhereADirectoryGoesIsNotFollowed) {
  ASSERT_EQ(::mkdir(target_.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((outside_ + "/dir").c_str(), 0755), 0);
  ASSERT_EQ(::symlink((outside_ + "/dir").c_str(), T("top").c_str()), 0);
  ASSERT_EQ(::mkdir(T("other").c_str(), 0755), 0);
  ASSERT_EQ(::symlink(outside_.c_str(), T("other/sub").c_str()), 0);
  WriteWholeFile(T("plain"), AsBytes("a file"));

  const int top = tree_.Dir(FakeTree::kRoot, "top");
  tree_.File(top, "f", "f");
  const int other = tree_.Dir(FakeTree::kRoot, "other");
  const int sub = tree_.Dir(other, "sub");
  tree_.File(sub, "g", "g");
  tree_.File(other, "h", "h");
  const int plain = tree_.Dir(FakeTree::kRoot, "plain");
  tree_.File(plain, "p", "p");

  auto r = Restore({"/top", "/other", "/plain"});
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(
      r->problems,
      ElementsAre(
          Problem("/top", HasSubstr(T("top") + " exists in the target and is not a directory")),
          Problem("/other/sub", HasSubstr("exists in the target and is not a directory")),
          Problem("/plain", HasSubstr("exists in the target and is not a directory"))));
  EXPECT_EQ(Listing(outside_), std::set<std::string>{"dir"});
  EXPECT_EQ(ReadWholeFile(T("other/h")), B("h"));
  EXPECT_EQ(ReadWholeFile(T("plain")), B("a file"));
  EXPECT_THAT(tree_.read_names, ElementsAre("h"));
}

// While the restore runs, a directory it made in the target is replaced by
// a symlink to a directory outside. The restore writes through the
// descriptors it opened (O_NOFOLLOW), so nothing lands outside.
TEST_F(FileRestoreTest, SymlinkSwappedInDuringTheRestoreIsNotFollowed) {
  const int top = tree_.Dir(FakeTree::kRoot, "top");
  const int d = tree_.Dir(top, "d");
  tree_.File(d, "f1", RandomData(2 * kMiB, 21));
  const int e = tree_.Dir(d, "e");
  tree_.File(e, "f2", "second");
  tree_.File(top, "zz.txt", "last");
  int swaps = 0;
  tree_.on_piece = [&](const GuestEntry& f, uint64_t off) {
    if (f.name != "f1" || off != 0) return;
    // top/d -> moved-d; top/d is now a symlink to outside.
    ASSERT_EQ(::rename(T("top/d").c_str(), T("moved-d").c_str()), 0);
    ASSERT_EQ(::symlink(outside_.c_str(), T("top/d").c_str()), 0);
    ++swaps;
  };
  tree_.on_list = [&](const GuestEntry& dir) {
    if (dir.name != "e") return;
    // The whole of top -> moved-top; top is now a symlink to outside.
    ASSERT_EQ(::rename(T("top").c_str(), T("moved-top").c_str()), 0);
    ASSERT_EQ(::symlink(outside_.c_str(), T("top").c_str()), 0);
    ++swaps;
  };

  auto r = Restore({"/top"});
  ASSERT_EQ(swaps, 2);
  EXPECT_THAT(Listing(outside_), IsEmpty()) << "the restore wrote through a symlink";
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems, IsEmpty());
  EXPECT_EQ(Listing(target_),
            (std::set<std::string>{"top", "moved-top", "moved-top/d", "moved-top/zz.txt",
                                   "moved-d", "moved-d/f1", "moved-d/e", "moved-d/e/f2"}));
  EXPECT_EQ(ReadWholeFile(T("moved-d/e/f2")), B("second"));
  EXPECT_EQ(ReadWholeFile(T("moved-top/zz.txt")), B("last"));
  EXPECT_EQ(ReadLink(T("top")), outside_);
}

TEST_F(FileRestoreTest, RootRestoresItsChildrenDirectlyIntoTheTarget) {
  const int etc = tree_.Dir(FakeTree::kRoot, "etc", 0755);
  tree_.File(etc, "hostname", "guest\n");
  tree_.File(FakeTree::kRoot, "vmlinuz", "kernel");
  tree_.Symlink(FakeTree::kRoot, "lib", "usr/lib");
  tree_.Fifo(FakeTree::kRoot, "initctl");
  tree_.File(FakeTree::kRoot, "..", "bad");

  auto r = Restore({"/"});
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems, ElementsAre(Problem("/..", HasSubstr("invalid name"))));
  EXPECT_EQ(Listing(target_),
            (std::set<std::string>{"etc", "etc/hostname", "vmlinuz", "lib", "initctl"}));
  EXPECT_EQ(ReadWholeFile(T("etc/hostname")), B("guest\n"));
  EXPECT_EQ(ReadLink(T("lib")), "usr/lib");
  EXPECT_EQ(r->files, 2u);
  EXPECT_EQ(r->dirs, 1u);
  EXPECT_EQ(r->symlinks, 1u);
  EXPECT_EQ(MtimeNs(Lstat(T("etc"))), tree_.entry(etc).mtime_ns);
}

TEST_F(FileRestoreTest, RootAndAPathInsideItNeverWriteThroughASymlink) {
  tree_.Symlink(FakeTree::kRoot, "x", outside_);
  const int y = tree_.Dir(FakeTree::kRoot, "y");
  const int yx = tree_.Dir(y, "x");
  tree_.File(yx, "f", "through the link");
  auto r = Restore({"/", "/y/x"});
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(Listing(outside_), IsEmpty());
  EXPECT_EQ(ReadLink(T("x")), outside_);
  EXPECT_FALSE(r->problems.empty());
  EXPECT_EQ(r->problems.back().path, "/y/x");
}

TEST_F(FileRestoreTest, SpecialFilesAndUnusableSymlinksAreReported) {
  const int top = tree_.Dir(FakeTree::kRoot, "top");
  tree_.Special(top, "sda", GuestType::kBlockDev);
  tree_.Special(top, "null", GuestType::kCharDev);
  tree_.Special(top, "sock", GuestType::kSocket);
  tree_.Symlink(top, "empty-link", "");
  tree_.Symlink(top, "nul-link", std::string("/etc\0/passwd", 12));
  const int unreadable = tree_.Symlink(top, "unreadable-link", "");
  tree_.entry(unreadable).link_problem = "its target cannot be read: chunk 7 is damaged";
  tree_.File(top, "ok", "ok");
  auto r = Restore({"/top"});
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems,
              ElementsAre(Problem("/top/sda", HasSubstr("special files are not restored")),
                          Problem("/top/null", HasSubstr("special files are not restored")),
                          Problem("/top/sock", HasSubstr("special files are not restored")),
                          Problem("/top/empty-link", HasSubstr("symlink without a usable target")),
                          Problem("/top/nul-link", HasSubstr("symlink without a usable target")),
                          Problem("/top/unreadable-link",
                                  "symlink not restored: its target cannot be read: chunk 7 "
                                  "is damaged")));
  EXPECT_EQ(Listing(target_), (std::set<std::string>{"top", "top/ok"}));
}

TEST_F(FileRestoreTest, LookupFailureWritesNothing) {
  tree_.Dir(FakeTree::kRoot, "top");
  EXPECT_THAT(Restore({"/top", "/missing"}),
              StatusIs(Code::kNotFound, AllOf(HasSubstr("/missing"), HasSubstr("not found"))));
  EXPECT_FALSE(PathExists(target_));
  EXPECT_THAT(Restore({}), StatusIs(Code::kInvalidArgument, HasSubstr("no path")));
  FileRestoreOptions o;
  EXPECT_THAT(RestoreGuestFiles(tree_, {"/top"}, o),
              StatusIs(Code::kInvalidArgument, HasSubstr("no target")));
}

TEST_F(FileRestoreTest, TargetThatIsAFileOrASymlinkIsRefused) {
  tree_.File(tree_.Dir(FakeTree::kRoot, "top"), "f", "f");
  WriteWholeFile(target_, AsBytes("a file"));
  EXPECT_THAT(Restore({"/top"}),
              StatusIs(Code::kInvalidArgument, HasSubstr("exists and is not a directory")));
  EXPECT_EQ(ReadWholeFile(target_), B("a file"));
  const std::string link = tmp_.Sub("link");
  ASSERT_EQ(::symlink(outside_.c_str(), link.c_str()), 0);
  // The true reason: a symlink, not "not a directory" (it leads to one).
  EXPECT_THAT(Restore({"/top"}, FileTarget::kDirectory, link),
              StatusIs(Code::kInvalidArgument,
                       AllOf(HasSubstr(link + " is a symlink (to '" + outside_ + "')"),
                             HasSubstr("give the directory itself"))));
  EXPECT_THAT(Listing(outside_), IsEmpty());
  const std::string dangling = tmp_.Sub("dangling");
  ASSERT_EQ(::symlink(tmp_.Sub("nowhere").c_str(), dangling.c_str()), 0);
  EXPECT_THAT(Restore({"/top"}, FileTarget::kDirectory, dangling),
              StatusIs(Code::kInvalidArgument, HasSubstr("is a symlink")));
  EXPECT_FALSE(PathExists(tmp_.Sub("nowhere")));
}

TEST_F(FileRestoreTest, MissingTargetDirectoriesAreMade) {
  tree_.File(FakeTree::kRoot, "f", "content");
  const std::string deep = tmp_.Sub("a/b/c");
  auto r = Restore({"/f"}, FileTarget::kDirectory, deep);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(ReadWholeFile(deep + "/f"), B("content"));
}

TEST_F(FileRestoreTest, ProgressEndsWithTheFinalByteCount) {
  const int top = tree_.Dir(FakeTree::kRoot, "top");
  tree_.File(top, "a", RandomData(3 * kMiB, 1));
  tree_.File(top, "b", "12345");
  std::vector<Progress> seen;
  progress_ = [&](const Progress& p) { seen.push_back(p); };
  auto r = Restore({"/top"});
  ASSERT_THAT(r, IsOk());
  ASSERT_FALSE(seen.empty());
  EXPECT_TRUE(seen.back().final);
  EXPECT_EQ(seen.back().done_bytes, 3 * kMiB + 5);
  EXPECT_EQ(r->bytes, 3 * kMiB + 5);
  for (size_t i = 0; i + 1 < seen.size(); ++i) EXPECT_FALSE(seen[i].final);
}

// A guest file may be named like the restore's own temporary files. It is a
// valid name and must neither be mistaken for one nor stop the restore.
TEST_F(FileRestoreTest, GuestNameLikeATemporaryFileDoesNotStopTheRestore) {
  const int top = tree_.Dir(FakeTree::kRoot, "top");
  const std::string lookalike = ".haven-partial." + std::to_string(::getpid()) + ".2";
  tree_.File(top, lookalike, "guest file");
  tree_.File(top, "b.txt", "b");
  tree_.File(top, "c.txt", "c");
  auto r = Restore({"/top"});
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems, IsEmpty());
  EXPECT_EQ(ReadWholeFile(T("top/" + lookalike)), B("guest file"));
  EXPECT_EQ(ReadWholeFile(T("top/b.txt")), B("b"));
  EXPECT_EQ(ReadWholeFile(T("top/c.txt")), B("c"));
}

// -------------------------------------------------------------- archives
class ArchiveTest : public FileRestoreTest,
                    public ::testing::WithParamInterface<FileTarget> {
 protected:
  void SetUp() override {
    FileRestoreTest::SetUp();
    archive_ = tmp_.Sub(GetParam() == FileTarget::kTar ? "export.tar" : "export.zip");
  }
  bool tar() const { return GetParam() == FileTarget::kTar; }
  Result<FileRestoreStats> Export(const std::vector<std::string>& paths) {
    return Restore(paths, GetParam(), archive_);
  }
  std::string archive_;
};

TEST_P(ArchiveTest, HoldsTheTreeUnderTheBaseName) {
  const int docs = tree_.Dir(FakeTree::kRoot, "docs", 0750);
  const int a = tree_.File(docs, "a.txt", "alpha\n", 0640);
  const int sub = tree_.Dir(docs, "sub", 0700);
  const int b = tree_.File(sub, "b.bin", RandomData(3 * kMiB + 17, 31), 0600);
  const int z = tree_.File(sub, "zero", Bytes(kMiB, 0), 0644);
  const int l = tree_.Symlink(docs, "link", "../../etc/passwd");
  const int other = tree_.File(FakeTree::kRoot, "other.txt", "other", 0644);

  auto r = Export({"/docs", "/other.txt"});
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems, IsEmpty());
  EXPECT_EQ(r->files, 4u);
  EXPECT_EQ(r->dirs, 2u);
  EXPECT_EQ(r->symlinks, 1u);
  EXPECT_FALSE(PathExists(archive_ + ".haven-partial"));

  const auto entries = ReadArchive(archive_);
  EXPECT_THAT(Names(entries),
              ElementsAre("docs", "docs/a.txt", "docs/sub", "docs/sub/b.bin", "docs/sub/zero",
                          "docs/link", "other.txt"));
  ExpectSafeNames(entries);
  struct Want {
    const char* path;
    int id;
    mode_t type;
    mode_t perm;
  };
  for (const Want& w : std::vector<Want>{{"docs", docs, AE_IFDIR, 0750},
                                         {"docs/a.txt", a, AE_IFREG, 0640},
                                         {"docs/sub", sub, AE_IFDIR, 0700},
                                         {"docs/sub/b.bin", b, AE_IFREG, 0600},
                                         {"docs/sub/zero", z, AE_IFREG, 0644},
                                         {"docs/link", l, AE_IFLNK, 0},
                                         {"other.txt", other, AE_IFREG, 0644}}) {
    SCOPED_TRACE(w.path);
    const Archived* e = FindEntry(entries, w.path);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->type, w.type);
    if (w.type != AE_IFLNK) {
      EXPECT_EQ(e->perm, w.perm);
    }
    EXPECT_EQ(e->mtime, tree_.entry(w.id).mtime_ns / 1000000000);
    if (w.type == AE_IFREG) {
      EXPECT_TRUE(e->data == Str(tree_.content(w.id))) << "content differs";
    }
    if (tar()) {
      EXPECT_EQ(e->uid, tree_.entry(w.id).uid);
      EXPECT_EQ(e->gid, tree_.entry(w.id).gid);
    }
  }
  EXPECT_EQ(FindEntry(entries, "docs/link")->symlink, "../../etc/passwd");
}

// Guest names are bytes: UTF-8 (NTFS, FAT and exFAT names always are) and,
// on ext, anything else without '/', NUL or control characters. Both kinds
// are exported byte for byte. Haven runs in whatever locale it is started
// in, often "C" (as this test binary does). The export runs in a child
// process so that a crash fails this test, not the whole binary.
TEST_P(ArchiveTest, NonAsciiNamesAreExportedByteForByte) {
  const int docs = tree_.Dir(FakeTree::kRoot, "docs");
  tree_.File(docs, "caf\xc3\xa9.txt", "utf-8 name");
  tree_.File(docs, "\xe6\x97\xa5\xe6\x9c\xac.txt", "cjk name");
  tree_.File(docs, "latin1-\xe9t\xe9.txt", "not utf-8");
  tree_.Symlink(docs, "link", "caf\xc3\xa9.txt");
  GTEST_FLAG_SET(death_test_style, "fast");  // the child's archive stays
  EXPECT_EXIT(
      {
        auto r = Export({"/docs"});
        std::_Exit(r.ok() && r->problems.empty() ? 0 : 3);
      },
      ::testing::ExitedWithCode(0), "");
  ASSERT_TRUE(PathExists(archive_)) << "the export did not complete";
  const auto entries = ReadArchive(archive_);
  EXPECT_THAT(Names(entries),
              ElementsAre("docs", "docs/caf\xc3\xa9.txt", "docs/\xe6\x97\xa5\xe6\x9c\xac.txt",
                          "docs/latin1-\xe9t\xe9.txt", "docs/link"));
  const Archived* l = FindEntry(entries, "docs/link");
  ASSERT_NE(l, nullptr);
  EXPECT_EQ(l->symlink, "caf\xc3\xa9.txt");
  const Archived* f = FindEntry(entries, "docs/latin1-\xe9t\xe9.txt");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->data, "not utf-8");
}

TEST_P(ArchiveTest, FifoIsExportedOrReportedNeverFatal) {
  const int top = tree_.Dir(FakeTree::kRoot, "top");
  tree_.File(top, "a", "a");
  tree_.Fifo(top, "pipe", 0600);
  tree_.File(top, "z", "z");
  auto r = Export({"/top"});
  ASSERT_THAT(r, IsOk());
  const auto entries = ReadArchive(archive_);
  if (tar()) {
    EXPECT_THAT(r->problems, IsEmpty());
    EXPECT_THAT(Names(entries), ElementsAre("top", "top/a", "top/pipe", "top/z"));
    EXPECT_EQ(FindEntry(entries, "top/pipe")->type, static_cast<mode_t>(AE_IFIFO));
  } else {
    // Zip has no FIFOs: reported, the rest exported.
    EXPECT_THAT(r->problems, ElementsAre(Field(&FileRestoreProblem::path, "/top/pipe")));
    EXPECT_THAT(Names(entries), ElementsAre("top", "top/a", "top/z"));
  }
}

TEST_P(ArchiveTest, HostileNamesNeverBecomeEntries) {
  const int top = tree_.Dir(FakeTree::kRoot, "top");
  tree_.File(top, "ok.txt", "fine");
  for (const Hostile& h : HostileNames()) tree_.File(top, h.name, "evil");
  const int dotdot = tree_.Dir(top, "..");
  tree_.File(dotdot, "pwned", "escaped");
  const int ok_dir = tree_.Dir(top, "ok dir");
  tree_.File(ok_dir, "inner", "inner");
  tree_.Symlink(ok_dir, "up", "../../../../etc");
  const int evil = tree_.Dir(FakeTree::kRoot, "evil-top");
  tree_.entry(evil).name = "..";
  tree_.File(evil, "pwned", "escaped");
  tree_.Alias("/evil-top", evil);

  auto r = Export({"/top", "/evil-top"});
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->problems.size(), HostileNames().size() + 2);
  for (const auto& p : r->problems) EXPECT_THAT(p.what, HasSubstr("invalid name")) << p.path;
  EXPECT_EQ(r->problems.back().path, "/evil-top");
  const auto entries = ReadArchive(archive_);
  EXPECT_THAT(Names(entries),
              ElementsAre("top", "top/ok.txt", "top/ok dir", "top/ok dir/inner", "top/ok dir/up"));
  ExpectSafeNames(entries);
  EXPECT_EQ(FindEntry(entries, "top/ok.txt")->data, "fine");
  EXPECT_EQ(Listing(tmp_.path()), (std::set<std::string>{"outside", archive_.substr(tmp_.path().size() + 1)}));
}

TEST_P(ArchiveTest, ExistingArchiveIsNotReplaced) {
  tree_.File(FakeTree::kRoot, "f", "f");
  WriteWholeFile(archive_, AsBytes("precious"));
  EXPECT_THAT(Export({"/f"}),
              StatusIs(Code::kInvalidArgument, AllOf(HasSubstr(archive_), HasSubstr("exists"))));
  EXPECT_EQ(ReadWholeFile(archive_), B("precious"));
  EXPECT_FALSE(PathExists(archive_ + ".haven-partial"));

  // A symlink at the path is not followed either.
  ASSERT_EQ(::unlink(archive_.c_str()), 0);
  const std::string victim = outside_ + "/victim";
  WriteWholeFile(victim, AsBytes("victim"));
  ASSERT_EQ(::symlink(victim.c_str(), archive_.c_str()), 0);
  EXPECT_THAT(Export({"/f"}), StatusIs(Code::kInvalidArgument, HasSubstr("exists")));
  EXPECT_EQ(ReadWholeFile(victim), B("victim"));
}

TEST_P(ArchiveTest, ExistingPartialFileIsLeftAlone) {
  tree_.File(FakeTree::kRoot, "f", "f");
  WriteWholeFile(archive_ + ".haven-partial", AsBytes("another export"));
  EXPECT_THAT(Export({"/f"}), StatusIs(Code::kInvalidArgument,
                                       HasSubstr("another export to the same file")));
  EXPECT_EQ(ReadWholeFile(archive_ + ".haven-partial"), B("another export"));
  EXPECT_FALSE(PathExists(archive_));
}

TEST_P(ArchiveTest, FatalErrorRemovesThePartialArchive) {
  const int top = tree_.Dir(FakeTree::kRoot, "top");
  tree_.File(top, "a", "a");
  const int bad = tree_.File(top, "b", RandomData(2 * kMiB, 4));
  tree_.Fail(bad, kMiB, IoError("injected: EIO"));
  bool partial_seen = false;
  tree_.on_piece = [&](const GuestEntry&, uint64_t) {
    partial_seen = partial_seen || PathExists(archive_ + ".haven-partial");
  };
  EXPECT_THAT(Export({"/top"}), StatusIs(Code::kIoError, HasSubstr("injected: EIO")));
  EXPECT_TRUE(partial_seen);
  EXPECT_FALSE(PathExists(archive_ + ".haven-partial"));
  EXPECT_FALSE(PathExists(archive_));
}

TEST_P(ArchiveTest, LargeFileFailingAfterItsEntryStartedFailsTheExport) {
  tree_.max_size = 1ull << 40;
  const int top = tree_.Dir(FakeTree::kRoot, "top");
  tree_.File(top, "a", "a");
  const int big = tree_.File(top, "big", Bytes(65 * kMiB, 'x'));
  tree_.Fail(big, 2 * kMiB, DataLoss("injected: chunk lost"));
  auto r = Export({"/top"});
  EXPECT_THAT(r, StatusIs(Code::kIoError,
                          AllOf(HasSubstr("top/big"), HasSubstr("failed after its entry was started"),
                                HasSubstr("injected: chunk lost"))));
  EXPECT_FALSE(PathExists(archive_ + ".haven-partial"));
  EXPECT_FALSE(PathExists(archive_));
}

TEST_P(ArchiveTest, DataLossInASmallFileSkipsItsEntry) {
  const int top = tree_.Dir(FakeTree::kRoot, "top");
  tree_.File(top, "a", "before");
  const int bad = tree_.File(top, "bad", RandomData(3 * kMiB, 9));
  tree_.Fail(bad, 2 * kMiB, DataLoss("injected: chunk 3 damaged"));
  tree_.File(top, "z", "after");
  auto r = Export({"/top"});
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems,
              ElementsAre(Problem("/top/bad", HasSubstr("injected: chunk 3 damaged"))));
  EXPECT_EQ(r->files, 2u);
  const auto entries = ReadArchive(archive_);
  EXPECT_THAT(Names(entries), ElementsAre("top", "top/a", "top/z"));
  EXPECT_EQ(FindEntry(entries, "top/z")->data, "after");
}

TEST_P(ArchiveTest, WithoutUnixMetadataModesAreDefaults) {
  tree_.unix_metadata = false;
  const int d = tree_.Dir(FakeTree::kRoot, "Docs", 0500);
  tree_.File(d, "x.doc", "x", 04711);
  auto r = Export({"/Docs"});
  ASSERT_THAT(r, IsOk());
  const auto entries = ReadArchive(archive_);
  ASSERT_THAT(Names(entries), ElementsAre("Docs", "Docs/x.doc"));
  EXPECT_EQ(entries[0].perm, 0755u);
  EXPECT_EQ(entries[1].perm, 0644u);
  if (tar()) {
    EXPECT_EQ(entries[1].uid, 0);
    EXPECT_EQ(entries[1].gid, 0);
  }
}

TEST_P(ArchiveTest, RootExportsItsChildrenAtTheTop) {
  const int etc = tree_.Dir(FakeTree::kRoot, "etc");
  tree_.File(etc, "hostname", "guest\n");
  tree_.File(FakeTree::kRoot, "vmlinuz", "kernel");
  auto r = Export({"/"});
  ASSERT_THAT(r, IsOk());
  const auto entries = ReadArchive(archive_);
  EXPECT_THAT(Names(entries), ElementsAre("etc", "etc/hostname", "vmlinuz"));
  ExpectSafeNames(entries);
}

// "/" restores the root's children at the top, so another path given with
// it can restore to a name the root already used: that is a name clash too.
// An archive must not hold two entries of one name, nor an entry under a
// name that is a symlink in the same archive (an extractor following it
// would write outside its target).
TEST_P(ArchiveTest, RootAndAnotherPathNeverGiveDuplicateOrThroughSymlinkEntries) {
  const int docs = tree_.Dir(FakeTree::kRoot, "docs");
  tree_.File(docs, "a.txt", "a");
  tree_.Symlink(FakeTree::kRoot, "x", "/etc");
  const int y = tree_.Dir(FakeTree::kRoot, "y");
  const int yx = tree_.Dir(y, "x");
  tree_.File(yx, "cron", "* * * * * root evil");
  auto r = Export({"/", "/docs", "/y/x"});
  ASSERT_THAT(r, IsOk());
  const auto entries = ReadArchive(archive_);
  const std::vector<std::string> names = Names(entries);
  const std::set<std::string> unique(names.begin(), names.end());
  EXPECT_EQ(unique.size(), names.size()) << "duplicate entries: " << ::testing::PrintToString(names);
  for (const auto& e : entries) {
    if (e.type != AE_IFLNK) continue;
    for (const auto& n : names) {
      EXPECT_NE(n.rfind(e.path + "/", 0), 0u)
          << "entry " << n << " lies under symlink entry " << e.path;
    }
  }
  EXPECT_THAT(r->problems, ElementsAre(Problem("/docs", HasSubstr("name clash")),
                                       Problem("/y/x", HasSubstr("name clash"))));
}

INSTANTIATE_TEST_SUITE_P(TarAndZip, ArchiveTest,
                         ::testing::Values(FileTarget::kTar, FileTarget::kZip),
                         [](const ::testing::TestParamInfo<FileTarget>& i) {
                           return std::string(i.param == FileTarget::kTar ? "Tar" : "Zip");
                         });

// ------------------------------------------------------------ dry run
// A dry run is the restore's walk stopped before the first write: it makes
// the same decisions against the target as it is and writes nothing.
TEST_F(FileRestoreTest, DryRunPlansEveryEntryAndWritesNothing) {
  const int top = tree_.Dir(FakeTree::kRoot, "top");
  tree_.File(top, "new.txt", "new");
  tree_.File(top, "kept.txt", "from the backup");
  const int sub = tree_.Dir(top, "sub");
  tree_.File(sub, "deep.txt", "deep");
  tree_.Symlink(top, "link", "new.txt");
  FileRestoreOptions o;
  o.path = target_;
  o.dry_run = true;

  // The target does not exist: everything is created, nothing is made.
  auto r = RestoreGuestFiles(tree_, {"/top"}, o);
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems, IsEmpty());
  EXPECT_EQ(r->files, 3u);
  EXPECT_EQ(r->dirs, 2u);
  EXPECT_EQ(r->symlinks, 1u);
  EXPECT_EQ(r->bytes, 3u + 15u + 4u);
  std::map<std::string, std::string> actions;
  for (const auto& e : r->planned) actions[e.path] = e.action;
  EXPECT_EQ(actions, (std::map<std::string, std::string>{
                         {"top", "create"},
                         {"top/new.txt", "create"},
                         {"top/kept.txt", "create"},
                         {"top/sub", "create"},
                         {"top/sub/deep.txt", "create"},
                         {"top/link", "create"}}));
  EXPECT_FALSE(PathExists(target_));

  // A file in the target is a conflict under kNever, replaced under
  // kAlways; either way the dry run leaves it as it was.
  ASSERT_EQ(::mkdir(target_.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(T("top").c_str(), 0755), 0);
  WriteWholeFile(T("top/kept.txt"), Bytes{'o', 'l', 'd'});
  r = RestoreGuestFiles(tree_, {"/top"}, o);
  ASSERT_THAT(r, IsOk());
  ASSERT_THAT(r->problems, SizeIs(1));
  EXPECT_EQ(r->problems[0].path, "/top/kept.txt");
  EXPECT_THAT(r->problems[0].what, HasSubstr("exists in the target"));
  EXPECT_EQ(r->dirs, 1u);  // top is there: entered, not made
  o.overwrite = Overwrite::kAlways;
  r = RestoreGuestFiles(tree_, {"/top"}, o);
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems, IsEmpty());
  actions.clear();
  for (const auto& e : r->planned) actions[e.path] = e.action;
  EXPECT_EQ(actions["top/kept.txt"], "replace");
  EXPECT_EQ(actions["top/new.txt"], "create");
  EXPECT_EQ(actions.count("top"), 0u);  // exists: not planned
  EXPECT_TRUE(ReadWholeFile(T("top/kept.txt")) == (Bytes{'o', 'l', 'd'}));
  EXPECT_EQ(Listing(target_), (std::set<std::string>{"top", "top/kept.txt"}));

  // The run with the same options does what the plan said.
  o.dry_run = false;
  r = RestoreGuestFiles(tree_, {"/top"}, o);
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems, IsEmpty());
  EXPECT_EQ(r->files, 3u);
  EXPECT_TRUE(ReadWholeFile(T("top/kept.txt")) ==
              Bytes(std::string_view("from the backup").begin(),
                    std::string_view("from the backup").end()));
}

TEST_F(FileRestoreTest, DryRunCapsItsListButCountsEverything) {
  const int top = tree_.Dir(FakeTree::kRoot, "top");
  for (int i = 0; i < 20; ++i) tree_.File(top, "f" + std::to_string(i), "x");
  FileRestoreOptions o;
  o.path = target_;
  o.dry_run = true;
  o.max_planned = 5;
  auto r = RestoreGuestFiles(tree_, {"/top"}, o);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->files, 20u);
  EXPECT_THAT(r->planned, SizeIs(5));
  EXPECT_EQ(r->planned_more, 16u);  // top and 20 files, 5 listed
  o.target = FileTarget::kTar;
  o.path = tmp_.Sub("out.tar");
  EXPECT_THAT(RestoreGuestFiles(tree_, {"/top"}, o),
              StatusIs(Code::kInvalidArgument, HasSubstr("into a folder")));
}

// havend's downloads: the archive goes to a callback instead of a file.
// It holds the same entries as the file export, no file is created, and a
// callback that fails (the client went away) stops the export with its
// own error.
TEST_F(FileRestoreTest, ArchiveIntoAWriterHoldsTheSameEntries) {
  const int top = tree_.Dir(FakeTree::kRoot, "top");
  tree_.File(top, "a.txt", std::string_view("alpha\n"));
  tree_.File(top, "big.bin", RandomData(3 * kMiB, 31));
  tree_.Symlink(top, "link", "a.txt");
  for (FileTarget archive : {FileTarget::kTar, FileTarget::kZip}) {
    const std::string ext = archive == FileTarget::kTar ? ".tar" : ".zip";
    auto file = Restore({"/top"}, archive, tmp_.Sub("file" + ext));
    ASSERT_THAT(file, IsOk());
    std::string streamed;
    FileRestoreOptions o;
    o.target = archive;
    o.archive_writer = [&](std::string_view bytes) {
      streamed.append(bytes);
      return OkStatus();
    };
    auto st = RestoreGuestFiles(tree_, {"/top"}, o);
    ASSERT_THAT(st, IsOk());
    EXPECT_EQ(st->files, 2u);
    const std::string copy = tmp_.Sub("streamed" + ext);
    {
      std::FILE* f = std::fopen(copy.c_str(), "wb");
      ASSERT_NE(f, nullptr);
      std::fwrite(streamed.data(), 1, streamed.size(), f);
      std::fclose(f);
    }
    std::vector<Archived> want = ReadArchive(tmp_.Sub("file" + ext));
    std::vector<Archived> got = ReadArchive(copy);
    ASSERT_EQ(got.size(), want.size()) << ext;
    ASSERT_EQ(got.size(), 4u) << ext;  // top, a.txt, big.bin, link
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].path, want[i].path);
      EXPECT_EQ(got[i].type, want[i].type);
      EXPECT_TRUE(got[i].data == want[i].data) << got[i].path;
      EXPECT_EQ(got[i].symlink, want[i].symlink);
    }
    // Nothing was written beside the target path (there is none).
    EXPECT_FALSE(PathExists(tmp_.Sub(".haven-partial")));

    size_t taken = 0;
    o.archive_writer = [&](std::string_view bytes) -> Status {
      if (taken > kMiB) return Unavailable("the client went away");
      taken += bytes.size();
      return OkStatus();
    };
    EXPECT_THAT(RestoreGuestFiles(tree_, {"/top"}, o),
                StatusIs(Code::kUnavailable, HasSubstr("the client went away")))
        << ext;
  }
}

}  // namespace
}  // namespace haven::restore
