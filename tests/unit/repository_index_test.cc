// Tests for the chunk index as a cache of the packs: rebuilding it from pack
// headers (Repository::RebuildIndex and on open), noticing a foreign index and
// cleaning up abandoned temporary packs.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "repository/repository.h"
#include "tests/unit/repository_test_util.h"
#include "tests/unit/test_util.h"

namespace haven::repository {
namespace {

namespace fs = std::filesystem;
using ::haven::testing_util::FastInitOptions;
using ::haven::testing_util::IsOk;
using ::haven::testing_util::kPass;
using ::haven::testing_util::PackFiles;
using ::haven::testing_util::PathExists;
using ::haven::testing_util::ReadOptions;
using ::haven::testing_util::RepositoryTest;
using ::haven::testing_util::StatusIs;
using ::haven::testing_util::WriteOptions;
using ::haven::testing_util::WriteWholeFile;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

TEST_F(RepositoryTest, ReadOnlyOpenRebuildsADeletedIndex) {
  std::vector<Stored> chunks;
  {
    auto repo = OpenRepo(true);
    ASSERT_NE(repo, nullptr);
    chunks = StoreChunks(*repo, 30, 65536);  // two packs
  }
  ASSERT_THAT(PackFiles(repo_dir_), SizeIs(2));
  fs::remove_all(repo_dir_ + "/index");
  ASSERT_FALSE(PathExists(repo_dir_ + "/index"));

  std::vector<std::string> messages;
  OpenOptions o = ReadOptions();
  o.on_wait = [&](const std::string& m) { messages.push_back(m); };
  auto repo = Repository::Open(repo_dir_, kPass, o);
  ASSERT_THAT(repo, IsOk());
  EXPECT_THAT(messages, Contains(HasSubstr("rebuilding")));
  EXPECT_TRUE(PathExists(repo_dir_ + "/index/CURRENT"));
  ExpectReadable(**repo, chunks);
  auto count = (*repo)->index().CountChunks();
  ASSERT_THAT(count, IsOk());
  EXPECT_EQ(*count, 30u);
}

TEST_F(RepositoryTest, RebuildIndexReportsPacksAndChunks) {
  std::vector<Stored> chunks;
  {
    auto repo = OpenRepo(true);
    ASSERT_NE(repo, nullptr);
    chunks = StoreChunks(*repo, 40, 65536, 1);  // three packs
    auto more = StoreChunks(*repo, 5, 1000, 2);  // a fourth, small pack
    chunks.insert(chunks.end(), more.begin(), more.end());
  }
  const auto packs = PackFiles(repo_dir_);
  ASSERT_THAT(packs, SizeIs(4));

  auto report = Repository::RebuildIndex(repo_dir_, kPass, WriteOptions());
  ASSERT_THAT(report, IsOk());
  EXPECT_EQ(report->packs, 4u);
  EXPECT_EQ(report->chunks, 45u);
  EXPECT_THAT(report->damaged, IsEmpty());
  {
    auto repo = OpenRepo(false);
    ASSERT_NE(repo, nullptr);
    ExpectReadable(*repo, chunks);
  }

  // Same after the index is gone entirely.
  fs::remove_all(repo_dir_ + "/index");
  report = Repository::RebuildIndex(repo_dir_, kPass, WriteOptions());
  ASSERT_THAT(report, IsOk());
  EXPECT_EQ(report->packs, 4u);
  EXPECT_EQ(report->chunks, 45u);
  EXPECT_THAT(report->damaged, IsEmpty());
}

TEST_F(RepositoryTest, RebuildIndexReportsDamagedPacksAndDropsTheirChunks) {
  std::vector<Stored> a, b;
  {
    auto repo = OpenRepo(true);
    ASSERT_NE(repo, nullptr);
    a = StoreChunks(*repo, 3, 2000, 1);
    b = StoreChunks(*repo, 4, 2000, 2);
  }
  auto packs = PackFiles(repo_dir_);
  ASSERT_THAT(packs, SizeIs(2));
  // Find which pack holds `a`.
  std::string pack_a, pack_b;
  {
    auto repo = OpenRepo(false);
    ASSERT_NE(repo, nullptr);
    auto loc = repo->index().Get(a[0].id);
    ASSERT_THAT(loc, IsOk());
    ASSERT_TRUE(loc->has_value());
    pack_a = (*loc)->pack;
    pack_b = pack_a == packs[0] ? packs[1] : packs[0];
  }
  // Break pack_a's end marker.
  const std::string path_a = PackPath(repo_dir_, pack_a);
  ASSERT_EQ(::truncate(path_a.c_str(), static_cast<off_t>(testing_util::FileSize(path_a) - 1)),
            0);

  auto report = Repository::RebuildIndex(repo_dir_, kPass, WriteOptions());
  ASSERT_THAT(report, IsOk());
  EXPECT_EQ(report->packs, 1u);
  EXPECT_EQ(report->chunks, 4u);
  ASSERT_THAT(report->damaged, SizeIs(1));
  EXPECT_THAT(report->damaged[0], HasSubstr("pack " + pack_a));

  auto repo = OpenRepo(false);
  ASSERT_NE(repo, nullptr);
  ExpectReadable(*repo, b);
  ReadContext ctx;
  Bytes out;
  EXPECT_THAT(repo->ReadChunk(a[0].type, a[0].id, out, ctx),
              StatusIs(Code::kDataLoss, HasSubstr("not in the index")));
}

TEST_F(RepositoryTest, RebuildIndexWithWrongPassphraseIsPermissionDenied) {
  EXPECT_THAT(Repository::RebuildIndex(repo_dir_, "wrong", WriteOptions()),
              StatusIs(Code::kPermissionDenied, HasSubstr("wrong passphrase")));
}

TEST_F(RepositoryTest, WriterOpenRemovesAbandonedTempPacks) {
  std::string stale = repo_dir_ + "/tmp/pack-" + std::string(32, 'e') + ".tmp";
  WriteWholeFile(stale, AsBytes("HAVENPK1 half a pack"));
  {
    auto reader = OpenRepo(false);
    ASSERT_NE(reader, nullptr);
    EXPECT_TRUE(PathExists(stale)) << "a reader must not clean up";
  }
  auto writer = OpenRepo(true);
  ASSERT_NE(writer, nullptr);
  EXPECT_FALSE(PathExists(stale));
}

TEST_F(RepositoryTest, WriterOpenRemovesTempFilesOfDeadWriters) {
  // Manifests and key slots are written as NAME.tmp-PID-N, then linked.
  // 999999999 is above any Linux pid_max: that writer is gone.
  const std::string id(32, 'a');
  const std::string dead_manifest = repo_dir_ + "/snapshots/" + id + ".tmp-999999999-1";
  const std::string dead_slot = repo_dir_ + "/keys/0123456789abcdef.tmp-999999999-2";
  const std::string live_manifest =
      repo_dir_ + "/snapshots/" + id + ".tmp-" + std::to_string(::getpid()) + "-3";
  // A young temp file may belong to a writer in another PID namespace
  // (whose PID this process cannot see): kept for 10 minutes.
  const std::string young_manifest =
      repo_dir_ + "/snapshots/" + id + ".tmp-999999999-4";
  for (const auto& p : {dead_manifest, dead_slot, live_manifest, young_manifest})
    WriteWholeFile(p, AsBytes("partial"));
  for (const auto& p : {dead_manifest, dead_slot, live_manifest}) {
    struct timespec old[2] = {{::time(nullptr) - 700, 0},
                              {::time(nullptr) - 700, 0}};
    ASSERT_EQ(::utimensat(AT_FDCWD, p.c_str(), old, 0), 0) << p;
  }
  {
    auto reader = OpenRepo(false);
    ASSERT_NE(reader, nullptr);
    EXPECT_TRUE(PathExists(dead_manifest)) << "a reader must not clean up";
  }
  auto writer = OpenRepo(true);
  ASSERT_NE(writer, nullptr);
  EXPECT_FALSE(PathExists(dead_manifest));
  EXPECT_FALSE(PathExists(dead_slot));
  EXPECT_TRUE(PathExists(live_manifest)) << "this process is alive";
  EXPECT_TRUE(PathExists(young_manifest)) << "written under 10 minutes ago";
}

TEST_F(RepositoryTest, IndexOfAnotherRepositoryIsNoticed) {
  std::vector<Stored> chunks;
  {
    auto repo = OpenRepo(true);
    ASSERT_NE(repo, nullptr);
    chunks = StoreChunks(*repo, 3, 3000);
  }
  // Swap in the index of another repository.
  std::string other = tmp_.Sub("other");
  ASSERT_THAT(Repository::Init(other, kPass, FastInitOptions()), IsOk());
  fs::remove_all(repo_dir_ + "/index");
  fs::copy(other + "/index", repo_dir_ + "/index", fs::copy_options::recursive);

  // A reader refuses it; a writer rebuilds it from the packs.
  EXPECT_THAT(Repository::Open(repo_dir_, kPass, ReadOptions()),
              StatusIs(Code::kFailedPrecondition, HasSubstr("another repository")));
  {
    std::vector<std::string> messages;
    OpenOptions o = WriteOptions();
    o.on_wait = [&](const std::string& m) { messages.push_back(m); };
    auto writer = Repository::Open(repo_dir_, kPass, o);
    ASSERT_THAT(writer, IsOk());
    EXPECT_THAT(messages, Contains(HasSubstr("another repository")));
  }
  auto repo = OpenRepo(false);
  ASSERT_NE(repo, nullptr);
  ExpectReadable(*repo, chunks);
}

}  // namespace
}  // namespace haven::repository
