// The route table's dispatch (appliance/api.h): path parameters, the
// 401-before-404 rule, role checks, the audit hook, table validation and
// the OpenAPI document made from the table.
#include <string>
#include <vector>

#include "appliance/api.h"
#include "base/json.h"
#include "tests/unit/test_util.h"

namespace haven::appliance {
namespace {

using ::testing::HasSubstr;
using testing_util::StatusIs;

Request Req(std::string method, std::string target) {
  Request r;
  r.method = std::move(method);
  r.target = target;
  r.path = DecodeTargetPath(target).value_or("");
  size_t q = target.find('?');
  if (q != std::string::npos) r.query = target.substr(q + 1);
  return r;
}

// Bearer "a", "o", "u" are an admin, operator and auditor; anything else
// is refused 401.
std::variant<Caller, Response> TestAuth(const Request& req, bool,
                                        const std::string*) {
  const std::string* h = req.Header("authorization");
  if (h && *h == "Bearer a") return Caller{"admin", Role::kAdmin, false, ""};
  if (h && *h == "Bearer o")
    return Caller{"token:op", Role::kOperator, false, ""};
  if (h && *h == "Bearer u")
    return Caller{"token:aud", Role::kAuditor, false, ""};
  if (h && *h == "Bearer g")
    return Caller{"agent:web1", Role::kAgent, false, "ag1"};
  return ErrorJson(401, "authentication required");
}

Request As(Request r, const char* who) {
  r.headers.emplace_back("authorization", std::string("Bearer ") + who);
  return r;
}

struct Audited {
  std::string who, what;
  int status;
};

class RouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ApiOptions o;
    o.version = "9.9";
    o.authenticate = TestAuth;
    o.audit = [this](const Caller& c, const Request& r, const Route& route,
                     int status) {
      audited_.push_back({c.name, r.method + " " + route.path, status});
    };
    std::vector<Route> routes = CoreRoutes(o);
    routes.push_back(
        {"GET", "/api/v1/jobs/{id}/log", Access::kRole, Role::kAuditor,
         "a job's log", nlohmann::json::object(), [](const ApiCall& c) {
           return OkJson(
               {{"id", *c.Param("id")},
                {"after", c.Query("after") ? *c.Query("after") : "-"}});
         }});
    routes.push_back({"POST", "/api/v1/jobs/{id}/cancel", Access::kRole,
                      Role::kOperator, "cancel a job", nlohmann::json::object(),
                      [](const ApiCall&) {
                        return OkJson({{"ok", true}});
                      }});
    routes.push_back({"DELETE", "/api/v1/repositories/{name}", Access::kRole,
                      Role::kAdmin, "forget a repository",
                      nlohmann::json::object(),
                      [](const ApiCall&) { return ErrorJson(409, "in use"); }});
    routes.push_back({"GET", "/api/v1/agent/points", Access::kRole,
                      Role::kAgent, "an agent's own points",
                      nlohmann::json::object(), [](const ApiCall& c) {
                        return OkJson({{"agent", c.caller.agent_id}});
                      }});
    auto h = MakeApiHandler(routes, o);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    handler_ = *h;
  }
  Handler handler_;
  std::vector<Audited> audited_;
};

TEST_F(RouterTest, PathParametersAndDecodedQuery) {
  Response r = handler_(As(Req("GET", "/api/v1/jobs/42/log?after=7%20x"), "u"));
  EXPECT_EQ(r.status, 200);
  auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["id"], "42");
  EXPECT_EQ(j["after"], "7 x");
  // A parameter matches one segment, never an empty one or two.
  EXPECT_EQ(handler_(As(Req("GET", "/api/v1/jobs//log"), "u")).status, 404);
  EXPECT_EQ(handler_(As(Req("GET", "/api/v1/jobs/1/2/log"), "u")).status, 404);
  EXPECT_EQ(handler_(As(Req("GET", "/api/v1/jobs/42/log/"), "u")).status, 404);
}

