// Enrolled agents (appliance/agents.h, routes_agents.cc) over a real SQLite
// state database:
//  - the registry: a token enrolls once, expires (injected clock), says
//    which agent used it; names are unique among agents not revoked; a
//    revoked agent's credential is refused saying when; secrets are kept
//    only as SHA-256 (the database's bytes are searched for them)
//  - the routes through the real dispatcher and the real AuthService:
//    enrollment is public and rate-limited, making tokens is admin-only,
//    an agent credential reaches only agent routes, a revoked one is 401
#include "appliance/agents.h"

#include <fstream>
#include <sstream>

#include "appliance/auth.h"
#include "appliance/credentials.h"
#include "appliance/routes.h"
#include "tests/unit/test_util.h"

namespace haven::appliance {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using testing_util::IsOk;
using testing_util::StatusIs;
using testing_util::TempDir;

constexpr int64_t kT0 = 1800000000;  // 2027-01-15T08:00:00Z

std::string FileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class AgentRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = StateDb::Open(dir_.Sub("havend.db"));
    ASSERT_THAT(db, IsOk());
    db_ = std::move(*db);
    registry_ = std::make_unique<AgentRegistry>(*db_, [this] { return now_; });
  }

  NewEnrollment Token(const std::string& name = "", int minutes = 60,
                      const std::string& kind = "guest") {
    EnrollmentRequest req;
    req.name = name;
    req.kind = kind;
    req.repository = "main";
    req.expires_minutes = minutes;
    req.created_by = "root";
    auto made = registry_->CreateEnrollment(req);
    EXPECT_THAT(made, IsOk());
    return made.ok() ? *made : NewEnrollment();
  }

  TempDir dir_;
  std::unique_ptr<StateDb> db_;
  int64_t now_ = kT0;
  std::unique_ptr<AgentRegistry> registry_;
};

TEST_F(AgentRegistryTest, TokenEnrollsOnceAndSaysByWhom) {
  NewEnrollment t = Token();
  EXPECT_THAT(t.token, StartsWith("havenenroll_"));
  EXPECT_EQ(t.expires, kT0 + 3600);
  auto a = registry_->Enroll(t.token, "web1", "guest", "web1.example", "1.0",
                             "10.0.0.5");
  ASSERT_THAT(a, IsOk());
  EXPECT_THAT(a->credential, StartsWith("havenagent_"));
  EXPECT_EQ(a->agent.name, "web1");
  EXPECT_EQ(a->agent.repository, "main");
  EXPECT_EQ(a->agent.id.size(), 16u);
  now_ += 120;
  auto again = registry_->Enroll(t.token, "web2", "guest", "web2", "1.0", "");
  EXPECT_THAT(again, StatusIs(Code::kPermissionDenied,
                              HasSubstr("used already, on "
                                        "2027-01-15T08:00:00Z by agent web1")));
  // The refused attempt made nothing.
  auto list = registry_->List();
  ASSERT_THAT(list, IsOk());
  EXPECT_EQ(list->size(), 1u);
}

TEST_F(AgentRegistryTest, ExpiredAndUnknownTokensAreRefusedInWords) {
  NewEnrollment t = Token("", 5);
  now_ += 5 * 60;
  EXPECT_THAT(
      registry_->Enroll(t.token, "a", "", "h", "1", ""),
      StatusIs(Code::kPermissionDenied,
               HasSubstr("expired on 2027-01-15T08:05:00Z; make a new one")));
  EXPECT_THAT(
      registry_->Enroll("havenenroll_nope", "a", "", "h", "1", ""),
      StatusIs(Code::kPermissionDenied, HasSubstr("unknown enrollment token")));
  EXPECT_THAT(
      registry_->Enroll(std::string(500, 'x'), "a", "", "h", "1", ""),
      StatusIs(Code::kPermissionDenied, HasSubstr("unknown enrollment token")));
  // One minute before expiry it still works.
  NewEnrollment u = Token("", 5);
  now_ += 4 * 60;
  EXPECT_THAT(registry_->Enroll(u.token, "a", "", "h", "1", ""), IsOk());
}

TEST_F(AgentRegistryTest, BadEnrollmentRequestsAreNamed) {
  EnrollmentRequest req;
  req.repository = "main";
  req.kind = "vm";
  EXPECT_THAT(registry_->CreateEnrollment(req),
              StatusIs(Code::kInvalidArgument, HasSubstr("guest or host")));
  req.kind = "host";
  req.expires_minutes = 10081;
  EXPECT_THAT(registry_->CreateEnrollment(req),
              StatusIs(Code::kInvalidArgument, HasSubstr("expires_minutes")));
  req.expires_minutes = 60;
  req.name = "bad name";
  EXPECT_THAT(registry_->CreateEnrollment(req),
              StatusIs(Code::kInvalidArgument, HasSubstr("agent names")));
}

