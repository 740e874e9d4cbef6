// The schedule routes through the real dispatcher (MakeApiHandler): roles,
// status codes, bodies and the OpenAPI entries. The daemon-level test is
// tests/integration/havend_schedule_test.sh.
#include <stdlib.h>
#include <time.h>

#include "appliance/routes.h"
#include "appliance/scheduler.h"
#include "base/time.h"
#include "tests/unit/fake_job_service.h"
#include "tests/unit/test_util.h"

namespace haven::appliance {
namespace {

using ::haven::testing_util::IsOk;
using nlohmann::json;

class ScheduleRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("TZ", "UTC", 1);
    tzset();
    auto db = StateDb::Open(dir_.Sub("havend.db"));
    ASSERT_THAT(db.status(), IsOk());
    db_ = std::move(*db);
    SchedulerOptions o;
    o.now_ms = [] { return *ParseIsoTime("2026-12-07T10:00:00Z") * 1000; };
    o.repository_known = [](std::string_view n) { return n == "main"; };
    auto s = Scheduler::Create(*db_, jobs_, o);
    ASSERT_THAT(s.status(), IsOk());
    scheduler_ = std::move(*s);
    services_.db = db_.get();
    services_.jobs = &jobs_;
    services_.scheduler = scheduler_.get();
    ApiOptions api;
    api.version = "test";
    api.authenticate =
        [](const Request& r, bool,
           const std::string*) -> std::variant<Caller, Response> {
      const std::string* auth = r.Header("authorization");
      if (auth == nullptr) return ErrorJson(401, "authentication required");
      auto role = ParseRole(auth->substr(7));
      return Caller{"token:" + auth->substr(7), role.value_or(Role::kNone),
                    false, ""};
    };
    auto handler = MakeApiHandler(ScheduleRoutes(services_), api);
    ASSERT_THAT(handler.status(), IsOk());
    handler_ = *handler;
  }

  // Calls the API as `role` ("" : no credentials); parses the JSON answer.
  int Call(const std::string& method, const std::string& target,
           const std::string& role, const json& body = nullptr,
           json* out = nullptr) {
    Request r;
    r.method = method;
    r.target = target;
    size_t q = target.find('?');
    r.path = *DecodeTargetPath(target);
    if (q != std::string::npos) r.query = target.substr(q + 1);
    if (!role.empty())
      r.headers.emplace_back("authorization", "Bearer " + role);
    if (!body.is_null()) r.body = body.dump();
    Response resp = handler_(r);
    last_ = json::parse(resp.body, nullptr, false);
    if (out) *out = last_;
    return resp.status;
  }

  json Nightly() {
    return {{"name", "nightly"},
            {"calendar", "*-*-* 02:00:00"},
            {"kind", "backup"},
            {"repository", "main"},
            {"params", {{"all", true}}}};
  }

  testing_util::TempDir dir_;
  std::unique_ptr<StateDb> db_;
  FakeJobService jobs_;
  std::unique_ptr<Scheduler> scheduler_;
  Services services_;
  Handler handler_;
  json last_;
};