TEST_F(RouterTest, UnauthenticatedLearnsNothing) {
  // A real route, an unknown path and a wrong method all answer 401.
  EXPECT_EQ(handler_(Req("GET", "/api/v1/jobs/1/log")).status, 401);
  EXPECT_EQ(handler_(Req("GET", "/api/v1/no/such")).status, 401);
  EXPECT_EQ(handler_(Req("PUT", "/api/v1/jobs/1/cancel")).status, 401);
  EXPECT_EQ(handler_(As(Req("GET", "/api/v1/jobs/1/log"), "x")).status, 401);
  // Authenticated: the truth.
  EXPECT_EQ(handler_(As(Req("GET", "/api/v1/no/such"), "u")).status, 404);
  Response r = handler_(As(Req("PUT", "/api/v1/jobs/1/cancel"), "u"));
  EXPECT_EQ(r.status, 405);
  // Public routes need nothing; a wrong method on one is 405 for anyone.
  EXPECT_EQ(handler_(Req("GET", "/api/v1/health")).status, 200);
  EXPECT_EQ(handler_(Req("DELETE", "/api/v1/health")).status, 405);
  EXPECT_EQ(handler_(Req("GET", "/api/v1/openapi.json")).status, 200);
}

TEST_F(RouterTest, RolesAreOrdered) {
  Request cancel = Req("POST", "/api/v1/jobs/3/cancel");
  Response r = handler_(As(cancel, "u"));
  EXPECT_EQ(r.status, 403);
  EXPECT_THAT(r.body, HasSubstr("operator"));
  EXPECT_EQ(handler_(As(cancel, "o")).status, 200);
  EXPECT_EQ(handler_(As(cancel, "a")).status, 200);
  Request del = Req("DELETE", "/api/v1/repositories/main");
  EXPECT_EQ(handler_(As(del, "o")).status, 403);
  EXPECT_EQ(handler_(As(del, "a")).status, 409);
}

TEST_F(RouterTest, EveryStateChangingRequestIsAudited) {
  (void)handler_(As(Req("POST", "/api/v1/jobs/3/cancel"), "u"));
  (void)handler_(As(Req("DELETE", "/api/v1/repositories/main"), "a"));
  (void)handler_(As(Req("GET", "/api/v1/jobs/3/log"), "a"));  // a read
  (void)handler_(Req("POST", "/api/v1/jobs/3/cancel"));       // no one
  ASSERT_EQ(audited_.size(), 2u);
  EXPECT_EQ(audited_[0].who, "token:aud");
  EXPECT_EQ(audited_[0].what, "POST /api/v1/jobs/{id}/cancel");
  EXPECT_EQ(audited_[0].status, 403);
  EXPECT_EQ(audited_[1].who, "admin");
  EXPECT_EQ(audited_[1].status, 409);
}

TEST_F(RouterTest, BadQueryEscapeIs400) {
  EXPECT_EQ(
      handler_(As(Req("GET", "/api/v1/jobs/1/log?after=%zz"), "u")).status,
      400);
}

TEST_F(RouterTest, DeeplyNestedJsonBodiesAreRefusedBeforeTheRoute) {
  // Copying or dumping such a value would recurse once per level.
  Request deep = Req("POST", "/api/v1/jobs/3/cancel");
  deep.body = std::string(100000, '[') + std::string(100000, ']');
  Response r = handler_(As(deep, "a"));
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.body, HasSubstr("deeper than 64 levels"));
  // Brackets inside strings do not count; 64 levels are fine.
  Request ok = Req("POST", "/api/v1/jobs/3/cancel");
  ok.body = "{\"a\": \"" + std::string(1000, '[') + "\"}";
  EXPECT_EQ(handler_(As(ok, "a")).status, 200);
  ok.body = std::string(64, '[') + std::string(64, ']');
  EXPECT_EQ(handler_(As(ok, "a")).status, 200);
  // A binary upload is not JSON.
  Request bin = Req("POST", "/api/v1/jobs/3/cancel");
  bin.body = std::string(1000, '[');
  bin.headers.emplace_back("content-type", "application/octet-stream");
  EXPECT_EQ(handler_(As(bin, "a")).status, 200);
}

