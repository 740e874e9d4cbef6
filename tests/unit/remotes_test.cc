// Remote appliances in havend's state (appliance/remotes.h) and the sync
// job's params (appliance/sync_jobs.h): tokens live in 0600 files only, are
// never listed, and bad fields are refused with the field named.
#include "appliance/remotes.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "appliance/sync_jobs.h"
#include "base/file.h"
#include "tests/unit/test_util.h"

namespace haven::appliance {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing_util::IsOk;
using testing_util::StatusIs;
using testing_util::TempDir;

const char kFp[] =
    "SHA256:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:"
    "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF";
const char kToken[] = "haven_secretsecretsecret";

class RemotesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = StateDb::Open(dir_.Sub("havend.db"));
    ASSERT_THAT(db, IsOk());
    db_ = std::move(db).value();
    auto store = RemoteStore::Open(*db_, dir_.path(), [] { return 1000; });
    ASSERT_THAT(store, IsOk());
    store_ = std::move(store).value();
  }
  RemoteUpdate Update(std::string name) {
    return {std::move(name), "https://10.0.0.2:8421", kFp, kToken};
  }
  TempDir dir_;
  std::unique_ptr<StateDb> db_;
  std::unique_ptr<RemoteStore> store_;
};

TEST_F(RemotesTest, TokenIsKeptInAPrivateFileAndNeverListed) {
  auto made = store_->Put(Update("offsite"), "admin");
  ASSERT_THAT(made, IsOk());
  EXPECT_TRUE(*made);
  struct stat st;
  ASSERT_EQ(::stat(dir_.Sub("remotes/offsite.token").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto list = store_->List();
  ASSERT_THAT(list, IsOk());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].url, "https://10.0.0.2:8421");
  EXPECT_TRUE((*list)[0].token_set);
  // Nothing in the database holds the token.
  auto rows = db_->Query("SELECT * FROM remotes");
  ASSERT_THAT(rows, IsOk());
  for (const SqlRow& row : *rows)
    for (size_t i = 0; i < row.columns.size(); ++i)
      EXPECT_THAT(row.Text(i), Not(HasSubstr("secret")));
  auto conn = store_->Connection("offsite");
  ASSERT_THAT(conn, IsOk());
  EXPECT_EQ(conn->token, kToken);
  EXPECT_EQ(conn->fingerprint.substr(0, 7), "SHA256:");
}

TEST_F(RemotesTest, ChangeKeepsTheTokenAndRemoveDeletesIt) {
  ASSERT_THAT(store_->Put(Update("offsite"), "admin"), IsOk());
  RemoteUpdate u = Update("offsite");
  u.url = "https://10.0.0.3:9000";
  u.token.reset();
  auto made = store_->Put(u, "admin");
  ASSERT_THAT(made, IsOk());
  EXPECT_FALSE(*made);
  auto conn = store_->Connection("offsite");
  ASSERT_THAT(conn, IsOk());
  EXPECT_EQ(conn->url, "https://10.0.0.3:9000");
  EXPECT_EQ(conn->token, kToken);
  EXPECT_THAT(store_->Remove("offsite"), IsOk());
  struct stat st;
  EXPECT_NE(::stat(dir_.Sub("remotes/offsite.token").c_str(), &st), 0);
  EXPECT_THAT(store_->Get("offsite"),
              StatusIs(Code::kNotFound, HasSubstr("offsite")));
  EXPECT_THAT(store_->Remove("offsite"),
              StatusIs(Code::kNotFound, HasSubstr("offsite")));
}

TEST_F(RemotesTest, BadFieldsAreRefusedWithoutEchoingTheToken) {
  RemoteUpdate u = Update("../x");
  EXPECT_THAT(store_->Put(u, "a"),
              StatusIs(Code::kInvalidArgument, HasSubstr("name")));
  u = Update("ok");
  u.url = "http://10.0.0.2";
  EXPECT_THAT(store_->Put(u, "a"),
              StatusIs(Code::kInvalidArgument, HasSubstr("url")));
  u = Update("ok");
  u.fingerprint = "SHA256:12";
  EXPECT_THAT(store_->Put(u, "a"),
              StatusIs(Code::kInvalidArgument, HasSubstr("fingerprint")));
  u = Update("ok");
  u.token = "haven_with space secret";
  auto bad = store_->Put(u, "a");
  EXPECT_THAT(bad, StatusIs(Code::kInvalidArgument, HasSubstr("token")));
  EXPECT_THAT(bad.status().message(), Not(HasSubstr("secret")));
  u = Update("new");
  u.token.reset();
  EXPECT_THAT(store_->Put(u, "a"),
              StatusIs(Code::kInvalidArgument, HasSubstr("token is required")));
}

TEST(SyncParamsTest, ChecksEveryField) {
  using nlohmann::json;
  EXPECT_THAT(ValidateSyncParams({{"remote", "b"}, {"direction", "push"}}),
              IsOk());
  EXPECT_THAT(ValidateSyncParams({{"remote", "b"},
                                  {"direction", "pull"},
                                  {"names", {"web"}},
                                  {"refs", {"latest"}},
                                  {"keep_daily", 7},
                                  {"keep_last", 3},
                                  {"bytes_per_second", 1e6},
                                  {"dry_run", true}}),
              IsOk());
  EXPECT_THAT(ValidateSyncParams({{"direction", "push"}}),
              StatusIs(Code::kInvalidArgument, HasSubstr("remote")));
  EXPECT_THAT(ValidateSyncParams({{"remote", "b"}, {"direction", "both"}}),
              StatusIs(Code::kInvalidArgument, HasSubstr("direction")));
  EXPECT_THAT(ValidateSyncParams(
                  {{"remote", "b"}, {"direction", "push"}, {"keep_daily", -1}}),
              StatusIs(Code::kInvalidArgument, HasSubstr("keep_daily")));
  EXPECT_THAT(ValidateSyncParams(
                  {{"remote", "b"}, {"direction", "push"}, {"names", "web"}}),
              StatusIs(Code::kInvalidArgument, HasSubstr("names")));
  EXPECT_THAT(ValidateSyncParams(
                  {{"remote", "b"}, {"direction", "push"}, {"token", "x"}}),
              StatusIs(Code::kInvalidArgument, HasSubstr("unknown field")));
  EXPECT_THAT(
      ValidateSyncParams(
          {{"remote", "b"}, {"direction", "push"}, {"bytes_per_second", -5}}),
      StatusIs(Code::kInvalidArgument, HasSubstr("bytes_per_second")));
}

TEST(CopyRepositoryTest, DefaultThenFirst) {
  ApplianceConfig c;
  EXPECT_THAT(CopyRepository(c, ""),
              StatusIs(Code::kFailedPrecondition, HasSubstr("no repository")));
  c.repositories.push_back({"main", "/x", "/p"});
  c.repositories.push_back({"default", "/y", "/p"});
  EXPECT_EQ(*CopyRepository(c, ""), "default");
  EXPECT_EQ(*CopyRepository(c, "main"), "main");
  EXPECT_THAT(
      CopyRepository(c, "nope"),
      StatusIs(Code::kInvalidArgument, HasSubstr("configured: main, default")));
}

}  // namespace
}  // namespace haven::appliance