TEST_F(ScheduleRoutesTest, CreateListChangeRunDelete) {
  json s;
  ASSERT_EQ(Call("POST", "/api/v1/schedules", "admin", Nightly(), &s), 201)
      << s;
  EXPECT_EQ(s["name"], "nightly");
  EXPECT_EQ(s["normalized"], "*-*-* 02:00:00");
  EXPECT_EQ(s["next_run"], "2026-12-08T02:00:00Z");
  EXPECT_EQ(s["persistent"], true);
  EXPECT_EQ(s["last_triggered"], nullptr);
  std::string id = std::to_string(s["id"].get<int64_t>());
  EXPECT_EQ(Call("POST", "/api/v1/schedules", "admin", Nightly()), 409);
  EXPECT_EQ(last_["error"], "a schedule named \"nightly\" already exists");

  json list;
  ASSERT_EQ(Call("GET", "/api/v1/schedules", "auditor", nullptr, &list), 200);
  ASSERT_EQ(list["schedules"].size(), 1u);
  EXPECT_EQ(list["schedules"][0]["next_run"], "2026-12-08T02:00:00Z");

  json changed;
  ASSERT_EQ(
      Call("PUT", "/api/v1/schedules/" + id, "admin",
           {{"calendar", "Sat 03:00"}, {"random_delay_seconds", 60}}, &changed),
      200)
      << changed;
  EXPECT_EQ(changed["normalized"], "Sat *-*-* 03:00:00");
  EXPECT_EQ(changed["name"], "nightly");
  EXPECT_EQ(changed["params"], (json{{"all", true}}));
  EXPECT_EQ(changed["next_elapse"], "2026-12-12T03:00:00Z");

  json next;
  ASSERT_EQ(Call("GET", "/api/v1/schedules/" + id + "/next?count=3", "auditor",
                 nullptr, &next),
            200);
  ASSERT_EQ(next["next"].size(), 3u);
  EXPECT_EQ(next["next"][1]["elapse"], "2026-12-19T03:00:00Z");
  EXPECT_EQ(next["next"][0]["run_local"].get<std::string>().substr(0, 14),
            "Sat 2026-12-12");

  json job;
  EXPECT_EQ(Call("POST", "/api/v1/schedules/" + id + "/run", "auditor"), 403);
  ASSERT_EQ(Call("POST", "/api/v1/schedules/" + id + "/run", "operator",
                 nullptr, &job),
            202);
  ASSERT_EQ(jobs_.submissions().size(), 1u);
  EXPECT_EQ(job["job"], jobs_.submissions()[0].id);
  EXPECT_EQ(jobs_.submissions()[0].spec.requested_by, "token:operator");

  EXPECT_EQ(Call("DELETE", "/api/v1/schedules/" + id, "operator"), 403);
  EXPECT_EQ(Call("DELETE", "/api/v1/schedules/" + id, "admin"), 200);
  EXPECT_EQ(Call("GET", "/api/v1/schedules/" + id, "auditor"), 404);
  EXPECT_EQ(last_["error"], "no schedule with id " + id);
  EXPECT_EQ(Call("DELETE", "/api/v1/schedules/" + id, "admin"), 404);
}

TEST_F(ScheduleRoutesTest, BadInputIs400NamingWhatIsWrong) {
  json bad = Nightly();
  bad["calendar"] = "Mon..Fry 02:00";
  EXPECT_EQ(Call("POST", "/api/v1/schedules", "admin", bad), 400);
  EXPECT_THAT(
      last_["error"].get<std::string>(),
      ::testing::StartsWith("calendar: calendar event \"Mon..Fry 02:00\""));
  bad = Nightly();
  bad["repository"] = "nowhere";
  EXPECT_EQ(Call("POST", "/api/v1/schedules", "admin", bad), 400);
  EXPECT_EQ(last_["error"],
            "repository: no repository named \"nowhere\" is configured");
  bad = Nightly();
  bad["kind"] = "defrag";
  EXPECT_EQ(Call("POST", "/api/v1/schedules", "admin", bad), 400);
  EXPECT_THAT(last_["error"].get<std::string>(),
              ::testing::HasSubstr("kind: \"defrag\""));
  EXPECT_EQ(Call("POST", "/api/v1/schedules", "operator", Nightly()), 403);
  EXPECT_EQ(Call("POST", "/api/v1/schedules", "", Nightly()), 401);

  json s;
  ASSERT_EQ(Call("POST", "/api/v1/schedules", "admin", Nightly(), &s), 201);
  std::string id = std::to_string(s["id"].get<int64_t>());
  for (const char* count : {"0", "101", "abc", "-1", ""}) {
    EXPECT_EQ(Call("GET", "/api/v1/schedules/" + id + "/next?count=" + count,
                   "auditor"),
              400)
        << count;
    EXPECT_EQ(last_["error"], "count \"" + std::string(count) +
                                  "\" must be an integer from 1 to 100");
  }
  EXPECT_EQ(Call("GET", "/api/v1/schedules/x1/next", "auditor"), 400);
  EXPECT_EQ(last_["error"], "schedule id \"x1\" is not a positive integer");
  EXPECT_EQ(
      Call("PUT", "/api/v1/schedules/" + id, "admin", {{"enabled", "no"}}),
      400);
  EXPECT_EQ(last_["error"], "enabled: must be true or false");
  EXPECT_EQ(Call("PUT", "/api/v1/schedules/" + id, "admin", json::array()),
            400);
  EXPECT_EQ(Call("PUT", "/api/v1/schedules/999", "admin", {{"enabled", true}}),
            404);
}

