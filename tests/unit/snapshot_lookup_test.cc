// Tests for Repository's snapshot manifests on a real repository: commit,
// load, list and FindSnapshot lookups (id prefix, latest, NAME:latest).
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "repository/repository.h"
#include "tests/unit/test_util.h"

namespace haven::repository {
namespace {

namespace fs = std::filesystem;
using ::haven::testing_util::FlipByte;
using ::haven::testing_util::IsOk;
using ::haven::testing_util::PathExists;
using ::haven::testing_util::StatusIs;
using ::haven::testing_util::TempDir;
using ::haven::testing_util::WriteOptions;
using ::haven::testing_util::WriteWholeFile;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr const char* kPass = testing_util::kTestPassphrase;

class SnapshotLookupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(tmp_.path().empty());
    repo_dir_ = tmp_.Sub("repo");
    ASSERT_THAT(testing_util::CloneFreshRepository(repo_dir_), IsOk());
  }

  std::unique_ptr<Repository> OpenRepo() {
    auto r = Repository::Open(repo_dir_, kPass, WriteOptions());
    EXPECT_THAT(r, IsOk());
    if (!r.ok()) return nullptr;
    return std::move(r).value();
  }

  // A point of `kind`: "image" with an empty disk, "files" with empty
  // catalog and content lists.
  Manifest Commit(Repository& repo, const std::string& name, const std::string& time,
                  const std::string& kind = "image") {
    Manifest m;
    m.name = name;
    m.kind = kind;
    m.time = time;
    m.consistency = "offline";
    m.tool = "haven-test";
    if (kind == "files") {
      for (const char* stream : {"catalog", "content"}) {
        DiskManifest d;
        d.name = d.kind = stream;
        d.chunk_size = 0;  // streams have none
        m.disks.push_back(d);
      }
    } else {
      DiskManifest d;
      d.name = "disk0";
      d.size = 0;
      d.chunk_size = 65536;
      m.disks.push_back(d);
    }
    EXPECT_THAT(repo.CommitSnapshot(m), IsOk());
    EXPECT_TRUE(IsSnapshotId(m.id)) << m.id;
    return m;
  }

  TempDir tmp_;
  std::string repo_dir_;
};

TEST_F(SnapshotLookupTest, CommitThenLoadRoundTrips) {
  auto repo = OpenRepo();
  ASSERT_NE(repo, nullptr);
  Manifest m = Commit(*repo, "vm1", "2026-01-01T00:00:00Z");
  EXPECT_TRUE(PathExists(repo_dir_ + "/snapshots/" + m.id));
  auto back = repo->LoadSnapshot(m.id);
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->id, m.id);
  EXPECT_EQ(back->name, "vm1");
  EXPECT_EQ(back->time, "2026-01-01T00:00:00Z");
  EXPECT_EQ(back->tool, "haven-test");
  ASSERT_EQ(back->disks.size(), 1u);
  EXPECT_EQ(back->disks[0].name, "disk0");
  // Encrypted at rest: the name does not appear in the file.
  auto raw = ReadFile(repo_dir_ + "/snapshots/" + m.id, 1 << 20);
  ASSERT_THAT(raw, IsOk());
  EXPECT_EQ(std::string(raw->begin(), raw->end()).find("haven-test"), std::string::npos);
}

