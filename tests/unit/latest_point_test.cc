// repository::LatestPoint / LatestPoints on a real repository: newest by
// time (not by listing order), kind filter, and the unreadable rule.
#include "repository/latest_point.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "repository/repository.h"
#include "tests/unit/test_util.h"

namespace haven::repository {
namespace {

using ::haven::testing_util::FlipByte;
using ::haven::testing_util::IsOk;
using ::haven::testing_util::StatusIs;
using ::haven::testing_util::TempDir;
using ::haven::testing_util::WriteOptions;
using ::testing::HasSubstr;
using ::testing::SizeIs;

class LatestPointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    repo_dir_ = tmp_.Sub("repo");
    ASSERT_THAT(testing_util::CloneFreshRepository(repo_dir_), IsOk());
    repo_ = Open();
  }
  std::unique_ptr<Repository> Open() {
    auto r = Repository::Open(repo_dir_, testing_util::kTestPassphrase,
                              WriteOptions());
    EXPECT_THAT(r, IsOk());
    return r.ok() ? std::move(r).value() : nullptr;
  }
  std::string Commit(const std::string& name, const std::string& kind,
                     const std::string& time) {
    Manifest m;
    m.name = name;
    m.kind = kind;
    m.time = time;
    m.consistency = "offline";
    m.tool = "haven-test";
    DiskManifest d;
    d.name = "disk0";
    d.chunk_size = 65536;
    m.disks.push_back(d);
    EXPECT_THAT(repo_->CommitSnapshot(m), IsOk());
    return m.id;
  }
  TempDir tmp_;
  std::string repo_dir_;
  std::unique_ptr<Repository> repo_;
};

TEST_F(LatestPointTest, NewestByTimeOfTheKindAsked) {
  std::string newer = Commit("web1", "vm", "2026-01-02T00:00:00Z");
  Commit("web1", "vm", "2026-01-01T00:00:00Z");  // committed last, older
  std::string image = Commit("web1", "image", "2026-01-03T00:00:00Z");
  auto vm = LatestPoint(*repo_, "web1", "vm", Unreadable::kRefuse);
  ASSERT_THAT(vm, IsOk());
  ASSERT_TRUE(vm->has_value());
  EXPECT_EQ((*vm)->id, newer);
  auto any = LatestPoint(*repo_, "web1", "", Unreadable::kRefuse);
  ASSERT_THAT(any, IsOk());
  EXPECT_EQ((*any)->id, image);
  auto none = LatestPoint(*repo_, "web1", "vmx", Unreadable::kRefuse);
  ASSERT_THAT(none, IsOk());
  EXPECT_FALSE(none->has_value());
}

TEST_F(LatestPointTest, UnreadableManifestRefusesOrIsSkipped) {
  std::string old_id = Commit("a", "image", "2026-01-01T00:00:00Z");
  std::string bad = Commit("a", "image", "2026-01-02T00:00:00Z");
  Commit("b", "vm", "2026-01-01T00:00:00Z");
  repo_.reset();  // one process holds the index at a time
  FlipByte(repo_dir_ + "/snapshots/" + bad, 20);
  repo_ = Open();
  ASSERT_NE(repo_, nullptr);
  EXPECT_THAT(LatestPoint(*repo_, "a", "image", Unreadable::kRefuse),
              StatusIs(Code::kDataLoss, HasSubstr(bad)));
  EXPECT_THAT(LatestPoints(*repo_, "vm", Unreadable::kRefuse),
              StatusIs(Code::kDataLoss, HasSubstr(bad)));
  auto skip = LatestPoint(*repo_, "a", "image", Unreadable::kSkip);
  ASSERT_THAT(skip, IsOk());
  EXPECT_EQ((*skip)->id, old_id);
  auto all = LatestPoints(*repo_, "", Unreadable::kSkip);
  ASSERT_THAT(all, IsOk());
  ASSERT_THAT(*all, SizeIs(2));
  EXPECT_EQ((*all)[0].name, "a");
  EXPECT_EQ((*all)[1].name, "b");
}

}  // namespace
}  // namespace haven::repository