TEST(RouteTable, RefusesRoutesWithoutAccessRuleOrRoleOrTwice) {
  auto h = [](const ApiCall&) { return OkJson({}); };
  ApiOptions o;
  EXPECT_THAT(MakeApiHandler(
                  {{"GET", "/x", Access::kUnset, Role::kNone, "x", {}, h}}, o)
                  .status(),
              StatusIs(Code::kInvalidArgument, HasSubstr("no access rule")));
  EXPECT_THAT(
      MakeApiHandler({{"GET", "/x", Access::kRole, Role::kNone, "x", {}, h}}, o)
          .status(),
      StatusIs(Code::kInvalidArgument, HasSubstr("needs a role")));
  Route r{"GET", "/x", Access::kRole, Role::kAdmin, "x", {}, h};
  EXPECT_THAT(MakeApiHandler({r, r}, o).status(),
              StatusIs(Code::kInvalidArgument, HasSubstr("twice")));
}

TEST(OpenApi, MadeFromTheTable) {
  auto h = [](const ApiCall&) { return OkJson({}); };
  std::vector<Route> routes = {
      {"GET",
       "/api/v1/health",
       Access::kPublic,
       Role::kNone,
       "liveness",
       {},
       h},
      {"POST",
       "/api/v1/jobs/{id}/cancel",
       Access::kRole,
       Role::kOperator,
       "cancel a job",
       {},
       h},
  };
  nlohmann::json doc = OpenApiDocument(routes, "1.2");
  EXPECT_EQ(doc["openapi"], "3.0.3");
  EXPECT_EQ(doc["info"]["version"], "1.2");
  auto& cancel = doc["paths"]["/api/v1/jobs/{id}/cancel"]["post"];
  EXPECT_EQ(cancel["summary"], "cancel a job");
  EXPECT_EQ(cancel["x-haven-role"], "operator");
  EXPECT_EQ(cancel["parameters"][0]["name"], "id");
  EXPECT_EQ(cancel["parameters"][0]["in"], "path");
  EXPECT_TRUE(cancel["responses"].contains("403"));
  auto& health = doc["paths"]["/api/v1/health"]["get"];
  EXPECT_TRUE(health["security"].empty());
  EXPECT_FALSE(health.contains("x-haven-role"));
}

TEST(Roles, NamesRoundTrip) {
  for (Role r : {Role::kAuditor, Role::kOperator, Role::kAdmin})
    EXPECT_EQ(ParseRole(RoleName(r)), r);
  EXPECT_EQ(ParseRole("root"), std::nullopt);
  EXPECT_LT(Role::kAuditor, Role::kOperator);
  EXPECT_LT(Role::kOperator, Role::kAdmin);
}

TEST(Query, DecodesPlusAndPercentRefusesNul) {
  auto q = ParseQuery("a=1&b=x+y&c=%2Fetc%2F&d&a=2");
  ASSERT_TRUE(q.has_value());
  EXPECT_EQ((*q)["a"], "2");
  EXPECT_EQ((*q)["b"], "x y");
  EXPECT_EQ((*q)["c"], "/etc/");
  EXPECT_EQ((*q)["d"], "");
  EXPECT_FALSE(ParseQuery("a=%00").has_value());
  EXPECT_FALSE(ParseQuery("a=%4").has_value());
}

TEST_F(RouterTest, AgentsCallOnlyAgentRoutesAndOnlyAgentsCallThem) {
  Response r = handler_(As(Req("GET", "/api/v1/agent/points"), "g"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(nlohmann::json::parse(r.body)["agent"], "ag1");
  // An agent is below every human role, whatever the number says.
  EXPECT_EQ(handler_(As(Req("GET", "/api/v1/jobs/1/log"), "g")).status, 403);
  EXPECT_EQ(
      handler_(As(Req("DELETE", "/api/v1/repositories/main"), "g")).status,
      403);
  // Not even an admin speaks as an agent.
  EXPECT_EQ(handler_(As(Req("GET", "/api/v1/agent/points"), "a")).status, 403);
  EXPECT_EQ(handler_(As(Req("GET", "/api/v1/agent/points"), "u")).status, 403);
}

}  // namespace
}  // namespace haven::appliance
