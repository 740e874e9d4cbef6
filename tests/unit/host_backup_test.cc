// agent::BackupHost without a real hypervisor: which VMs a request selects
// (names, --all, exclusions), one outcome per VM when some cannot be backed
// up, cancellation between VMs, and the JSON of the result. The host is
// libvirt's in-process test driver (test:///default, one domain "test").
#include "agent/host_backup.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "base/json.h"
#include "repository/repository.h"
#include "tests/unit/test_util.h"

namespace haven::agent {
namespace {

using ::haven::testing_util::IsOk;
using ::haven::testing_util::StatusIs;
using ::haven::testing_util::TempDir;
using ::haven::testing_util::WriteOptions;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

const std::vector<std::string> kDefined = {"db1", "test-a", "test-b", "web1"};

TEST(SelectVmsTest, NeedsNamesOrAllButNotBoth) {
  HostBackupRequest none;
  EXPECT_THAT(SelectVms(none, kDefined),
              StatusIs(Code::kInvalidArgument, HasSubstr("--all")));
  HostBackupRequest both;
  both.all = true;
  both.names = {"db1"};
  EXPECT_THAT(SelectVms(both, kDefined),
              StatusIs(Code::kInvalidArgument, HasSubstr("--all")));
}

TEST(SelectVmsTest, AllMinusExclusionsByNameAndGlob) {
  HostBackupRequest r;
  r.all = true;
  r.exclude = {"test-*", "web1"};
  auto s = SelectVms(r, kDefined);
  ASSERT_THAT(s, IsOk());
  EXPECT_THAT(s->chosen, ElementsAre("db1"));
  EXPECT_THAT(s->excluded, ElementsAre("test-a", "test-b", "web1"));
}

TEST(SelectVmsTest, AllLeavesOutVerifyRestoreTestVms) {
  HostBackupRequest r;
  r.all = true;
  auto s = SelectVms(r, {"db1", "haven-verify-1760af65-0a1b2c3d"});
  ASSERT_THAT(s, IsOk());
  EXPECT_THAT(s->chosen, ElementsAre("db1"));
  EXPECT_THAT(s->excluded, ElementsAre("haven-verify-1760af65-0a1b2c3d"));
  HostBackupRequest named;  // named on purpose: backed up
  named.names = {"haven-verify-1760af65-0a1b2c3d"};
  auto n = SelectVms(named, std::vector<std::string>{});
  ASSERT_THAT(n, IsOk());
  EXPECT_THAT(n->chosen, SizeIs(1));
}

TEST(SelectVmsTest, NamesKeepTheirOrderAndNeedNotBeDefined) {
  HostBackupRequest r;
  r.names = {"web1", "gone", "db1", "test-a"};
  r.exclude = {"test-?"};
  auto s = SelectVms(r, kDefined);
  ASSERT_THAT(s, IsOk());
  EXPECT_THAT(s->chosen, ElementsAre("web1", "gone", "db1"));
  EXPECT_THAT(s->excluded, ElementsAre("test-a"));
}

class HostBackupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    repo_dir_ = tmp_.Sub("repo");
    ASSERT_THAT(testing_util::CloneFreshRepository(repo_dir_), IsOk());
    auto r = repository::Repository::Open(
        repo_dir_, testing_util::kTestPassphrase, WriteOptions());
    ASSERT_THAT(r, IsOk());
    repo_ = std::move(r).value();
    auto h = snapshot::LibvirtHost::Connect("test:///default");
    ASSERT_THAT(h, IsOk());
    host_ = std::move(h).value();
  }

  size_t Points() {
    auto all = repo_->ListSnapshots(nullptr);
    EXPECT_THAT(all, IsOk());
    return all.ok() ? all->size() : 0;
  }

  TempDir tmp_;
  std::string repo_dir_;
  std::unique_ptr<repository::Repository> repo_;
  std::unique_ptr<snapshot::LibvirtHost> host_;
};

TEST_F(HostBackupTest, OneOutcomePerVmAndAFailureDoesNotStopTheRest) {
  HostBackupRequest r;
  r.names = {"no-such-vm-1", "no-such-vm-2", "skip-me"};
  r.exclude = {"skip-*"};
  auto res = BackupHost(*repo_, *host_, r);
  ASSERT_THAT(res, IsOk());
  ASSERT_THAT(res->vms, SizeIs(3));
  EXPECT_EQ(res->failed, 2);
  EXPECT_EQ(res->succeeded, 0);
  EXPECT_EQ(res->skipped, 1);
  EXPECT_EQ(res->uri, "test:///default");
  for (int i = 0; i < 2; ++i) {
    const VmBackupReport& v = res->vms[i];
    EXPECT_EQ(v.name, "no-such-vm-" + std::to_string(i + 1));
    EXPECT_EQ(v.outcome, Outcome::kFailed);
    EXPECT_FALSE(v.ok());
    EXPECT_THAT(v.status, StatusIs(Code::kNotFound, HasSubstr(v.name)));
  }
  EXPECT_EQ(res->vms[2].name, "skip-me");
  EXPECT_EQ(res->vms[2].outcome, Outcome::kSkipped);
  EXPECT_EQ(Points(), 0u);
}

TEST_F(HostBackupTest, CancelledBeforeAVmStartsMarksItAndTheRestCancelled) {
  HostBackupRequest r;
  r.all = true;  // the test driver's one domain, "test"
  r.cancel.Cancel();
  auto res = BackupHost(*repo_, *host_, r);
  ASSERT_THAT(res, IsOk());
  ASSERT_THAT(res->vms, SizeIs(1));
  EXPECT_EQ(res->vms[0].name, "test");
  EXPECT_EQ(res->vms[0].outcome, Outcome::kCancelled);
  EXPECT_THAT(res->vms[0].status,
              StatusIs(Code::kCancelled, HasSubstr("backup of test")));
  EXPECT_EQ(res->cancelled, 1);
  EXPECT_EQ(res->failed, 0);
  EXPECT_EQ(Points(), 0u);
}