TEST_F(AgentRegistryTest, TheTokensNameAndKindWin) {
  NewEnrollment t = Token("db1", 60, "host");
  EXPECT_THAT(registry_->Enroll(t.token, "", "guest", "h", "1", ""),
              StatusIs(Code::kInvalidArgument,
                       HasSubstr("for a host agent, not a \"guest\" one")));
  // That refusal did not use the token up.
  auto a = registry_->Enroll(t.token, "other", "", "h", "1", "");
  ASSERT_THAT(a, IsOk());
  EXPECT_EQ(a->agent.name, "db1");
  EXPECT_EQ(a->agent.kind, "host");
  // No name anywhere: the hostname.
  auto b = registry_->Enroll(Token().token, "", "", "files.lan", "1", "");
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(b->agent.name, "files.lan");
  EXPECT_THAT(registry_->Enroll(Token().token, "", "", "", "1", ""),
              StatusIs(Code::kInvalidArgument, HasSubstr("needs a name")));
  EXPECT_THAT(registry_->Enroll(Token().token, "x", "", "h\n", "1", ""),
              StatusIs(Code::kInvalidArgument, HasSubstr("printable")));
}

TEST_F(AgentRegistryTest, NamesAreUniqueAmongAgentsNotRevoked) {
  auto a = registry_->Enroll(Token().token, "web1", "", "h", "1", "");
  ASSERT_THAT(a, IsOk());
  NewEnrollment t = Token();
  EXPECT_THAT(registry_->Enroll(t.token, "web1", "", "h", "1", ""),
              StatusIs(Code::kAlreadyExists,
                       HasSubstr("an agent named web1 is enrolled already")));
  ASSERT_THAT(registry_->Revoke(a->agent.id), IsOk());
  auto b = registry_->Enroll(t.token, "web1", "", "h", "1", "");
  ASSERT_THAT(b, IsOk());
  EXPECT_NE(b->agent.id, a->agent.id);
  auto found = registry_->FindByName("web1");
  ASSERT_THAT(found, IsOk());
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->id, b->agent.id);
}

TEST_F(AgentRegistryTest, RevokedCredentialIsRefusedSayingWhen) {
  auto a = registry_->Enroll(Token().token, "web1", "", "h", "1", "");
  ASSERT_THAT(a, IsOk());
  auto caller = registry_->Authenticate(a->credential);
  ASSERT_THAT(caller, IsOk());
  ASSERT_TRUE(caller->has_value());
  EXPECT_EQ((*caller)->name, "agent:web1");
  EXPECT_EQ((*caller)->role, Role::kAgent);
  EXPECT_EQ((*caller)->agent_id, a->agent.id);
  auto unknown = registry_->Authenticate("havenagent_nothing");
  ASSERT_THAT(unknown, IsOk());
  EXPECT_FALSE(unknown->has_value());
  now_ = kT0 + 86400;
  ASSERT_THAT(registry_->Revoke(a->agent.id), IsOk());
  now_ += 10;
  ASSERT_THAT(registry_->Revoke(a->agent.id), IsOk());  // keeps the first
  EXPECT_THAT(
      registry_->Authenticate(a->credential),
      StatusIs(Code::kPermissionDenied,
               HasSubstr("agent web1 was revoked on 2027-01-16T08:00:00Z; "
                         "enroll it again with a new enrollment token")));
  EXPECT_THAT(registry_->Revoke("0123456789abcdef"),
              StatusIs(Code::kNotFound, HasSubstr("no agent")));
}