TEST_F(SnapshotLookupTest, LoadSnapshotErrors) {
  auto repo = OpenRepo();
  ASSERT_NE(repo, nullptr);
  Manifest m = Commit(*repo, "vm1", "2026-01-01T00:00:00Z");
  EXPECT_THAT(repo->LoadSnapshot("../config"),
              StatusIs(Code::kInvalidArgument, HasSubstr("not a snapshot id")));
  EXPECT_THAT(repo->LoadSnapshot(std::string(32, '0')),
              StatusIs(Code::kNotFound, HasSubstr("no snapshot")));
  // A copy under another id fails: the id is bound into the blob.
  std::string other_id = std::string(31, '0') + "1";
  fs::copy_file(repo_dir_ + "/snapshots/" + m.id, repo_dir_ + "/snapshots/" + other_id);
  EXPECT_THAT(repo->LoadSnapshot(other_id),
              StatusIs(Code::kDataLoss, AllOf(HasSubstr("snapshot " + other_id),
                                              HasSubstr("authentication failed"))));
  // A flipped byte.
  FlipByte(repo_dir_ + "/snapshots/" + m.id, 20);
  EXPECT_THAT(repo->LoadSnapshot(m.id),
              StatusIs(Code::kDataLoss, AllOf(HasSubstr("snapshot " + m.id),
                                              HasSubstr("authentication failed"))));
  // Truncated.
  WriteWholeFile(repo_dir_ + "/snapshots/" + m.id, AsBytes("ab"));
  EXPECT_THAT(repo->LoadSnapshot(m.id),
              StatusIs(Code::kDataLoss, HasSubstr("truncated")));
}

// After an image backup, a file restore's "latest" is the latest file
// point; with none, NotFound says so and names what there is.
TEST_F(SnapshotLookupTest, LatestOfTheKindsTheCallerCanUse) {
  auto repo = OpenRepo();
  ASSERT_NE(repo, nullptr);
  EXPECT_THAT(repo->FindSnapshot("latest", {"files"}),
              StatusIs(Code::kNotFound, HasSubstr("no snapshots")));
  Manifest img_old = Commit(*repo, "img1", "2026-01-01T00:00:00Z");
  EXPECT_THAT(repo->FindSnapshot("latest", {"files"}),
              StatusIs(Code::kNotFound,
                       AllOf(HasSubstr("no file backup"), HasSubstr("only image backups"))));
  Manifest files_old = Commit(*repo, "web1-files", "2026-01-02T00:00:00Z", "files");
  Manifest files_new = Commit(*repo, "web1-files", "2026-01-03T00:00:00Z", "files");
  Manifest other_files = Commit(*repo, "db-files", "2026-01-02T12:00:00Z", "files");
  Manifest img_new = Commit(*repo, "img1", "2026-01-04T00:00:00Z");

  // Without kinds: the newest point of any kind, as before.
  auto any = repo->FindSnapshot("latest");
  ASSERT_THAT(any, IsOk());
  EXPECT_EQ(any->id, img_new.id);
  auto files = repo->FindSnapshot("latest", {"files"});
  ASSERT_THAT(files, IsOk());
  EXPECT_EQ(files->id, files_new.id);
  EXPECT_EQ(files->kind, "files");
  auto disks = repo->FindSnapshot("latest", {"image", "vm"});
  ASSERT_THAT(disks, IsOk());
  EXPECT_EQ(disks->id, img_new.id);
  auto db = repo->FindSnapshot("db-files:latest", {"files"});
  ASSERT_THAT(db, IsOk());
  EXPECT_EQ(db->id, other_files.id);
  // A name whose points are of another kind: said so, with the names that
  // have points of the kind asked for.
  EXPECT_THAT(repo->FindSnapshot("img1:latest", {"files"}),
              StatusIs(Code::kNotFound,
                       AllOf(HasSubstr("no file backup named 'img1'"),
                             HasSubstr("its points are image backups"),
                             HasSubstr("db-files, web1-files"))));
  // An id prefix names one point whatever its kind.
  auto by_id = repo->FindSnapshot(img_old.id.substr(0, 12), {"files"});
  ASSERT_THAT(by_id, IsOk());
  EXPECT_EQ(by_id->id, img_old.id);
  (void)files_old;
}

