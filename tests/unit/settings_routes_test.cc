// The settings routes of issue 17 through the real dispatcher over a real
// SQLite state database:
//  - usage over time (usage_history.h, routes_usage.cc): a real repository
//    measured by RepositoryUsageCache becomes a sample; at most one per 10
//    minutes; 400 days kept; GET .../usage oldest first, days checked
//  - users (auth_accounts.cc, routes_users.cc): make, list, change role
//    and password, delete; the last admin and one's own account are kept;
//    changes end the user's sessions; admin only
//  - notification settings (notify_settings.h, routes_notify_settings.cc):
//    secrets go to 0600 files and never come back; a PUT swaps the
//    notifier; bad fields are named; a test with nothing set up is a 409
#include <sys/stat.h>

#include <fstream>

#include "appliance/auth.h"
#include "appliance/notify_monitor.h"
#include "appliance/notify_settings.h"
#include "appliance/routes.h"
#include "appliance/usage_history.h"
#include "tests/unit/test_util.h"

namespace haven::appliance {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;
using testing_util::IsOk;
using testing_util::StatusIs;
using testing_util::TempDir;

// "Bearer a" is the admin "root" (a console session), "o" an operator
// token, "u" an auditor token.
std::variant<Caller, Response> TestAuth(const Request& req, bool,
                                        const std::string*) {
  const std::string* h = req.Header("authorization");
  if (h && *h == "Bearer a") return Caller{"root", Role::kAdmin, true, ""};
  if (h && *h == "Bearer o")
    return Caller{"token:op", Role::kOperator, false, ""};
  if (h && *h == "Bearer u")
    return Caller{"token:aud", Role::kAuditor, false, ""};
  return ErrorJson(401, "authentication required");
}

PasswordHashParams Fast() {
  PasswordHashParams p;
  p.log_n = 10;
  p.p = 1;
  return p;
}

constexpr char kPassword[] = "correct horse battery";

class SettingsRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = StateDb::Open(dir_.Sub("havend.db"));
    ASSERT_THAT(db, IsOk());
    db_ = std::move(*db);
    repo_dir_ = dir_.Sub("repo");
    ASSERT_THAT(testing_util::CloneFreshRepository(repo_dir_), IsOk());
    std::string pw = dir_.Sub("pw");
    std::ofstream(pw) << testing_util::kTestPassphrase << "\n";
    config_.repositories.push_back({"main", repo_dir_, pw});
    config_.state_dir = dir_.path();
    AuthOptions ao;
    ao.password_hash = Fast();
    auto auth = AuthService::Open(*db_, ao);
    ASSERT_THAT(auth, IsOk());
    auth_ = std::move(*auth);
    auto history = UsageHistory::Open(*db_);
    ASSERT_THAT(history, IsOk());
    history_ = std::move(*history);
    auto notify = NotifySettings::Open(*db_, config_.notify, config_.state_dir,
                                       "testhost", nullptr);
    ASSERT_THAT(notify, IsOk());
    notify_ = std::move(*notify);
    services_.config = &config_;
    services_.db = db_.get();
    services_.repositories = &catalog_;
    services_.auth = auth_.get();
    services_.usage_history = history_.get();
    services_.notify_settings = notify_.get();
    std::vector<Route> routes = UsageRoutes(services_);
    for (auto* more : {&UserRoutes, &NotifySettingsRoutes})
      for (Route& r : more(services_)) routes.push_back(std::move(r));
    ApiOptions api;
    api.authenticate = TestAuth;
    auto handler = MakeApiHandler(routes, api);
    ASSERT_THAT(handler, IsOk());
    handler_ = std::move(*handler);
  }

  Response Call(const std::string& method, const std::string& target,
                const std::string& token, const std::string& body = "") {
    Request r;
    r.method = method;
    r.target = target;
    size_t q = target.find('?');
    r.path = target.substr(0, q);
    if (q != std::string::npos) r.query = target.substr(q + 1);
    if (!token.empty())
      r.headers.push_back({"authorization", "Bearer " + token});
    r.body = body;
    r.peer = "127.0.0.1:5000";
    return handler_(r);
  }
  static json Body(const Response& r) {
    return json::parse(r.body, nullptr, false);
  }

  TempDir dir_;
  std::string repo_dir_;
  std::unique_ptr<StateDb> db_;
  ApplianceConfig config_;
  RepositoryCatalog catalog_{config_};
  std::unique_ptr<AuthService> auth_;
  std::unique_ptr<UsageHistory> history_;
  std::unique_ptr<NotifySettings> notify_;
  Services services_;
  Handler handler_;
};