TEST_F(ScheduleRoutesTest, CalendarPreview) {
  json c;
  ASSERT_EQ(Call("GET", "/api/v1/calendar?expr=Mon..Fri%2002:00&count=3",
                 "auditor", nullptr, &c),
            200)
      << c;
  EXPECT_EQ(c["normalized"], "Mon..Fri *-*-* 02:00:00");
  ASSERT_EQ(c["next"].size(), 3u);
  EXPECT_EQ(c["next"][0]["time"], "2026-12-08T02:00:00Z");  // a Tuesday
  EXPECT_EQ(c["next"][2]["time"], "2026-12-10T02:00:00Z");
  EXPECT_EQ(c["next"][0]["local"], "Tue 2026-12-08 02:00:00 UTC");
  ASSERT_EQ(Call("GET", "/api/v1/calendar?expr=daily", "auditor", nullptr, &c),
            200);
  EXPECT_EQ(c["next"].size(), 5u);
  // An event that never comes again has no runs, and that is no error.
  ASSERT_EQ(
      Call("GET", "/api/v1/calendar?expr=2020-01-01", "auditor", nullptr, &c),
      200);
  EXPECT_TRUE(c["next"].empty());

  EXPECT_EQ(Call("GET", "/api/v1/calendar?expr=*-*-*%2025:00", "auditor"), 400);
  EXPECT_THAT(
      last_["error"].get<std::string>(),
      ::testing::HasSubstr("hour 25 is out of range (0..23) (column 7)"));
  EXPECT_EQ(Call("GET", "/api/v1/calendar", "auditor"), 400);
  EXPECT_EQ(last_["error"], "expr: give a calendar event, e.g. ?expr=daily");
  EXPECT_EQ(Call("GET", "/api/v1/calendar?expr=daily&count=1000", "auditor"),
            400);
  EXPECT_EQ(Call("GET", "/api/v1/calendar?expr=daily", ""), 401);
}

TEST_F(ScheduleRoutesTest, OpenApiListsEveryRouteWithItsRole) {
  json doc;
  ASSERT_EQ(Call("GET", "/api/v1/openapi.json", "", nullptr, &doc), 200);
  const json& p = doc["paths"];
  EXPECT_EQ(p["/api/v1/schedules"]["get"]["x-haven-role"], "auditor");
  EXPECT_EQ(p["/api/v1/schedules"]["post"]["x-haven-role"], "admin");
  EXPECT_EQ(p["/api/v1/schedules/{id}"]["put"]["x-haven-role"], "admin");
  EXPECT_EQ(p["/api/v1/schedules/{id}"]["delete"]["x-haven-role"], "admin");
  EXPECT_EQ(p["/api/v1/schedules/{id}/next"]["get"]["x-haven-role"], "auditor");
  EXPECT_EQ(p["/api/v1/schedules/{id}/run"]["post"]["x-haven-role"],
            "operator");
  EXPECT_EQ(p["/api/v1/calendar"]["get"]["x-haven-role"], "auditor");
  EXPECT_TRUE(p["/api/v1/schedules"]["post"].contains("requestBody"));
  EXPECT_TRUE(p["/api/v1/schedules"]["post"]["responses"].contains("400"));
}

}  // namespace
}  // namespace haven::appliance