// NAME:latest for a name without points lists the names that have some; a
// name given alone says how to name its latest point.
TEST_F(SnapshotLookupTest, NotFoundListsTheNamesThatExist) {
  auto repo = OpenRepo();
  ASSERT_NE(repo, nullptr);
  Commit(*repo, "web1", "2026-01-01T00:00:00Z");
  Commit(*repo, "db1", "2026-01-02T00:00:00Z");
  Commit(*repo, "web1", "2026-01-03T00:00:00Z");
  auto r = repo->FindSnapshot("web2:latest");
  EXPECT_THAT(r, StatusIs(Code::kNotFound,
                          AllOf(HasSubstr("no snapshot named 'web2'"),
                                HasSubstr("are: db1, web1 (use NAME:latest)"))));
  EXPECT_THAT(repo->FindSnapshot("web1"),
              StatusIs(Code::kNotFound, HasSubstr("its latest point is 'web1:latest'")));
  EXPECT_THAT(repo->FindSnapshot("ffffffff"),
              StatusIs(Code::kNotFound, HasSubstr("no snapshot matches 'ffffffff'")));
}

TEST_F(SnapshotLookupTest, FindSnapshotByPrefixLatestAndName) {
  auto repo = OpenRepo();
  ASSERT_NE(repo, nullptr);
  EXPECT_THAT(repo->FindSnapshot("latest"),
              StatusIs(Code::kNotFound, HasSubstr("no snapshots")));

  // Committed out of time order on purpose.
  Manifest vm1_old = Commit(*repo, "vm1", "2026-01-01T00:00:00Z");
  Manifest vm2 = Commit(*repo, "vm2", "2026-03-01T00:00:00Z");
  Manifest vm1_new = Commit(*repo, "vm1", "2026-02-01T00:00:00Z");

  auto latest = repo->FindSnapshot("latest");
  ASSERT_THAT(latest, IsOk());
  EXPECT_EQ(latest->id, vm2.id);
  auto vm1_latest = repo->FindSnapshot("vm1:latest");
  ASSERT_THAT(vm1_latest, IsOk());
  EXPECT_EQ(vm1_latest->id, vm1_new.id);
  auto vm2_latest = repo->FindSnapshot("vm2:latest");
  ASSERT_THAT(vm2_latest, IsOk());
  EXPECT_EQ(vm2_latest->id, vm2.id);
  EXPECT_THAT(repo->FindSnapshot("vm3:latest"),
              StatusIs(Code::kNotFound, HasSubstr("no snapshot named 'vm3'")));

  // Full ids and unique prefixes.
  for (const Manifest* m : {&vm1_old, &vm2, &vm1_new}) {
    auto full = repo->FindSnapshot(m->id);
    ASSERT_THAT(full, IsOk());
    EXPECT_EQ(full->id, m->id);
    // The shortest prefix that no other snapshot shares.
    for (size_t n = 1; n <= 32; ++n) {
      std::string prefix = m->id.substr(0, n);
      int sharing = 0;
      for (const Manifest* o : {&vm1_old, &vm2, &vm1_new})
        if (o->id.compare(0, n, prefix) == 0) ++sharing;
      if (sharing == 1) {
        auto found = repo->FindSnapshot(prefix);
        ASSERT_THAT(found, IsOk()) << prefix;
        EXPECT_EQ(found->id, m->id);
        break;
      }
    }
  }
  EXPECT_THAT(repo->FindSnapshot("zzzz"),
              StatusIs(Code::kNotFound, HasSubstr("no snapshot matches 'zzzz'")));
  EXPECT_THAT(repo->FindSnapshot(""),
              StatusIs(Code::kInvalidArgument, HasSubstr("empty snapshot name")));
}