// ---------------------------------------------------------------- usage

TEST_F(SettingsRoutesTest, MeasuredUsageBecomesASample) {
  RepositoryUsageCache usage(catalog_);
  usage.OnMeasured([this](const RepositoryMetric& m) {
    EXPECT_THAT(history_->Record(m), IsOk());
  });
  usage.Refresh(600, nullptr);
  Response r = Call("GET", "/api/v1/repositories/main/usage", "u");
  ASSERT_EQ(r.status, 200) << r.body;
  json j = Body(r);
  ASSERT_EQ(j["samples"].size(), 1u) << r.body;
  const json& s = j["samples"][0];
  EXPECT_EQ(s["points"], 0);
  EXPECT_TRUE(s["stored_bytes"].is_number_unsigned());
  EXPECT_TRUE(s["logical_bytes"].is_number_unsigned());
  // "2026-12-07T07:41:17Z"
  std::string time = s["time"];
  EXPECT_EQ(time.size(), 20u) << time;
  EXPECT_EQ(time.back(), 'Z');
  // Measured again at once (a job ended): within 10 minutes, not kept.
  usage.MarkStale("main");
  usage.Refresh(600, nullptr);
  EXPECT_EQ(Body(Call("GET", "/api/v1/repositories/main/usage", "u"))["samples"]
                .size(),
            1u);
}

TEST_F(SettingsRoutesTest, OneSampleIn10MinutesKept400DaysOldestFirst) {
  int64_t now = static_cast<int64_t>(std::time(nullptr));
  auto sample = [&](int64_t at, uint64_t stored) {
    return history_->Record({"main", true, stored, stored * 3, 1, at});
  };
  int64_t old = now - 401LL * 86400;
  EXPECT_EQ(sample(old, 1).value(), true);
  EXPECT_EQ(sample(now - 3 * 86400, 10).value(), true);
  EXPECT_EQ(sample(now - 3 * 86400 + 599, 11).value(), false);
  EXPECT_EQ(sample(now - 3 * 86400 + 600, 12).value(), true);
  EXPECT_EQ(sample(now - 60, 20).value(), true);
  // Not measured (a repository that could not be opened): nothing.
  EXPECT_EQ(history_->Record({"main", false, 0, 0, 0, now}).value(), false);
  // The 401-day-old sample went when the newer ones came.
  auto all = history_->Samples("main", 0);
  ASSERT_THAT(all, IsOk());
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].stored_bytes, 10u);
  EXPECT_EQ((*all)[2].stored_bytes, 20u);
  json j = Body(Call("GET", "/api/v1/repositories/main/usage?days=7", "u"));
  ASSERT_EQ(j["samples"].size(), 3u);
  EXPECT_EQ(j["samples"][0]["stored_bytes"], 10);
  EXPECT_EQ(j["samples"][0]["logical_bytes"], 30);
  EXPECT_EQ(j["samples"][1]["stored_bytes"], 12);
  EXPECT_EQ(j["samples"][2]["stored_bytes"], 20);
  j = Body(Call("GET", "/api/v1/repositories/main/usage?days=1", "u"));
  ASSERT_EQ(j["samples"].size(), 1u);
  EXPECT_EQ(j["samples"][0]["stored_bytes"], 20);
}

