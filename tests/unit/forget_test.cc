// repository::Forget on real repositories: the safety rule (no rule is
// applied while a manifest is unreadable), protected points, explicit
// points, dry runs, cancellation, and the JSON encoding of its result.
#include "repository/forget.h"

#include <filesystem>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "base/json.h"
#include "repository/repository.h"
#include "tests/unit/test_util.h"

namespace haven::repository {
namespace {

using ::haven::testing_util::FlipByte;
using ::haven::testing_util::IsOk;
using ::haven::testing_util::PathExists;
using ::haven::testing_util::StatusIs;
using ::haven::testing_util::TempDir;
using ::haven::testing_util::WriteOptions;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::SizeIs;

class ForgetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(tmp_.path().empty());
    repo_dir_ = tmp_.Sub("repo");
    ASSERT_THAT(testing_util::CloneFreshRepository(repo_dir_), IsOk());
  }

  std::unique_ptr<Repository> OpenRepo() {
    auto r = Repository::Open(repo_dir_, testing_util::kTestPassphrase,
                              WriteOptions());
    EXPECT_THAT(r, IsOk());
    if (!r.ok()) return nullptr;
    return std::move(r).value();
  }

  std::string Commit(Repository& repo, const std::string& name,
                     const std::string& time) {
    Manifest m;
    m.name = name;
    m.time = time;
    m.consistency = "offline";
    m.tool = "haven-test";
    DiskManifest d;
    d.name = "disk0";
    d.chunk_size = 65536;
    m.disks.push_back(d);
    EXPECT_THAT(repo.CommitSnapshot(m), IsOk());
    return m.id;
  }

  bool Exists(const std::string& id) {
    return PathExists(repo_dir_ + "/snapshots/" + id);
  }

  TempDir tmp_;
  std::string repo_dir_;
};

TEST_F(ForgetTest, KeepLastRemovesOlderPointsPerName) {
  auto repo = OpenRepo();
  ASSERT_NE(repo, nullptr);
  std::string a1 = Commit(*repo, "a", "2026-01-01T00:00:00Z");
  std::string a2 = Commit(*repo, "a", "2026-01-02T00:00:00Z");
  std::string b1 = Commit(*repo, "b", "2026-01-01T00:00:00Z");
  ForgetRequest req;
  req.policy.last = 1;
  auto r = Forget(*repo, req);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->kept, 2u);
  EXPECT_EQ(r->removed, 1u);
  EXPECT_EQ(r->failed, 0u);
  EXPECT_EQ(r->policy, "keep 1 last");
  EXPECT_FALSE(Exists(a1));
  EXPECT_TRUE(Exists(a2));
  EXPECT_TRUE(Exists(b1));
  ASSERT_THAT(r->points, SizeIs(3));
  for (const auto& p : r->points) {
    EXPECT_EQ(p.outcome, Outcome::kOk);
    EXPECT_EQ(p.decision.keep, p.decision.item.id != a1);
  }
}

TEST_F(ForgetTest, UnreadableManifestStopsRulesAndRemovesNothing) {
  std::string old_id, new_id, bad;
  {
    auto repo = OpenRepo();
    ASSERT_NE(repo, nullptr);
    old_id = Commit(*repo, "a", "2026-01-01T00:00:00Z");
    new_id = Commit(*repo, "a", "2026-01-02T00:00:00Z");
    bad = Commit(*repo, "a", "2026-01-03T00:00:00Z");
  }
  FlipByte(repo_dir_ + "/snapshots/" + bad, 20);
  auto repo = OpenRepo();
  ASSERT_NE(repo, nullptr);
  ForgetRequest req;
  req.policy.last = 1;
  EXPECT_THAT(Forget(*repo, req),
              StatusIs(Code::kDataLoss,
                       AllOf(HasSubstr("nothing was removed"),
                             HasSubstr("snapshot " + bad))));
  EXPECT_TRUE(Exists(old_id));
  EXPECT_TRUE(Exists(new_id));
  EXPECT_TRUE(Exists(bad));
  // Naming the points still works: that is how the damaged one goes.
  ForgetRequest by_id;
  by_id.points = {bad};
  auto r = Forget(*repo, by_id);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->removed, 1u);
  EXPECT_FALSE(Exists(bad));
  EXPECT_TRUE(Exists(old_id));
}

TEST_F(ForgetTest, ProtectedPointsAreNeverRemoved) {
  auto repo = OpenRepo();
  ASSERT_NE(repo, nullptr);
  std::string p = Commit(*repo, "a", "2026-01-01T00:00:00Z");
  std::string q = Commit(*repo, "a", "2026-01-02T00:00:00Z");
  std::string n = Commit(*repo, "a", "2026-01-03T00:00:00Z");
  ASSERT_THAT(repo->SetProtected(p, true), IsOk());
  ForgetRequest req;
  req.policy.last = 1;
  auto r = Forget(*repo, req);
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(Exists(p));
  EXPECT_FALSE(Exists(q));
  EXPECT_TRUE(Exists(n));
  for (const auto& pt : r->points)
    if (pt.decision.item.id == p) {
      EXPECT_TRUE(pt.decision.keep);
      EXPECT_TRUE(pt.decision.item.is_protected);
      EXPECT_EQ(pt.decision.reasons.front(), "protected");
    }
  // Named explicitly, a protected point refuses the whole request.
  ForgetRequest by_id;
  by_id.points = {n, p};
  EXPECT_THAT(Forget(*repo, by_id),
              StatusIs(Code::kFailedPrecondition,
                       AllOf(HasSubstr(p), HasSubstr("is protected"))));
  EXPECT_TRUE(Exists(n));
  EXPECT_TRUE(Exists(p));
}