TEST_F(AgentRegistryTest, TouchIsThrottledUnlessSomethingChanged) {
  auto a = registry_->Enroll(Token().token, "web1", "", "h", "1.0", "10.0.0.1");
  ASSERT_THAT(a, IsOk());
  const std::string id = a->agent.id;
  auto contact = [&] { return registry_->Get(id).value()->last_contact; };
  now_ += 30;
  ASSERT_THAT(registry_->Touch(id, "", "", "10.0.0.1"), IsOk());
  EXPECT_EQ(contact(), kT0);  // within the minute, nothing new: no write
  ASSERT_THAT(registry_->Touch(id, "", "1.1", ""), IsOk());
  EXPECT_EQ(contact(), kT0 + 30);
  auto info = registry_->Get(id);
  EXPECT_EQ((*info)->version, "1.1");
  EXPECT_EQ((*info)->hostname, "h");  // "" kept what was there
  EXPECT_EQ((*info)->address, "10.0.0.1");
  now_ += 61;
  ASSERT_THAT(registry_->Touch(id, "", "", ""), IsOk());
  EXPECT_EQ(contact(), kT0 + 91);
  EXPECT_THAT(registry_->Touch("ffffffffffffffff", "", "", ""),
              StatusIs(Code::kNotFound, HasSubstr("no agent")));
}

TEST_F(AgentRegistryTest, SecretsAreStoredOnlyAsSha256) {
  NewEnrollment t = Token("web1");
  auto a = registry_->Enroll(t.token, "", "", "h", "1", "");
  ASSERT_THAT(a, IsOk());
  // Push everything into the files SQLite writes.
  ASSERT_THAT(db_->Exec("PRAGMA wal_checkpoint(FULL)"), IsOk());
  std::string bytes =
      FileBytes(dir_.Sub("havend.db")) + FileBytes(dir_.Sub("havend.db-wal"));
  ASSERT_FALSE(bytes.empty());
  for (const std::string& secret : {t.token, a->credential}) {
    std::string random_part = secret.substr(secret.find('_') + 1);
    EXPECT_EQ(bytes.find(random_part), std::string::npos) << secret;
    EXPECT_NE(bytes.find(Sha256Hex(secret)), std::string::npos) << secret;
  }
}

TEST(AgentRepositoryTest, DefaultIsDefaultElseFirst) {
  ApplianceConfig c;
  EXPECT_THAT(AgentRepository(c, ""),
              StatusIs(Code::kFailedPrecondition, HasSubstr("no repository")));
  c.repositories.push_back({"main", "/r/main", ""});
  c.repositories.push_back({"default", "/r/default", ""});
  EXPECT_EQ(AgentRepository(c, "").value(), "default");
  EXPECT_EQ(AgentRepository(c, "main").value(), "main");
  EXPECT_THAT(AgentRepository(c, "nas"),
              StatusIs(Code::kInvalidArgument,
                       HasSubstr("no repository \"nas\" (configured: main, "
                                 "default)")));
  c.repositories.pop_back();
  EXPECT_EQ(AgentRepository(c, "").value(), "main");
}

// ------------------------------------------------------------- routes

class AgentRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = StateDb::Open(dir_.Sub("havend.db"));
    ASSERT_THAT(db, IsOk());
    db_ = std::move(*db);
    config_.repositories.push_back({"main", dir_.Sub("repo"), ""});
    auto auth = AuthService::Open(*db_);
    ASSERT_THAT(auth, IsOk());
    auth_ = std::move(*auth);
    registry_ = std::make_unique<AgentRegistry>(*db_);
    auth_->SetAgentRegistry(registry_.get());
    for (auto [name, role, out] :
         {std::tuple{"adm", Role::kAdmin, &admin_},
          std::tuple{"aud", Role::kAuditor, &auditor_}}) {
      auto t = auth_->CreateToken(name, role, 0, "test");
      ASSERT_THAT(t, IsOk());
      *out = t->secret;
    }
    services_.config = &config_;
    services_.db = db_.get();
    services_.repositories = &catalog_;
    services_.auth = auth_.get();
    services_.agents = registry_.get();
    services_.fingerprint = "SHA256:AB:CD";
    services_.version = "9.9";
    ApiOptions api;
    api.authenticate = auth_->MakeAuthenticator();
    auto handler = MakeApiHandler(AgentAdminRoutes(services_), api);
    ASSERT_THAT(handler, IsOk());
    handler_ = std::move(*handler);
  }

  Response Call(const std::string& method, const std::string& path,
                const std::string& bearer, const std::string& body = "",
                const std::string& peer = "192.0.2.7:4000") {
    Request r;
    r.method = method;
    r.target = r.path = path;
    if (!bearer.empty())
      r.headers.push_back({"authorization", "Bearer " + bearer});
    r.headers.push_back({"host", "backup.lan:8421"});
    r.body = body;
    r.peer = peer;
    return handler_(r);
  }
  static json Body(const Response& r) {
    return json::parse(r.body, nullptr, false);
  }
  json MakeToken(const json& body) {
    Response r =
        Call("POST", "/api/v1/agents/enrollments", admin_, body.dump());
    EXPECT_EQ(r.status, 201) << r.body;
    return Body(r);
  }
  json EnrollAgent(const std::string& token, const std::string& name) {
    Response r = Call("POST", "/api/v1/agent/enroll", "",
                      json{{"token", token},
                           {"name", name},
                           {"hostname", name + ".lan"},
                           {"version", "1.2"}}
                          .dump());
    EXPECT_EQ(r.status, 201) << r.body;
    return Body(r);
  }

  TempDir dir_;
  std::unique_ptr<StateDb> db_;
  ApplianceConfig config_;
  RepositoryCatalog catalog_{config_};
  std::unique_ptr<AuthService> auth_;
  std::unique_ptr<AgentRegistry> registry_;
  std::string admin_, auditor_;
  Services services_;
  Handler handler_;
};

