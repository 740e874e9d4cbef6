// The job routes (appliance/routes_jobs.cc, routes_events.cc) through the
// real dispatcher and a real SqlJobService over SQLite, with fake kinds:
// the role each route needs, 202 with the job id, 400 / 404 / 409 with the
// reason, and the event stream (frames, the cap on open streams, its end
// when the service stops).
#include <thread>

#include "appliance/job_service.h"
#include "appliance/routes.h"
#include "base/json.h"
#include "tests/unit/test_util.h"

namespace haven::appliance {
namespace {

using ::testing::HasSubstr;
using testing_util::TempDir;

std::variant<Caller, Response> TestAuth(const Request& req, bool,
                                        const std::string*) {
  const std::string* h = req.Header("authorization");
  if (h && *h == "Bearer a") return Caller{"admin", Role::kAdmin, false, ""};
  if (h && *h == "Bearer o")
    return Caller{"token:op", Role::kOperator, false, ""};
  if (h && *h == "Bearer u")
    return Caller{"token:aud", Role::kAuditor, false, ""};
  return ErrorJson(401, "authentication required");
}

class JobRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = StateDb::Open(dir_.Sub("havend.db"));
    ASSERT_TRUE(db.ok());
    db_ = std::move(*db);
    config_.repositories.push_back({"main", "/nonexistent", ""});
    JobServiceOptions o;
    o.repository_exists = [this](std::string_view n) {
      return config_.FindRepository(n) != nullptr;
    };
    auto jobs = SqlJobService::Create(*db_, o);
    ASSERT_TRUE(jobs.ok());
    jobs_ = std::move(*jobs);
    for (const char* kind : {"backup", "forget", "gc", "check"})
      jobs_->RegisterKind(
          kind,
          [](const JobSpec& s) {
            return s.params.contains("bad") ? InvalidArgument("bad: no")
                                            : OkStatus();
          },
          [](const JobSpec&, JobContext&) {
            return JobOutcome{JobState::kSucceeded, "", {}, 0, 0, 0, {}};
          });
    services_.config = &config_;
    services_.jobs = jobs_.get();
    ApiOptions api;
    api.authenticate = TestAuth;
    auto handler = MakeApiHandler(JobRoutes(services_, 1), api);
    ASSERT_TRUE(handler.ok()) << handler.status().ToString();
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
    return handler_(r);
  }
  static nlohmann::json Body(const Response& r) {
    return nlohmann::json::parse(r.body, nullptr, false);
  }

  TempDir dir_;
  std::unique_ptr<StateDb> db_;
  ApplianceConfig config_;
  std::unique_ptr<SqlJobService> jobs_;
  Services services_;
  Handler handler_;
};

TEST_F(JobRoutesTest, RolesOfTheRoutes) {
  EXPECT_EQ(Call("GET", "/api/v1/jobs", "").status, 401);
  EXPECT_EQ(Call("GET", "/api/v1/jobs", "u").status, 200);
  EXPECT_EQ(Call("POST", "/api/v1/backups", "u", R"({"all":true})").status,
            403);
  EXPECT_EQ(Call("POST", "/api/v1/backups", "o", R"({"all":true})").status,
            202);
  EXPECT_EQ(Call("POST", "/api/v1/repositories/main/check", "u").status, 403);
  EXPECT_EQ(Call("POST", "/api/v1/repositories/main/check", "o").status, 202);
  for (const char* kind : {"forget", "gc"}) {
    std::string path = std::string("/api/v1/repositories/main/") + kind;
    EXPECT_EQ(Call("POST", path, "o").status, 403) << kind;
    EXPECT_EQ(Call("POST", path, "a").status, 202) << kind;
  }
  EXPECT_EQ(Call("POST", "/api/v1/jobs/1/cancel", "u").status, 403);
  EXPECT_EQ(Call("GET", "/api/v1/events", "").status, 401);
}

TEST_F(JobRoutesTest, SubmitShowCancel) {
  Response r = Call("POST", "/api/v1/backups", "o", R"({"vms":["web1"]})");
  ASSERT_EQ(r.status, 202) << r.body;
  int64_t id = Body(r)["job"];
  bool location = false;
  for (const auto& [k, v] : r.headers)
    location |= k == "location" && v == "/api/v1/jobs/" + std::to_string(id);
  EXPECT_TRUE(location);
  Response show = Call("GET", "/api/v1/jobs/" + std::to_string(id), "u");
  ASSERT_EQ(show.status, 200);
  nlohmann::json j = Body(show);
  EXPECT_EQ(j["state"], "queued");     // the service is not started
  EXPECT_EQ(j["repository"], "main");  // the only one configured
  EXPECT_EQ(j["params"], nlohmann::json({{"vms", {"web1"}}}));
  EXPECT_EQ(j["requested_by"], "token:op");
  Response cancel =
      Call("POST", "/api/v1/jobs/" + std::to_string(id) + "/cancel", "o");
  EXPECT_EQ(cancel.status, 202);
  EXPECT_EQ(Body(cancel)["state"], "cancelled");
  Response again =
      Call("POST", "/api/v1/jobs/" + std::to_string(id) + "/cancel", "o");
  EXPECT_EQ(again.status, 409);
  EXPECT_THAT(again.body, HasSubstr("already ended"));
  Response log =
      Call("GET", "/api/v1/jobs/" + std::to_string(id) + "/log", "u");
  ASSERT_EQ(log.status, 200);
  EXPECT_THAT(log.body, HasSubstr("cancelled by token:op"));
  Response list = Call("GET", "/api/v1/jobs?state=cancelled", "u");
  ASSERT_EQ(list.status, 200);
  EXPECT_EQ(Body(list)["jobs"].size(), 1u);
}