TEST_F(HostBackupTest, JsonKeepsTheOldFieldsAndAddsOutcomes) {
  HostBackupRequest r;
  r.names = {"no-such-vm", "excluded"};
  r.exclude = {"excluded"};
  auto res = BackupHost(*repo_, *host_, r);
  ASSERT_THAT(res, IsOk());
  auto j = nlohmann::json::parse(
      DumpJson(HostBackupResultJson(*res)));
  EXPECT_EQ(j["succeeded"], 0);
  EXPECT_EQ(j["failed"], 1);
  EXPECT_EQ(j["skipped"], 1);
  EXPECT_EQ(j["cancelled"], 0);
  EXPECT_TRUE(j["duration_seconds"].is_number());
  EXPECT_EQ(j["read_bytes"], 0);  // no VM landed
  EXPECT_EQ(j["parallel"], 1);
  EXPECT_EQ(j["adaptive"]["on"], false);
  ASSERT_EQ(j["vms"].size(), 2u);
  const auto& v = j["vms"][0];
  // The fields `haven backup vm --json` always printed.
  for (const char* key :
       {"name", "ok", "snapshot", "error", "consistency", "consistency_reason",
        "disks", "skipped", "new_stored_bytes", "duration_seconds"})
    EXPECT_TRUE(v.contains(key)) << key;
  EXPECT_EQ(v["name"], "no-such-vm");
  EXPECT_EQ(v["ok"], false);
  EXPECT_EQ(v["snapshot"], "");
  EXPECT_THAT(v["error"].get<std::string>(), HasSubstr("no-such-vm"));
  EXPECT_EQ(v["outcome"], "failed");
  EXPECT_EQ(v["code"], "not found");
  EXPECT_EQ(ParseOutcome(j["vms"][1]["outcome"].get<std::string>()),
            Outcome::kSkipped);
  EXPECT_THAT(v["disks"], IsEmpty());
}

TEST_F(HostBackupTest, ParallelKeepsTheOrderAndReportsEveryVmOnce) {
  HostBackupRequest r;
  for (int i = 0; i < 9; ++i) r.names.push_back("gone-" + std::to_string(i));
  r.parallel = 3;
  std::vector<Progress> events;
  r.progress = [&](const Progress& p) { events.push_back(p); };  // serialized
  auto res = BackupHost(*repo_, *host_, r);
  ASSERT_THAT(res, IsOk());
  EXPECT_EQ(res->parallel, 3);
  ASSERT_THAT(res->vms, SizeIs(9));
  for (int i = 0; i < 9; ++i) {
    EXPECT_EQ(res->vms[i].name, "gone-" + std::to_string(i));
    EXPECT_THAT(res->vms[i].status,
                StatusIs(Code::kNotFound, HasSubstr(res->vms[i].name)));
  }
  EXPECT_EQ(res->failed, 9);
  ASSERT_FALSE(events.empty());
  for (const Progress& p : events) {
    EXPECT_EQ(p.items_done + p.items_running + p.items_waiting, 9);
    EXPECT_LE(p.items_running, 3);
    EXPECT_EQ(p.phase, "backup");
  }
  // Every VM was seen starting and finishing; the last event says all done.
  EXPECT_EQ(events.front().items_waiting + events.front().items_running, 9);
  EXPECT_TRUE(events.back().final);
  EXPECT_EQ(events.back().items_done, 9);
  EXPECT_EQ(events.back().items_failed, 9);
  EXPECT_EQ(Points(), 0u);
}

TEST_F(HostBackupTest, FewerVmsThanParallelRunsThatMany) {
  HostBackupRequest r;
  r.names = {"gone-a", "gone-b"};
  r.parallel = 8;
  auto res = BackupHost(*repo_, *host_, r);
  ASSERT_THAT(res, IsOk());
  EXPECT_EQ(res->parallel, 2);
  EXPECT_EQ(res->failed, 2);
}

TEST_F(HostBackupTest, ParallelOutOfRangeIsRefused) {
  HostBackupRequest r;
  r.names = {"db1"};
  for (int bad : {0, -1, kMaxParallel + 1}) {
    r.parallel = bad;
    EXPECT_THAT(BackupHost(*repo_, *host_, r),
                StatusIs(Code::kInvalidArgument, HasSubstr("--parallel")))
        << bad;
  }
}

TEST_F(HostBackupTest, CancelledMidJobCancelsTheVmsNotStarted) {
  HostBackupRequest r;
  for (int i = 0; i < 6; ++i) r.names.push_back("gone-" + std::to_string(i));
  r.parallel = 2;
  // Cancel once two VMs are done: those not started yet are cancelled.
  r.progress = [&](const Progress& p) {
    if (p.items_done >= 2) r.cancel.Cancel();
  };
  auto res = BackupHost(*repo_, *host_, r);
  ASSERT_THAT(res, IsOk());
  ASSERT_THAT(res->vms, SizeIs(6));
  EXPECT_GE(res->failed, 2);
  EXPECT_GE(res->cancelled, 1);
  EXPECT_EQ(res->failed + res->cancelled, 6);
  EXPECT_EQ(res->vms.back().outcome, Outcome::kCancelled);
}

}  // namespace
}  // namespace haven::agent