TEST_F(SnapshotLookupTest, AmbiguousPrefixIsInvalidArgument) {
  auto repo = OpenRepo();
  ASSERT_NE(repo, nullptr);
  // Commit until two ids share their first hex digit (at most 17 commits).
  std::map<char, std::vector<std::string>> by_first;
  char shared = 0;
  for (int i = 0; i < 17 && !shared; ++i) {
    Manifest m = Commit(*repo, "vm", "2026-01-01T00:00:" + std::to_string(10 + i) + "Z");
    auto& ids = by_first[m.id[0]];
    ids.push_back(m.id);
    if (ids.size() == 2) shared = m.id[0];
  }
  ASSERT_NE(shared, 0);
  const auto& pair = by_first[shared];
  // The longest common prefix of the two is still ambiguous.
  size_t common = 0;
  while (common < 32 && pair[0][common] == pair[1][common]) ++common;
  for (size_t n = 1; n <= common; ++n) {
    EXPECT_THAT(repo->FindSnapshot(pair[0].substr(0, n)),
                StatusIs(Code::kInvalidArgument, AllOf(HasSubstr("matches 2 snapshots"),
                                                       HasSubstr("more digits"))))
        << "prefix length " << n;
  }
  auto one = repo->FindSnapshot(pair[0].substr(0, common + 1));
  ASSERT_THAT(one, IsOk());
  EXPECT_EQ(one->id, pair[0]);
}

TEST_F(SnapshotLookupTest, UnreadableSnapshotDoesNotHideOthers) {
  auto repo = OpenRepo();
  ASSERT_NE(repo, nullptr);
  Manifest good = Commit(*repo, "vm1", "2026-01-01T00:00:00Z");
  Manifest bad = Commit(*repo, "vm1", "2026-02-01T00:00:00Z");
  FlipByte(repo_dir_ + "/snapshots/" + bad.id, 10);
  // The catalog holds an authenticated copy of every committed manifest
  // (catalog_test.cc); this test is about a file with no such copy.
  ASSERT_THAT(Catalog::Clear(repo->index()), IsOk());
  std::vector<std::string> errors;
  auto all = repo->ListSnapshots(&errors);
  ASSERT_THAT(all, IsOk());
  ASSERT_THAT(*all, SizeIs(1));
  EXPECT_EQ((*all)[0].id, good.id);
  EXPECT_THAT(errors, ElementsAre(HasSubstr("snapshot " + bad.id)));
  // "latest" refuses: the unreadable manifest might be the newest one.
  for (const char* spec : {"latest", "vm1:latest"}) {
    EXPECT_THAT(repo->FindSnapshot(spec),
                StatusIs(Code::kDataLoss, AllOf(HasSubstr("cannot be resolved safely"),
                                                HasSubstr("snapshot " + bad.id))))
        << spec;
  }
  // By id, the readable one is still found.
  auto by_id = repo->FindSnapshot(good.id);
  ASSERT_THAT(by_id, IsOk());
  EXPECT_EQ(by_id->id, good.id);
  // A lookup of the damaged one reports why it is unusable.
  EXPECT_THAT(repo->FindSnapshot(bad.id),
              StatusIs(Code::kNotFound, HasSubstr("unreadable snapshots")));
}

TEST_F(SnapshotLookupTest, SnapshotsListOldestFirst) {
  auto repo = OpenRepo();
  ASSERT_NE(repo, nullptr);
  Commit(*repo, "c", "2026-03-01T00:00:00Z");
  Commit(*repo, "a", "2026-01-01T00:00:00Z");
  Commit(*repo, "b", "2026-02-01T00:00:00Z");
  // Foreign files in snapshots/ are ignored.
  WriteWholeFile(repo_dir_ + "/snapshots/README", AsBytes("x"));
  std::vector<std::string> errors;
  auto all = repo->ListSnapshots(&errors);
  ASSERT_THAT(all, IsOk());
  ASSERT_THAT(*all, SizeIs(3));
  EXPECT_EQ((*all)[0].name, "a");
  EXPECT_EQ((*all)[1].name, "b");
  EXPECT_EQ((*all)[2].name, "c");
  EXPECT_THAT(errors, IsEmpty());
}

}  // namespace
}  // namespace haven::repository