TEST_F(SettingsRoutesTest, UsageRefusesWhatItCannotAnswer) {
  EXPECT_EQ(Call("GET", "/api/v1/repositories/main/usage", "").status, 401);
  Response r = Call("GET", "/api/v1/repositories/nope/usage", "u");
  EXPECT_EQ(r.status, 404);
  EXPECT_THAT(r.body, HasSubstr("no repository named"));
  for (const char* days : {"0", "401", "x", "3d"}) {
    r = Call("GET", std::string("/api/v1/repositories/main/usage?days=") + days,
             "u");
    EXPECT_EQ(r.status, 400) << days;
    EXPECT_THAT(r.body, HasSubstr("1 to 400"));
  }
}

// ---------------------------------------------------------------- users

TEST_F(SettingsRoutesTest, UsersMadeListedChangedDeleted) {
  ASSERT_THAT(auth_->SetPassword("root", kPassword, Role::kAdmin), IsOk());
  EXPECT_EQ(Call("GET", "/api/v1/users", "o").status, 403);
  Response r = Call("POST", "/api/v1/users", "a",
                    R"({"name":"alice","role":"operator","password":")" +
                        std::string(kPassword) + "\"}");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(Body(r), json({{"name", "alice"}, {"role", "operator"}}));
  r = Call("POST", "/api/v1/users", "a",
           R"({"name":"alice","role":"auditor","password":")" +
               std::string(kPassword) + "\"}");
  EXPECT_EQ(r.status, 409);
  EXPECT_THAT(r.body, HasSubstr("a user named alice exists"));
  r = Call("POST", "/api/v1/users", "a",
           R"({"name":"bob","role":"auditor","password":"short"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.body, HasSubstr("too short"));
  r = Call("POST", "/api/v1/users", "a",
           R"({"name":"b b","role":"auditor","password":"correct horse 1"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.body, HasSubstr("user names are"));
  r = Call("POST", "/api/v1/users", "a",
           R"({"name":"bob","role":"king","password":"correct horse 1"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.body, HasSubstr("admin, operator or auditor"));

  auto login = auth_->Login("alice", kPassword, "127.0.0.1:1");
  ASSERT_THAT(login, IsOk());
  ASSERT_EQ(login->outcome, LoginResult::Outcome::kOk);
  json list = Body(Call("GET", "/api/v1/users", "a"))["users"];
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]["name"], "alice");
  EXPECT_EQ(list[0]["role"], "operator");
  EXPECT_EQ(list[0]["sessions"], 1);
  EXPECT_EQ(list[0]["you"], false);
  EXPECT_EQ(list[1]["name"], "root");
  EXPECT_EQ(list[1]["you"], true);
  EXPECT_EQ(r.body.find(kPassword), std::string::npos);
  EXPECT_THAT(Call("GET", "/api/v1/users", "a").body, Not(HasSubstr("scrypt")));

  // A new role ends alice's session (it carried the old one).
  r = Call("PUT", "/api/v1/users/alice", "a", R"({"role":"admin"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r)["role"], "admin");
  EXPECT_EQ(Body(Call("GET", "/api/v1/users", "a"))["users"][0]["sessions"], 0);
  // A new password: the old one no longer logs in.
  r = Call("PUT", "/api/v1/users/alice", "a",
           R"({"password":"another long password"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r)["password_changed"], true);
  EXPECT_EQ(auth_->Login("alice", kPassword, "127.0.0.1:1")->outcome,
            LoginResult::Outcome::kRefused);
  auto again = auth_->Login("alice", "another long password", "127.0.0.1:1");
  ASSERT_EQ(again->outcome, LoginResult::Outcome::kOk);
  EXPECT_EQ(Call("PUT", "/api/v1/users/alice", "a", "{}").status, 400);
  EXPECT_EQ(
      Call("PUT", "/api/v1/users/carol", "a", R"({"role":"admin"})").status,
      404);

  // Deleted: gone, and its session with it.
  r = Call("DELETE", "/api/v1/users/alice", "a");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r)["deleted"], true);
  Request with_cookie;
  with_cookie.headers.push_back(
      {"cookie", std::string(kSessionCookie) + "=" + again->session_id});
  EXPECT_FALSE(auth_->SessionOf(with_cookie)->has_value());
  EXPECT_EQ(Body(Call("GET", "/api/v1/users", "a"))["users"].size(), 1u);
  EXPECT_EQ(Call("DELETE", "/api/v1/users/alice", "a").status, 404);
}