TEST_F(ForgetTest, RejectsBothOrNeitherRulesAndPoints) {
  auto repo = OpenRepo();
  ASSERT_NE(repo, nullptr);
  std::string a = Commit(*repo, "a", "2026-01-01T00:00:00Z");
  ForgetRequest none;
  EXPECT_THAT(Forget(*repo, none),
              StatusIs(Code::kInvalidArgument, HasSubstr("at least one")));
  ForgetRequest both;
  both.policy.last = 1;
  both.points = {a};
  EXPECT_THAT(Forget(*repo, both),
              StatusIs(Code::kInvalidArgument, HasSubstr("not both")));
  ForgetRequest negative;
  negative.policy.daily = -1;
  EXPECT_THAT(Forget(*repo, negative),
              StatusIs(Code::kInvalidArgument, HasSubstr(">= 0")));
  EXPECT_TRUE(Exists(a));
}

TEST_F(ForgetTest, DryRunAndCancelRemoveNothing) {
  auto repo = OpenRepo();
  ASSERT_NE(repo, nullptr);
  std::string a1 = Commit(*repo, "a", "2026-01-01T00:00:00Z");
  Commit(*repo, "a", "2026-01-02T00:00:00Z");
  ForgetRequest req;
  req.policy.last = 1;
  req.dry_run = true;
  auto dry = Forget(*repo, req);
  ASSERT_THAT(dry, IsOk());
  EXPECT_EQ(dry->removed, 1u);
  EXPECT_TRUE(Exists(a1));

  req.dry_run = false;
  req.cancel.Cancel();
  auto cancelled = Forget(*repo, req);
  ASSERT_THAT(cancelled, IsOk());
  EXPECT_EQ(cancelled->removed, 0u);
  EXPECT_EQ(cancelled->cancelled, 1u);
  EXPECT_TRUE(Exists(a1));
  for (const auto& p : cancelled->points)
    if (p.decision.item.id == a1) {
      EXPECT_EQ(p.outcome, Outcome::kCancelled);
      EXPECT_THAT(p.status, StatusIs(Code::kCancelled, HasSubstr("forget")));
    }
}

TEST_F(ForgetTest, JsonKeepsTheFieldsForgetPrintedAndAddsOutcomes) {
  auto repo = OpenRepo();
  ASSERT_NE(repo, nullptr);
  std::string a1 = Commit(*repo, "a", "2026-01-01T00:00:00Z");
  std::string a2 = Commit(*repo, "a", "2026-01-02T00:00:00Z");
  ForgetRequest req;
  req.policy.last = 1;
  auto r = Forget(*repo, req);
  ASSERT_THAT(r, IsOk());
  // Through text and back, as a front end would read it.
  auto j = nlohmann::json::parse(DumpJson(ForgetResultJson(*r)));
  EXPECT_EQ(j["dry_run"], false);
  EXPECT_EQ(j["policy"], "keep 1 last");
  EXPECT_EQ(j["kept"], 1);
  EXPECT_EQ(j["removed"], 1);
  EXPECT_EQ(j["failed"], 0);
  EXPECT_EQ(j["cancelled"], 0);
  EXPECT_TRUE(j["duration_seconds"].is_number());
  ASSERT_EQ(j["snapshots"].size(), 2u);
  for (const auto& s : j["snapshots"]) {
    const bool newest = s["id"] == a2;
    EXPECT_EQ(s["keep"], newest);
    EXPECT_EQ(s["name"], "a");
    EXPECT_EQ(s["outcome"], "ok");
    EXPECT_EQ(s["protected"], false);
    EXPECT_EQ(s["reasons"].size(), newest ? 1u : 0u);
    EXPECT_FALSE(s.contains("error"));
    EXPECT_EQ(ParseOutcome(s["outcome"].get<std::string>()), Outcome::kOk);
  }
  (void)a1;
}

TEST(OutcomeTest, NamesRoundTrip) {
  for (Outcome o : {Outcome::kOk, Outcome::kPartial, Outcome::kFailed,
                    Outcome::kCancelled, Outcome::kSkipped})
    EXPECT_EQ(ParseOutcome(OutcomeName(o)), o);
  EXPECT_EQ(ParseOutcome("fine"), std::nullopt);
  EXPECT_EQ(OutcomeOf(OkStatus()), Outcome::kOk);
  EXPECT_EQ(OutcomeOf(Cancelled("x")), Outcome::kCancelled);
  EXPECT_EQ(OutcomeOf(DataLoss("x")), Outcome::kFailed);
}

}  // namespace
}  // namespace haven::repository
