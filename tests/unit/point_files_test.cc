// The checks havend applies to what clients and points send before any
// lookup (appliance/point_files.h).
#include "appliance/point_files.h"

#include <map>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/test_util.h"

namespace haven::appliance {
namespace {

using restore::GuestEntry;
using restore::GuestType;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A tree of directories and empty files by inode; a directory may list an
// ancestor again (a loop, as a damaged or crafted file system can).
class LoopTree : public restore::GuestTree {
 public:
  uint64_t Dir(uint64_t parent, std::string name) {
    return Add(parent, std::move(name), GuestType::kDir);
  }
  uint64_t File(uint64_t parent, std::string name) {
    return Add(parent, std::move(name), GuestType::kFile);
  }
  void Link(uint64_t parent, uint64_t child, std::string name) {
    GuestEntry e = nodes_[child];
    e.name = std::move(name);
    children_[parent].push_back(e);
  }
  Result<GuestEntry> Lookup(const std::string& path) override {
    if (path == "/") return nodes_[1];
    return NotFound(path);
  }
  Result<std::vector<GuestEntry>> List(const GuestEntry& dir) override {
    ++lists_;
    return children_[dir.inode];
  }
  Status ReadFile(
      const GuestEntry&,
      const std::function<Status(uint64_t, const uint8_t*, size_t)>&,
      size_t) override {
    return OkStatus();
  }
  bool has_unix_metadata() const override { return true; }
  uint64_t max_file_size() const override { return 1 << 20; }
  int lists_ = 0;

 private:
  uint64_t Add(uint64_t parent, std::string name, GuestType type) {
    GuestEntry e;
    e.inode = next_++;
    e.name = std::move(name);
    e.type = type;
    nodes_[e.inode] = e;
    if (parent) children_[parent].push_back(e);
    return e.inode;
  }
  uint64_t next_ = 1;
  std::map<uint64_t, GuestEntry> nodes_;
  std::map<uint64_t, std::vector<GuestEntry>> children_;
};

std::vector<std::string> Paths(const SearchResult& r) {
  std::vector<std::string> out;
  for (const auto& h : r.hits) out.push_back(h.path);
  return out;
}

TEST(SearchTree, FindsByGlobInNameOrderAndEndsOnLoops) {
  LoopTree t;
  const uint64_t root = t.Dir(0, "/");
  const uint64_t etc = t.Dir(root, "etc");
  t.File(etc, "passwd");
  const uint64_t ssh = t.Dir(etc, "ssh");
  t.File(ssh, "sshd.conf");
  t.File(etc, "a.conf");
  t.File(root, "z.conf");
  t.Link(ssh, etc, "again");  // etc/ssh/again is etc: a loop
  t.Link(root, root, "..");   // a hostile name: listed, never entered
  GuestEntry start = *t.Lookup("/");
  SearchResult r = SearchTree(t, start, "/", "*.conf", {});
  // A directory's own matches first, then its subdirectories in order.
  EXPECT_THAT(Paths(r),
              ElementsAre("/z.conf", "/etc/a.conf", "/etc/ssh/sshd.conf"));
  EXPECT_EQ(r.truncated, "");
  EXPECT_EQ(t.lists_, 3);  // /, etc, ssh: the loop is not entered again
  EXPECT_THAT(Paths(SearchTree(t, start, "/", "passwd", {})),
              ElementsAre("/etc/passwd"));
}

TEST(SearchTree, StopsAtEachBoundAndSaysWhich) {
  LoopTree t;
  const uint64_t root = t.Dir(0, "/");
  uint64_t dir = root;
  for (int i = 0; i < 100; ++i) {
    t.File(dir, "f" + std::to_string(i) + ".txt");
    dir = t.Dir(dir, "d" + std::to_string(i));
  }
  GuestEntry start = *t.Lookup("/");
  SearchLimits few;
  few.results = 5;
  SearchResult r = SearchTree(t, start, "/", "*.txt", few);
  EXPECT_EQ(r.hits.size(), 5u);
  EXPECT_EQ(r.truncated, "more than 5 results");
  SearchLimits shallow;
  shallow.depth = 3;
  r = SearchTree(t, start, "/", "*.txt", shallow);
  // Depth 3 below the start: the files of /, /d0 and /d0/d1.
  EXPECT_THAT(Paths(r), ElementsAre("/f0.txt", "/d0/f1.txt", "/d0/d1/f2.txt"));
  EXPECT_EQ(r.truncated, "");
  SearchLimits looked;
  looked.visited = 7;
  r = SearchTree(t, start, "/", "*", looked);
  EXPECT_EQ(r.visited, 7u);
  EXPECT_EQ(r.truncated, "looked at 7 entries");
}

TEST(CheckGuestPath, CanonicalAbsolutePathsPass) {
  EXPECT_EQ(*CheckGuestPath("/"), "/");
  EXPECT_EQ(*CheckGuestPath("/etc"), "/etc");
  EXPECT_EQ(*CheckGuestPath("/etc/"), "/etc");
  EXPECT_EQ(*CheckGuestPath("//etc//ssh/"), "/etc/ssh");
  // Names that only look like dots are names.
  EXPECT_EQ(*CheckGuestPath("/a/...b/..c/c.."), "/a/...b/..c/c..");
  EXPECT_EQ(*CheckGuestPath("/etc\\..\\x"), "/etc\\..\\x");
}

TEST(CheckGuestPath, TraversalAndBadBytesAreRefused) {
  for (std::string p : {"../etc", "etc/passwd", "/..", "/etc/..", "/etc/../x",
                        "/./etc", "/etc/.", "/a/b/../../../root"}) {
    auto r = CheckGuestPath(p);
    EXPECT_FALSE(r.ok()) << p;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << p;
  }
  EXPECT_THAT(CheckGuestPath("/etc/../x").status().message(),
              HasSubstr("'..' component"));
  EXPECT_THAT(CheckGuestPath("etc").status().message(), HasSubstr("absolute"));
  EXPECT_THAT(CheckGuestPath(std::string("/etc/\0x", 7)).status().message(),
              HasSubstr("NUL or control"));
  EXPECT_THAT(CheckGuestPath("/etc/a\nb").status().message(),
              HasSubstr("control"));
  EXPECT_THAT(CheckGuestPath("").status().message(), HasSubstr("empty"));
  EXPECT_THAT(CheckGuestPath("/" + std::string(5000, 'a')).status().message(),
              HasSubstr("longer than 4096"));
}

TEST(SafeDownloadName, OnlyPlainBytesReachTheHeader) {
  EXPECT_EQ(SafeDownloadName("passwd"), "passwd");
  EXPECT_EQ(SafeDownloadName("a b\"c\r\nSet-Cookie: x"),
            "a_b_c__Set-Cookie__x");
  EXPECT_EQ(SafeDownloadName("caf\xc3\xa9.txt"), "caf__.txt");
  EXPECT_EQ(SafeDownloadName(".."), "download");
  EXPECT_EQ(SafeDownloadName(""), "download");
  EXPECT_EQ(SafeDownloadName(std::string(300, 'x')).size(), 100u);
}

TEST(ParseKind, TheApiNames) {
  EXPECT_EQ(ParseKind("file"), "files");
  EXPECT_EQ(ParseKind("files"), "files");
  EXPECT_EQ(ParseKind("vm"), "vm");
  EXPECT_EQ(ParseKind("image"), "image");
  EXPECT_EQ(ParseKind("disk"), std::nullopt);
}

}  // namespace
}  // namespace haven::appliance