TEST_F(JobRoutesTest, BadRequestsSayWhatIsWrong) {
  auto expect = [&](const Response& r, int status, const std::string& text) {
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_THAT(r.body, HasSubstr(text));
  };
  expect(Call("POST", "/api/v1/backups", "o", "{nope"), 400, "not valid JSON");
  expect(Call("POST", "/api/v1/backups", "o", "[1]"), 400, "JSON object");
  expect(Call("POST", "/api/v1/backups", "o", R"({"bad":1})"), 400, "bad: no");
  expect(Call("POST", "/api/v1/backups", "o", R"({"repository":"x"})"), 404,
         "no repository called");
  expect(Call("POST", "/api/v1/repositories/other/gc", "a"), 404, "other");
  expect(Call("GET", "/api/v1/jobs/abc", "u"), 400, "job id");
  expect(Call("GET", "/api/v1/jobs/99", "u"), 404, "no job 99");
  expect(Call("GET", "/api/v1/jobs?state=done", "u"), 400, "state must be");
  expect(Call("GET", "/api/v1/jobs?limit=0", "u"), 400, "limit");
  expect(Call("GET", "/api/v1/jobs?since=soon", "u"), 400, "soon");
  expect(Call("GET", "/api/v1/jobs/99/log?after=x", "u"), 400, "after");
  expect(Call("GET", "/api/v1/events?job=x", "u"), 400, "job");
  config_.repositories.push_back({"second", "/nonexistent", ""});
  expect(Call("POST", "/api/v1/backups", "o", R"({"all":true})"), 400,
         "name the repository");
}

TEST_F(JobRoutesTest, EventStreamFramesCapAndEnd) {
  Response r = Call("GET", "/api/v1/events", "u");
  ASSERT_EQ(r.status, 200);
  ASSERT_TRUE(r.stream);
  EXPECT_TRUE(r.chunked);
  // The cap (1 here) counts streams whose response is alive.
  Response second = Call("GET", "/api/v1/events", "u");
  EXPECT_EQ(second.status, 503);
  EXPECT_THAT(second.body, HasSubstr("at most 1"));

  std::mutex mu;
  std::string text;
  Status result;
  std::thread streamer([&] {
    result = r.stream([&](std::string_view chunk) {
      std::lock_guard lock(mu);
      text += chunk;
      return OkStatus();
    });
  });
  // Wait for the stream's subscription (its first frame).
  for (int i = 0; i < 500; ++i) {
    {
      std::lock_guard lock(mu);
      if (!text.empty()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  jobs_->Start();
  Response sub = Call("POST", "/api/v1/repositories/main/check", "o");
  ASSERT_EQ(sub.status, 202);
  int64_t id = Body(sub)["job"];
  for (int i = 0; i < 500; ++i) {
    {
      std::lock_guard lock(mu);
      if (text.find("\"succeeded\"") != std::string::npos) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  jobs_->Stop();  // ends every stream
  streamer.join();
  EXPECT_TRUE(result.ok()) << result.ToString();
  EXPECT_THAT(text,
              HasSubstr("event: state\ndata: {\"id\":" + std::to_string(id)));
  EXPECT_THAT(text, HasSubstr("\"state\":\"running\""));
  EXPECT_THAT(text, HasSubstr("\"state\":\"succeeded\""));
  r = Response();  // the stream's slot is given back with its response
  Response late = Call("GET", "/api/v1/events", "u");
  ASSERT_EQ(late.status, 200);
  // Opened while havend stops: it ends at once instead of idling.
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(late.stream([](std::string_view) { return OkStatus(); }).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

TEST_F(JobRoutesTest, EveryRouteIsInTheOpenApiDocument) {
  nlohmann::json doc = OpenApiDocument(JobRoutes(services_, 1), "t");
  for (const char* path :
       {"/api/v1/jobs", "/api/v1/jobs/{id}", "/api/v1/jobs/{id}/log",
        "/api/v1/jobs/{id}/cancel", "/api/v1/backups",
        "/api/v1/repositories/{name}/forget", "/api/v1/repositories/{name}/gc",
        "/api/v1/repositories/{name}/check", "/api/v1/events"})
    EXPECT_TRUE(doc["paths"].contains(path)) << path;
  EXPECT_EQ(doc["paths"]["/api/v1/repositories/{name}/forget"]["post"]
               ["x-haven-role"],
            "admin");
}

}  // namespace
}  // namespace haven::appliance