TEST_F(SettingsRoutesTest, TheLastAdminAndOneselfStay) {
  ASSERT_THAT(auth_->SetPassword("root", kPassword, Role::kAdmin), IsOk());
  ASSERT_THAT(auth_->SetPassword("ops", kPassword, Role::kOperator), IsOk());
  Response r = Call("PUT", "/api/v1/users/root", "a", R"({"role":"auditor"})");
  EXPECT_EQ(r.status, 409);
  EXPECT_THAT(r.body, HasSubstr("root is the last admin"));
  r = Call("DELETE", "/api/v1/users/root", "a");
  EXPECT_EQ(r.status, 409);
  EXPECT_THAT(r.body, HasSubstr("account you are logged in with"));
  // Through the service, by somebody else (a token): still the last admin.
  EXPECT_THAT(auth_->DeleteAccount("root", "token:ci"),
              StatusIs(Code::kFailedPrecondition, HasSubstr("last admin")));
  // With a second admin, either may go.
  ASSERT_EQ(Call("PUT", "/api/v1/users/ops", "a", R"({"role":"admin"})").status,
            200);
  EXPECT_EQ(
      Call("PUT", "/api/v1/users/root", "a", R"({"role":"auditor"})").status,
      200);
  EXPECT_THAT(auth_->DeleteAccount("ops", "token:ci"),
              StatusIs(Code::kFailedPrecondition, HasSubstr("last admin")));
  EXPECT_THAT(auth_->DeleteAccount("root", "token:ci"), IsOk());
}

// ---------------------------------------------------- notification settings

