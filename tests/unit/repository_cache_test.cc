// havend's cache of open repositories (appliance/repository_cache.h): one
// open shared by requests, new points seen at once, entries closed when
// idle (so gc gets the lock), Drop, and the 503 while gc holds it.
#include "appliance/repository_cache.h"

#include <chrono>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/test_util.h"

namespace haven::appliance {
namespace {

using namespace ::haven::testing_util;  // NOLINT: test helpers
using repository::Manifest;
using repository::Repository;
using ::testing::HasSubstr;

class RepositoryCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.Sub("repo");
    ASSERT_THAT(CloneFreshRepository(dir_), IsOk());
    const std::string pw = tmp_.Sub("pw");
    std::string text = std::string(kTestPassphrase) + "\n";
    WriteWholeFile(pw, ByteSpan(reinterpret_cast<const uint8_t*>(text.data()),
                                text.size()));
    config_.repositories.push_back({"r", dir_, pw});
  }

  std::string Commit(const std::string& name, const std::string& time) {
    auto repo =
        Repository::Open(dir_, kTestPassphrase, testing_util::WriteOptions());
    EXPECT_THAT(repo, IsOk());
    Manifest m;
    m.name = name;
    m.kind = "image";
    m.time = time;
    m.consistency = "offline";
    repository::DiskManifest d;
    d.name = "disk0";
    d.chunk_size = 65536;
    m.disks.push_back(d);
    EXPECT_THAT((*repo)->CommitSnapshot(m), IsOk());
    return m.id;
  }

  // Whether gc could take the repository now (exclusive lock, no wait).
  bool ExclusiveFree() {
    repository::OpenOptions o;
    o.exclusive = true;
    o.lock_wait_seconds = 0.2;
    return Repository::Open(dir_, kTestPassphrase, o).ok();
  }

  TempDir tmp_;
  std::string dir_;
  ApplianceConfig config_;
};

TEST_F(RepositoryCacheTest, OneOpenServesRequestsAndSeesNewPoints) {
  RepositoryCatalog catalog(config_);
  RepositoryCache cache(catalog);
  auto a = cache.Get("r");
  ASSERT_THAT(a, IsOk());
  auto b = cache.Get("r");
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(a->get(), b->get());
  auto none = (*a)->Points();
  ASSERT_THAT(none, IsOk());
  EXPECT_TRUE((*none)->points.empty());

  const std::string old_id = Commit("vm1", "2026-12-01T02:00:00Z");
  const std::string new_id = Commit("vm2", "2026-12-02T02:00:00Z");
  auto two = (*a)->Points();
  ASSERT_THAT(two, IsOk());
  ASSERT_EQ((*two)->points.size(), 2u);
  EXPECT_EQ((*two)->points[0]->id, new_id);  // newest first
  EXPECT_EQ((*two)->points[1]->id, old_id);

  // Unchanged: the same points in the same order, the same manifests.
  auto again = (*a)->Points();
  ASSERT_THAT(again, IsOk());
  ASSERT_EQ((*again)->points.size(), 2u);
  EXPECT_EQ((*again)->points[0].get(), (*two)->points[0].get());
  EXPECT_EQ((*again)->points[1].get(), (*two)->points[1].get());
  // A point added with an older time is placed by its time.
  const std::string oldest = Commit("vm3", "2026-11-30T02:00:00Z");
  auto three = (*a)->Points();
  ASSERT_THAT(three, IsOk());
  ASSERT_EQ((*three)->points.size(), 3u);
  EXPECT_EQ((*three)->points[2]->id, oldest);
  ASSERT_EQ(std::remove((dir_ + "/snapshots/" + oldest).c_str()), 0);

  // A forgotten point goes at the next listing.
  ASSERT_EQ(std::remove((dir_ + "/snapshots/" + old_id).c_str()), 0);
  auto one = (*a)->Points();
  ASSERT_THAT(one, IsOk());
  ASSERT_EQ((*one)->points.size(), 1u);
  EXPECT_EQ((*one)->points[0]->id, new_id);

  EXPECT_THAT(cache.Get("nope"),
              StatusIs(Code::kNotFound, HasSubstr("no repository called")));
}

// Once the folders' mtimes are settled (2 s), an unchanged repository is
// answered without listing; any manifest or protected marker added or
// removed is still seen at once.
TEST_F(RepositoryCacheTest, SettledFoldersSkipTheListingButNoChange) {
  RepositoryCatalog catalog(config_);
  RepositoryCache cache(catalog);
  const std::string first = Commit("vm1", "2026-12-01T02:00:00Z");
  std::this_thread::sleep_for(std::chrono::milliseconds(2200));
  auto open = cache.Get("r");
  ASSERT_THAT(open, IsOk());
  ASSERT_THAT((*open)->Points(), IsOk());  // lists: the folders are settled
  auto same = (*open)->Points();           // not listed again
  ASSERT_THAT(same, IsOk());
  ASSERT_EQ((*same)->points.size(), 1u);
  const std::string second = Commit("vm2", "2026-12-02T02:00:00Z");
  auto two = (*open)->Points();
  ASSERT_THAT(two, IsOk());
  ASSERT_EQ((*two)->points.size(), 2u);
  EXPECT_EQ((*two)->points[0]->id, second);
  {
    auto repo = Repository::Open(dir_, kTestPassphrase, WriteOptions());
    ASSERT_THAT(repo, IsOk());
    ASSERT_THAT((*repo)->SetProtected(first, true), IsOk());
  }
  auto prot = (*open)->Points();
  ASSERT_THAT(prot, IsOk());
  EXPECT_EQ((*prot)->protected_ids.count(first), 1u);
}

TEST_F(RepositoryCacheTest, IdleEntriesCloseSoGcGetsTheLock) {
  RepositoryCatalog catalog(config_);
  RepositoryCacheOptions o;
  o.max_idle = std::chrono::seconds(1);
  RepositoryCache cache(catalog, o);
  ASSERT_THAT(cache.Get("r"), IsOk());
  EXPECT_FALSE(ExclusiveFree());  // the cached open holds the shared lock
  // The reaper closes it within max_idle plus its 2 s period.
  bool freed = false;
  for (int i = 0; i < 50 && !freed; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    freed = i >= 5 && ExclusiveFree();
  }
  EXPECT_TRUE(freed);

  ASSERT_THAT(cache.Get("r"), IsOk());
  EXPECT_FALSE(ExclusiveFree());
  cache.Drop("r");
  EXPECT_TRUE(ExclusiveFree());
}

TEST_F(RepositoryCacheTest, ARepositoryHeldByGcIsUnavailable) {
  RepositoryCatalog catalog(config_);
  RepositoryCacheOptions o;
  o.lock_wait_seconds = 0.2;
  RepositoryCache cache(catalog, o);
  repository::OpenOptions gc;
  gc.exclusive = true;
  gc.write = true;
  gc.lock_wait_seconds = 1;
  auto held = Repository::Open(dir_, kTestPassphrase, gc);
  ASSERT_THAT(held, IsOk());
  EXPECT_THAT(cache.Get("r"),
              StatusIs(Code::kUnavailable, HasSubstr("locked")));
  held->reset();
  EXPECT_THAT(cache.Get("r"), IsOk());
}

}  // namespace
}  // namespace haven::appliance