TEST_F(AgentRoutesTest, AdminMakesATokenAndTheAgentTradesIt) {
  json t = MakeToken({{"name", "web1"}});
  EXPECT_THAT(t["token"].get<std::string>(), StartsWith("havenenroll_"));
  EXPECT_EQ(t["fingerprint"], "SHA256:AB:CD");
  EXPECT_EQ(t["url"], "https://backup.lan:8421");
  EXPECT_EQ(t["repository"], "main");
  EXPECT_EQ(t["kind"], "guest");
  EXPECT_EQ(t["command"],
            "haven agent enroll https://backup.lan:8421 --token " +
                t["token"].get<std::string>() +
                " --fingerprint SHA256:AB:CD --name web1");
  json a = EnrollAgent(t["token"], "");
  EXPECT_EQ(a["name"], "web1");
  EXPECT_EQ(a["repository"], "main");
  EXPECT_THAT(a["credential"].get<std::string>(), StartsWith("havenagent_"));
  // The agent says hello with its credential.
  Response hello = Call("POST", "/api/v1/agent/hello", a["credential"],
                        R"({"hostname": "web1.lan", "version": "1.3"})");
  ASSERT_EQ(hello.status, 200) << hello.body;
  EXPECT_EQ(Body(hello)["agent_id"], a["agent_id"]);
  EXPECT_EQ(Body(hello)["server_version"], "9.9");
  // The auditor sees it, with what hello told and where it came from.
  Response list = Call("GET", "/api/v1/agents", auditor_);
  ASSERT_EQ(list.status, 200) << list.body;
  json agents = Body(list)["agents"];
  ASSERT_EQ(agents.size(), 1u);
  EXPECT_EQ(agents[0]["version"], "1.3");
  EXPECT_EQ(agents[0]["hostname"], "web1.lan");
  EXPECT_EQ(agents[0]["address"], "192.0.2.7");
  EXPECT_TRUE(agents[0]["revoked"].is_null());
  EXPECT_TRUE(agents[0]["last_contact"].is_string());
  // The token works once.
  Response again = Call("POST", "/api/v1/agent/enroll", "",
                        json{{"token", t["token"]}, {"name", "x"}}.dump());
  EXPECT_EQ(again.status, 401);
  EXPECT_THAT(again.body, HasSubstr("used already"));
  EXPECT_THAT(again.body, HasSubstr("by agent web1"));
}

TEST_F(AgentRoutesTest, OnlyAdminsMakeTokensOrRevoke) {
  Response r = Call("POST", "/api/v1/agents/enrollments", auditor_, "{}");
  EXPECT_EQ(r.status, 403);
  r = Call("POST", "/api/v1/agents/enrollments", "", "{}");
  EXPECT_EQ(r.status, 401);
  json a = EnrollAgent(MakeToken(json::object())["token"], "web1");
  r = Call("POST",
           "/api/v1/agents/" + a["agent_id"].get<std::string>() + "/revoke",
           auditor_);
  EXPECT_EQ(r.status, 403);
  r = Call("POST", "/api/v1/agents/enrollments", admin_,
           R"({"repository": "nas"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.body, HasSubstr("no repository \\\"nas\\\""));
  r = Call("POST", "/api/v1/agents/enrollments", admin_,
           R"({"expires_minutes": 0})");
  EXPECT_EQ(r.status, 400);
  r = Call("POST", "/api/v1/agents/enrollments", admin_, R"({"kind": "vm"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.body, HasSubstr("guest or host"));
}