TEST_F(SettingsRoutesTest, NotificationSettingsKeepSecretsAndSwapTheNotifier) {
  EXPECT_EQ(Call("GET", "/api/v1/settings/notifications", "o").status, 403);
  json j = Body(Call("GET", "/api/v1/settings/notifications", "a"));
  EXPECT_EQ(j["source"], "havend.conf");
  EXPECT_EQ(j["webhook_secret"], json({{"set", false}}));
  EXPECT_EQ(j["active"], json({{"webhook", false}, {"mail", false}}));
  EXPECT_EQ(notify_->holder().Get(), nullptr);
  // Nothing to send to.
  Response r = Call("POST", "/api/v1/settings/notifications/test", "a");
  EXPECT_EQ(r.status, 409);
  EXPECT_THAT(r.body, HasSubstr("nowhere to send"));

  r = Call("PUT", "/api/v1/settings/notifications", "a",
           R"({"webhook_url":"http://127.0.0.1:9/hook",
               "webhook_secret":"s3cret-hmac-key",
               "smtp_url":"smtp://127.0.0.1:9","smtp_from":"haven@example.org",
               "smtp_to":"ops@example.org, oncall@example.org",
               "smtp_user":"haven","smtp_password":"mail-pass-word",
               "daily_report":"07:30","on_success":true})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.body, Not(HasSubstr("s3cret")));
  EXPECT_THAT(r.body, Not(HasSubstr("mail-pass")));
  j = Body(r);
  EXPECT_EQ(j["source"], "api");
  EXPECT_EQ(j["changed_by"], "root");
  EXPECT_EQ(j["webhook_secret"], json({{"set", true}}));
  EXPECT_EQ(j["smtp_password"], json({{"set", true}}));
  EXPECT_EQ(j["smtp_to"], json({"ops@example.org", "oncall@example.org"}));
  EXPECT_EQ(j["daily_report"], "07:30");
  EXPECT_EQ(j["active"], json({{"webhook", true}, {"mail", true}}));
  std::shared_ptr<Notifier> n = notify_->holder().Get();
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->options().webhook_secret, "s3cret-hmac-key");
  EXPECT_EQ(n->options().smtp_password, "mail-pass-word");
  EXPECT_TRUE(n->options().on_success);
  EXPECT_EQ(notify_->holder().daily_report(), "07:30");
  // The secrets are in 0600 files, not in the database.
  for (const char* f : {kWebhookSecretFile, kSmtpPasswordFile}) {
    struct stat st {};
    ASSERT_EQ(::stat(dir_.Sub(f).c_str(), &st), 0) << f;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << f;
  }
  auto rows = db_->Query("SELECT settings FROM notify_settings");
  ASSERT_THAT(rows, IsOk());
  EXPECT_THAT((*rows)[0].Text(0), Not(HasSubstr("s3cret")));

  // A PUT without the secrets keeps them; GET's {"set": true} sent back too.
  r = Call("PUT", "/api/v1/settings/notifications", "a",
           R"({"on_success":false,"webhook_secret":{"set":true}})");
  ASSERT_EQ(r.status, 200) << r.body;
  std::shared_ptr<Notifier> n2 = notify_->holder().Get();
  EXPECT_NE(n2, n) << "a new notifier for the new settings";
  EXPECT_EQ(n2->options().webhook_secret, "s3cret-hmac-key");
  EXPECT_FALSE(n2->options().on_success);

  // A test reports each channel's failure in words (nothing listens on 9).
  r = Call("POST", "/api/v1/settings/notifications/test", "a");
  ASSERT_EQ(r.status, 200) << r.body;
  j = Body(r);
  EXPECT_EQ(j["sent"], false);
  ASSERT_EQ(j["results"].size(), 2u);
  EXPECT_EQ(j["results"][0]["channel"], "webhook");
  EXPECT_EQ(j["results"][0]["receiver"], "127.0.0.1:9");
  EXPECT_FALSE(j["results"][0]["error"].get<std::string>().empty());
  EXPECT_EQ(j["results"][1]["channel"], "mail");

  // Mail and webhook off, a secret removed.
  r = Call("PUT", "/api/v1/settings/notifications", "a",
           R"({"smtp_url":"","webhook_url":"","webhook_secret":""})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r)["webhook_secret"], json({{"set", false}}));
  EXPECT_EQ(notify_->holder().Get(), nullptr);
  struct stat st {};
  EXPECT_NE(::stat(dir_.Sub(kWebhookSecretFile).c_str(), &st), 0);
}

TEST_F(SettingsRoutesTest, NotificationSettingsNameTheWrongField) {
  auto expect = [&](const std::string& body, const std::string& text) {
    Response r = Call("PUT", "/api/v1/settings/notifications", "a", body);
    EXPECT_EQ(r.status, 400) << body;
    EXPECT_THAT(r.body, HasSubstr(text)) << body;
  };
  expect(R"({"webhook_url":"ftp://x"})", "webhook_url");
  expect(R"({"smtp_url":"http://x","smtp_from":"a@b","smtp_to":["c@d"]})",
         "smtp_url");
  expect(R"({"smtp_url":"smtp://x","smtp_from":"a b","smtp_to":["c@d"]})",
         "smtp_from");
  expect(R"({"smtp_url":"smtp://x","smtp_from":"a@b"})", "smtp_to");
  expect(R"({"smtp_url":"smtp://x","smtp_from":"a@b","smtp_to":["c@d"],
             "smtp_user":"u"})",
         "smtp_user needs smtp_password");
  expect(R"({"daily_report":"someday"})", "daily_report");
  expect(R"({"on_success":"yes"})", "on_success");
  expect(R"({"webhook_secret":"two\nlines"})", "one line");
  // Nothing was saved by any of them.
  EXPECT_EQ(Body(Call("GET", "/api/v1/settings/notifications", "a"))["source"],
            "havend.conf");
}

}  // namespace
}  // namespace haven::appliance