TEST_F(AgentRoutesTest, AnAgentCredentialReachesOnlyAgentRoutes) {
  json a = EnrollAgent(MakeToken(json::object())["token"], "web1");
  std::string cred = a["credential"];
  EXPECT_EQ(Call("GET", "/api/v1/agents", cred).status, 403);
  EXPECT_EQ(Call("POST", "/api/v1/agents/enrollments", cred, "{}").status, 403);
  // ... and a person's token reaches no agent route.
  EXPECT_EQ(Call("POST", "/api/v1/agent/hello", admin_, "{}").status, 403);
  Response unknown = Call("POST", "/api/v1/agent/hello",
                          "havenagent_" + std::string(43, 'A'), "{}");
  EXPECT_EQ(unknown.status, 401);
  EXPECT_THAT(unknown.body, HasSubstr("unknown agent credential"));
}

TEST_F(AgentRoutesTest, RevokedAgentIsRefusedAtOnce) {
  json a = EnrollAgent(MakeToken(json::object())["token"], "web1");
  std::string cred = a["credential"], id = a["agent_id"];
  ASSERT_EQ(Call("POST", "/api/v1/agent/hello", cred, "{}").status, 200);
  Response r = Call("POST", "/api/v1/agents/" + id + "/revoke", admin_);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r)["id"], id);
  EXPECT_TRUE(Body(r)["revoked"].is_string());
  Response hello = Call("POST", "/api/v1/agent/hello", cred, "{}");
  EXPECT_EQ(hello.status, 401);
  EXPECT_THAT(hello.body, HasSubstr("agent web1 was revoked on "));
  EXPECT_THAT(hello.body, HasSubstr("enroll it again"));
  EXPECT_EQ(
      Call("POST", "/api/v1/agents/0000000000000000/revoke", admin_).status,
      404);
  // The name is free again.
  json b = EnrollAgent(MakeToken(json::object())["token"], "web1");
  EXPECT_NE(b["agent_id"], a["agent_id"]);
}

TEST_F(AgentRoutesTest, NameTakenIs409AndBadBodiesAre400) {
  EnrollAgent(MakeToken(json::object())["token"], "web1");
  std::string token = MakeToken(json::object())["token"];
  Response r = Call("POST", "/api/v1/agent/enroll", "",
                    json{{"token", token}, {"name", "web1"}}.dump());
  EXPECT_EQ(r.status, 409);
  EXPECT_THAT(r.body, HasSubstr("enrolled already"));
  EXPECT_EQ(Call("POST", "/api/v1/agent/enroll", "", "[]").status, 400);
  EXPECT_EQ(Call("POST", "/api/v1/agent/enroll", "", R"({"name": "x"})").status,
            400);
  r = Call("POST", "/api/v1/agent/enroll", "",
           json{{"token", token}, {"name", 5}}.dump());
  EXPECT_EQ(r.status, 400);
  // None of that used the token.
  EnrollAgent(token, "web2");
}

TEST_F(AgentRoutesTest, FailedEnrollmentsAreRateLimitedPerAddress) {
  std::string good = MakeToken(json::object())["token"];
  auto attempt = [&](const std::string& token, const std::string& peer) {
    return Call("POST", "/api/v1/agent/enroll", "",
                json{{"token", token}, {"name", "web1"}}.dump(), peer);
  };
  for (int i = 0; i < 5; ++i) {
    Response r =
        attempt("havenenroll_guess" + std::to_string(i), "192.0.2.9:1");
    ASSERT_EQ(r.status, 401) << r.body;
    EXPECT_THAT(r.body, HasSubstr("unknown enrollment token"));
  }
  // Beyond the free failures each attempt waits 1, 2, 4 ... s after the
  // last failure: attempts made at once are refused unchecked.
  Response limited;
  for (int i = 0; i < 50 && limited.status != 429; ++i) {
    limited = attempt("havenenroll_more" + std::to_string(i), "192.0.2.9:2");
    ASSERT_THAT(limited.status, ::testing::AnyOf(401, 429)) << limited.body;
  }
  ASSERT_EQ(limited.status, 429);
  bool retry_after = false;
  for (const auto& [name, value] : limited.headers)
    retry_after = retry_after || (name == "retry-after" && value != "0");
  EXPECT_TRUE(retry_after);
  EXPECT_THAT(limited.body, HasSubstr("too many failed enrollments"));
  // Even a good token is not looked at while the address waits.
  EXPECT_EQ(attempt(good, "192.0.2.9:3").status, 429);
  // Another address is not slowed down.
  EXPECT_EQ(attempt(good, "198.51.100.1:3").status, 201);
}

}  // namespace
}  // namespace haven::appliance
