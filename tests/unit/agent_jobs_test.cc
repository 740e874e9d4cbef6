// Jobs handed to agents (appliance/agent_jobs.h, routes_agent_jobs.cc):
// the dispatch on its own (who gets a task, long polls and their cap,
// results, the pick-up limit, cancellation, a lost task), the agent-backup
// job kind on a real SqlJobService, and the routes through the real
// dispatcher with a test authenticator (an agent reporting another's job:
// 403).
#include "appliance/agent_jobs.h"

#include <future>
#include <thread>

#include "appliance/job_service.h"
#include "appliance/routes.h"
#include "appliance/schedule_spec.h"
#include "base/time.h"
#include "tests/unit/test_util.h"

namespace haven::appliance {
namespace {

using ::testing::HasSubstr;
using testing_util::TempDir;
using namespace std::chrono_literals;

AgentInfo Agent(const std::string& id, const std::string& name) {
  AgentInfo a;
  a.id = id;
  a.name = name;
  a.kind = "guest";
  return a;
}

AgentTask Task(int64_t job) {
  return {job, "file-backup", {{"name", "web1"}, {"paths", {"/etc"}}}};
}

AgentDispatchOptions Fast() {
  AgentDispatchOptions o;
  o.cancel_check = 10ms;
  return o;
}

TEST(AgentDispatchTest, ATaskGoesOnlyToItsAgent) {
  AgentDispatch d(Fast());
  ASSERT_TRUE(d.Offer(Agent("a1", "web1"), Task(7)).ok());
  auto other = d.NextFor("a2", 100ms);
  EXPECT_FALSE(other.task);
  EXPECT_FALSE(other.busy);
  auto mine = d.NextFor("a1", 100ms);
  ASSERT_TRUE(mine.task);
  EXPECT_EQ(mine.task->job_id, 7);
  EXPECT_EQ(mine.task->kind, "file-backup");
  EXPECT_EQ(mine.task->params["paths"][0], "/etc");
  // Handed out once.
  EXPECT_FALSE(d.NextFor("a1", 50ms).task);
  EXPECT_EQ(d.Offer(Agent("a1", "web1"), Task(7)).code(), Code::kAlreadyExists);
}

TEST(AgentDispatchTest, ALongPollWakesWhenATaskIsOffered) {
  AgentDispatch d(Fast());
  auto poll =
      std::async(std::launch::async, [&] { return d.NextFor("a1", 10s); });
  while (d.waiting_polls() == 0) std::this_thread::sleep_for(1ms);
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(d.Offer(Agent("a1", "web1"), Task(3)).ok());
  auto got = poll.get();
  ASSERT_TRUE(got.task);
  EXPECT_EQ(got.task->job_id, 3);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
}

TEST(AgentDispatchTest, TheResultEndsTheWaitAndProgressIsRelayed) {
  AgentDispatch d(Fast());
  ASSERT_TRUE(d.Offer(Agent("a1", "web1"), Task(7)).ok());
  std::vector<AgentProgress> seen;
  std::mutex mu;
  auto wait = std::async(std::launch::async, [&] {
    return d.WaitForResult(7, CancelToken(), [&](const AgentProgress& p) {
      std::lock_guard lock(mu);
      seen.push_back(p);
    });
  });
  // Reports before the agent took the task are refused.
  EXPECT_EQ(d.Progress("a1", 7, {}).code(), Code::kFailedPrecondition);
  ASSERT_TRUE(d.NextFor("a1", 1s).task);
  EXPECT_EQ(d.Progress("a2", 7, {1, 2, "", ""}).code(),
            Code::kPermissionDenied);
  EXPECT_EQ(d.Progress("a1", 99, {}).code(), Code::kNotFound);
  ASSERT_TRUE(d.Progress("a1", 7, {100, 1000, "/etc/passwd", "hello"}).ok());
  EXPECT_EQ(d.Finish("a2", 7, {"succeeded", "ab", "", {}, {}}).code(),
            Code::kPermissionDenied);
  ASSERT_TRUE(d.Finish("a1", 7, {"succeeded", "abcd", "", {"w"}, {}}).ok());
  auto r = wait.get();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->outcome, "succeeded");
  EXPECT_EQ(r->point, "abcd");
  EXPECT_EQ(r->warnings.size(), 1u);
  std::lock_guard lock(mu);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().done_bytes, 100u);
  EXPECT_EQ(seen.back().message, "hello");
  // The task is gone: a second result is refused.
  EXPECT_EQ(d.Finish("a1", 7, {"succeeded", "abcd", "", {}, {}}).code(),
            Code::kNotFound);
}

TEST(AgentDispatchTest, ATaskNotPickedUpFailsNamingTheAgent) {
  AgentDispatchOptions o = Fast();
  o.pickup_limit = 100ms;
  AgentDispatch d(o);
  AgentInfo web1 = Agent("a1", "web1");
  ASSERT_TRUE(d.Offer(web1, Task(1)).ok());
  auto r = d.WaitForResult(1, CancelToken(), nullptr);
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_THAT(r.status().message(),
              HasSubstr("agent web1 has not asked for work since it was "
                        "enrolled: is `haven agent run` running on it?"));
  // The task is no longer handed out.
  EXPECT_FALSE(d.NextFor("a1", 10ms).task);

  // With a contact the registry knows, the sentence names its time...
  AgentInfo web2 = Agent("a2", "web2");
  web2.last_contact = 1765101600;  // 2025-12-07T10:00:00Z
  ASSERT_TRUE(d.Offer(web2, Task(2)).ok());
  r = d.WaitForResult(2, CancelToken(), nullptr);
  EXPECT_THAT(r.status().message(),
              HasSubstr("agent web2 has not asked for work since "
                        "2025-12-07T10:00:00Z"));
  // ... or of the agent's last poll, when later.
  ASSERT_TRUE(d.Offer(web1, Task(3)).ok());
  r = d.WaitForResult(3, CancelToken(), nullptr);
  EXPECT_THAT(r.status().message(),
              HasSubstr("agent web1 has not asked for work since " +
                        NowIso8601().substr(0, 10)));
}

TEST(AgentDispatchTest, PollsOverTheCapAnswerAtOnce) {
  AgentDispatchOptions o = Fast();
  o.max_waiting_polls = 1;
  AgentDispatch d(o);
  auto first =
      std::async(std::launch::async, [&] { return d.NextFor("a1", 3s); });
  while (d.waiting_polls() == 0) std::this_thread::sleep_for(1ms);
  auto t0 = std::chrono::steady_clock::now();
  auto over = d.NextFor("a2", 3s);
  EXPECT_TRUE(over.busy);
  EXPECT_FALSE(over.task);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 500ms);
  // A task already queued is handed out even over the cap.
  ASSERT_TRUE(d.Offer(Agent("a3", "db"), Task(5)).ok());
  auto queued = d.NextFor("a3", 3s);
  ASSERT_TRUE(queued.task);
  EXPECT_FALSE(queued.busy);
  d.Shutdown();  // ends the first poll now
  EXPECT_FALSE(first.get().task);
}

TEST(AgentDispatchTest, CancellingTellsTheAgent) {
  AgentDispatch d(Fast());
  CancelToken queued_cancel;
  // A queued task is dropped.
  ASSERT_TRUE(d.Offer(Agent("a1", "web1"), Task(1)).ok());
  queued_cancel.Cancel();
  EXPECT_EQ(d.WaitForResult(1, queued_cancel, nullptr).status().code(),
            Code::kCancelled);
  EXPECT_FALSE(d.NextFor("a1", 10ms).task);

  // A task taken: the agent's next report says cancelled.
  ASSERT_TRUE(d.Offer(Agent("a1", "web1"), Task(2)).ok());
  ASSERT_TRUE(d.NextFor("a1", 1s).task);
  CancelToken cancel;
  auto wait = std::async(std::launch::async,
                         [&] { return d.WaitForResult(2, cancel, nullptr); });
  cancel.Cancel();
  EXPECT_EQ(wait.get().status().code(), Code::kCancelled);
  Status p = d.Progress("a1", 2, {1, 2, "", ""});
  EXPECT_EQ(p.code(), Code::kCancelled);
  EXPECT_THAT(p.message(), HasSubstr("job 2 was cancelled"));
  EXPECT_EQ(d.Finish("a1", 2, {"succeeded", "ab", "", {}, {}}).code(),
            Code::kCancelled);
  EXPECT_EQ(d.Progress("a2", 2, {}).code(), Code::kPermissionDenied);
}

TEST(AgentDispatchTest, ATaskLostOrSilentFailsItsJob) {
  AgentDispatchOptions o = Fast();
  AgentDispatch d(o);
  ASSERT_TRUE(d.Offer(Agent("a1", "web1"), Task(1)).ok());
  ASSERT_TRUE(d.NextFor("a1", 1s).task);
  // The agent asks again without reporting job 1: it restarted.
  EXPECT_FALSE(d.NextFor("a1", 10ms).task);
  auto r = d.WaitForResult(1, CancelToken(), nullptr);
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_THAT(r.status().message(),
              HasSubstr("agent web1 asked for new work without reporting"));

  o.silence_limit = 100ms;
  AgentDispatch quiet(o);
  ASSERT_TRUE(quiet.Offer(Agent("a1", "web1"), Task(2)).ok());
  ASSERT_TRUE(quiet.NextFor("a1", 1s).task);
  r = quiet.WaitForResult(2, CancelToken(), nullptr);
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_THAT(r.status().message(), HasSubstr("took the job but sent"));
  // ... and the agent is told to stop.
  EXPECT_EQ(quiet.Progress("a1", 2, {}).code(), Code::kCancelled);
}

TEST(AgentBackupParamsTest, RefusesWhatIsWrong) {
  using nlohmann::json;
  EXPECT_TRUE(
      ValidateAgentBackupParams({{"agent", "web1"}, {"paths", {"/etc"}}}).ok());
  EXPECT_TRUE(ValidateAgentBackupParams({{"agent", "web1"},
                                         {"name", "etc"},
                                         {"paths", {"/etc", "/home"}},
                                         {"excludes", {"*.tmp"}},
                                         {"exclude_caches", true},
                                         {"one_file_system", false}})
                  .ok());
  auto bad = [](const json& p, const std::string& text) {
    Status s = ValidateAgentBackupParams(p);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << p.dump();
    EXPECT_THAT(s.message(), HasSubstr(text)) << p.dump();
  };
  bad({{"paths", {"/etc"}}}, "agent is required");
  bad({{"agent", "web1"}}, "paths is required");
  bad({{"agent", "web1"}, {"paths", json::array()}}, "paths must be a list");
  bad({{"agent", "web1"}, {"paths", {"etc"}}}, "\"etc\" is not an absolute");
  bad({{"agent", "web1"}, {"paths", {"/etc"}}, {"vms", {"x"}}},
      "unknown field \"vms\"");
  bad({{"agent", "web1"}, {"paths", {"/etc"}}, {"exclude_caches", "yes"}},
      "exclude_caches must be true or false");
  bad({{"agent", ""}, {"paths", {"/etc"}}}, "agent must be a string");
  // A VM backup names the VM and takes no file-backup fields.
  EXPECT_TRUE(ValidateAgentBackupParams({{"agent", "h1"}, {"vm", "db1"}}).ok());
  EXPECT_TRUE(ValidateAgentBackupParams(
                  {{"agent", "h1"}, {"vm", "db1"}, {"full", true}})
                  .ok());
  bad({{"agent", "h1"}, {"vm", "db1"}, {"paths", {"/etc"}}},
      "paths is for file backups");
  bad({{"agent", "h1"}, {"vm", "db1"}, {"full", "yes"}},
      "full must be true or false");
  bad({{"agent", "h1"}, {"paths", {"/etc"}}, {"full", true}},
      "full is for VM backups");
}

TEST(AgentBackupParamsTest, AScheduleMayRunIt) {
  EXPECT_TRUE(CheckScheduleParams("agent-backup",
                                  {{"agent", "web1"}, {"paths", {"/etc"}}})
                  .ok());
  Status s = CheckScheduleParams("agent-backup", {{"agent", "web1"}});
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("params: paths is required"));
}

// ------------------------------------------------ job kind and routes

std::variant<Caller, Response> TestAuth(const Request& req, bool,
                                        const std::string*) {
  const std::string* h = req.Header("authorization");
  if (h && *h == "Bearer o")
    return Caller{"token:op", Role::kOperator, false, ""};
  if (h && *h == "Bearer u")
    return Caller{"token:aud", Role::kAuditor, false, ""};
  if (h && *h == "Bearer agentA")
    return Caller{"agent:web1", Role::kAgent, false, "a1"};
  if (h && *h == "Bearer agentB")
    return Caller{"agent:db", Role::kAgent, false, "a2"};
  return ErrorJson(401, "authentication required");
}

class AgentJobRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = StateDb::Open(dir_.Sub("havend.db"));
    ASSERT_TRUE(db.ok());
    db_ = std::move(*db);
    config_.repositories.push_back({"main", "/nonexistent", ""});
    config_.repositories.push_back({"other", "/nonexistent2", ""});
    agents_ = {Agent("a1", "web1"), Agent("a2", "db"), Agent("a3", "old")};
    agents_[2].revoked = 1765101600;
    AgentDispatchOptions o = Fast();
    o.max_waiting_polls = 1;
    o.lookup =
        [this](const std::string& key) -> Result<std::optional<AgentInfo>> {
      for (const AgentInfo& a : agents_)
        if (a.id == key || a.name == key) return std::optional(a);
      return std::optional<AgentInfo>();
    };
    dispatch_ = std::make_unique<AgentDispatch>(o);
    JobServiceOptions jo;
    auto jobs = SqlJobService::Create(*db_, jo);
    ASSERT_TRUE(jobs.ok());
    jobs_ = std::move(*jobs);
    RegisterAgentJobKinds(*jobs_, *dispatch_);
    jobs_->Start();
    services_.config = &config_;
    services_.jobs = jobs_.get();
    services_.agent_dispatch = dispatch_.get();
    ApiOptions api;
    api.authenticate = TestAuth;
    auto handler = MakeApiHandler(AgentJobRoutes(services_), api);
    ASSERT_TRUE(handler.ok()) << handler.status().ToString();
    handler_ = std::move(*handler);
  }
  void TearDown() override {
    dispatch_->Shutdown();
    if (jobs_) jobs_->Stop();
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
  // Waits for job `id` to end.
  JobRecord Ended(int64_t id) {
    for (int i = 0; i < 500; ++i) {
      auto r = jobs_->Get(id);
      if (r.ok() && r->state != JobState::kQueued &&
          r->state != JobState::kRunning)
        return *r;
      std::this_thread::sleep_for(10ms);
    }
    ADD_FAILURE() << "job " << id << " did not end";
    return {};
  }
  std::string LogOf(int64_t id) {
    std::string all;
    auto lines = jobs_->Log(id, 0);
    if (lines.ok())
      for (const auto& [n, text] : *lines) all += text + "\n";
    return all;
  }
  int64_t Queue(const std::string& agent, const std::string& body) {
    Response r = Call("POST", "/api/v1/agents/" + agent + "/backup", "o", body);
    EXPECT_EQ(r.status, 202) << r.body;
    return Body(r).value("job", int64_t{0});
  }

  TempDir dir_;
  std::unique_ptr<StateDb> db_;
  ApplianceConfig config_;
  std::vector<AgentInfo> agents_;
  std::unique_ptr<AgentDispatch> dispatch_;
  std::unique_ptr<SqlJobService> jobs_;
  Services services_;
  Handler handler_;
};

TEST_F(AgentJobRoutesTest, AnAgentRunsItsBackupAndTheJobEndsWithThePoint) {
  int64_t id = Queue("web1", R"({"paths":["/etc"],"excludes":["*.tmp"]})");
  ASSERT_GT(id, 0);
  auto spec = jobs_->Get(id);
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->spec.kind, "agent-backup");
  EXPECT_EQ(spec->spec.repository, "main");  // the default: the first
  EXPECT_EQ(spec->spec.params["agent"], "a1");

  // Agent B has nothing; A gets the task.
  Response none = Call("GET", "/api/v1/agent/jobs/next?wait=1", "agentB");
  EXPECT_EQ(none.status, 204) << none.body;
  Response next = Call("GET", "/api/v1/agent/jobs/next?wait=5", "agentA");
  ASSERT_EQ(next.status, 200) << next.body;
  nlohmann::json job = Body(next)["job"];
  EXPECT_EQ(job["id"], id);
  EXPECT_EQ(job["kind"], "file-backup");
  EXPECT_EQ(job["params"]["name"], "web1");  // defaults to the agent's name
  EXPECT_EQ(job["params"]["paths"], nlohmann::json({"/etc"}));
  EXPECT_EQ(job["params"]["excludes"], nlohmann::json({"*.tmp"}));

  std::string jobs = "/api/v1/agent/jobs/" + std::to_string(id);
  EXPECT_EQ(Call("POST", jobs + "/progress", "agentB",
                 R"({"done_bytes":1,"total_bytes":2})")
                .status,
            403);
  Response p = Call("POST", jobs + "/progress", "agentA",
                    R"({"done_bytes":10,"total_bytes":20,"item":"/etc",)"
                    R"("message":"reading\n/etc"})");
  EXPECT_EQ(p.status, 200) << p.body;
  EXPECT_EQ(
      Call("POST", jobs + "/progress", "agentA", R"({"done_bytes":-1})").status,
      400);
  Response bad = Call("POST", jobs + "/result", "agentA",
                      R"({"outcome":"fine","point":"ab"})");
  EXPECT_EQ(bad.status, 400);
  EXPECT_THAT(bad.body, HasSubstr("outcome must be"));
  EXPECT_EQ(
      Call("POST", jobs + "/result", "agentA", R"({"outcome":"succeeded"})")
          .status,
      400);  // no point
  // Agent B posting A's job result: refused, and A's job goes on.
  Response theirs = Call("POST", jobs + "/result", "agentB",
                         R"({"outcome":"failed","error":"x"})");
  EXPECT_EQ(theirs.status, 403) << theirs.body;
  Response done = Call("POST", jobs + "/result", "agentA",
                       R"({"outcome":"succeeded","point":"0123abcd0123abcd",)"
                       R"("stats":{"bytes_read":300,"uploaded_bytes":100}})");
  EXPECT_EQ(done.status, 200) << done.body;

  JobRecord r = Ended(id);
  EXPECT_EQ(r.state, JobState::kSucceeded) << r.outcome.error;
  EXPECT_EQ(r.outcome.result["point"], "0123abcd0123abcd");
  EXPECT_EQ(r.outcome.result["agent"], "web1");
  ASSERT_EQ(r.outcome.items.size(), 1u);
  EXPECT_EQ(r.outcome.items[0].name, "web1");
  EXPECT_EQ(r.outcome.items[0].outcome, "ok");
  EXPECT_EQ(r.outcome.items[0].read_bytes, 300u);
  std::string log = LogOf(id);
  EXPECT_THAT(log, HasSubstr("committed point 0123abcd0123abcd"));
  EXPECT_THAT(log, HasSubstr("web1: reading /etc"));  // one line
  // The job has ended: later reports are refused.
  EXPECT_EQ(Call("POST", jobs + "/progress", "agentA", "{}").status, 404);
}

TEST_F(AgentJobRoutesTest, OnlyAHostAgentBacksUpAVm) {
  // web1 is a guest agent: the job fails in words, nothing is offered.
  int64_t id = Queue("web1", R"({"vm":"db1"})");
  ASSERT_GT(id, 0);
  JobRecord r = Ended(id);
  EXPECT_EQ(r.state, JobState::kFailed);
  EXPECT_THAT(r.outcome.error, HasSubstr("only a host agent"));
  EXPECT_EQ(Call("GET", "/api/v1/agent/jobs/next?wait=1", "agentA").status,
            204);
}

TEST_F(AgentJobRoutesTest, PartialAndFailedOutcomes) {
  int64_t id = Queue("a2", R"({"paths":["/var"],"name":"var"})");
  Response next = Call("GET", "/api/v1/agent/jobs/next?wait=5", "agentB");
  ASSERT_EQ(next.status, 200);
  std::string jobs = "/api/v1/agent/jobs/" + std::to_string(id);
  ASSERT_EQ(Call("POST", jobs + "/result", "agentB",
                 R"({"outcome":"partial","point":"ee","warnings":)"
                 R"(["/var/x: permission denied"]})")
                .status,
            200);
  JobRecord r = Ended(id);
  EXPECT_EQ(r.state, JobState::kPartial);
  EXPECT_THAT(r.outcome.error, HasSubstr("with 1 entries it could not read"));
  EXPECT_THAT(LogOf(id), HasSubstr("warning: /var/x: permission denied"));

  id = Queue("db", R"({"paths":["/var"]})");
  ASSERT_EQ(Call("GET", "/api/v1/agent/jobs/next?wait=5", "agentB").status,
            200);
  jobs = "/api/v1/agent/jobs/" + std::to_string(id);
  ASSERT_EQ(Call("POST", jobs + "/result", "agentB",
                 R"({"outcome":"failed","error":"/var does not exist"})")
                .status,
            200);
  r = Ended(id);
  EXPECT_EQ(r.state, JobState::kFailed);
  EXPECT_EQ(r.outcome.error, "agent db: /var does not exist");
}

TEST_F(AgentJobRoutesTest, ACancelledJobAnswers409Cancelled) {
  int64_t id = Queue("web1", R"({"paths":["/etc"]})");
  ASSERT_EQ(Call("GET", "/api/v1/agent/jobs/next?wait=5", "agentA").status,
            200);
  // The job runs (its executor waits for the agent) before it is cancelled.
  for (int i = 0; i < 500 && jobs_->Get(id)->state != JobState::kRunning; ++i)
    std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(jobs_->Cancel(id, "token:op").ok());
  EXPECT_EQ(Ended(id).state, JobState::kCancelled);
  Response p =
      Call("POST", "/api/v1/agent/jobs/" + std::to_string(id) + "/progress",
           "agentA", R"({"done_bytes":1})");
  EXPECT_EQ(p.status, 409);
  EXPECT_EQ(Body(p)["cancelled"], true);
}

TEST_F(AgentJobRoutesTest, RolesAndRefusals) {
  // Humans cannot poll; agents cannot queue backups.
  EXPECT_EQ(Call("GET", "/api/v1/agent/jobs/next?wait=1", "o").status, 403);
  EXPECT_EQ(Call("GET", "/api/v1/agent/jobs/next?wait=1", "").status, 401);
  EXPECT_EQ(Call("POST", "/api/v1/agents/web1/backup", "agentA",
                 R"({"paths":["/etc"]})")
                .status,
            403);
  EXPECT_EQ(
      Call("POST", "/api/v1/agents/web1/backup", "u", R"({"paths":["/etc"]})")
          .status,
      403);
  Response unknown = Call("POST", "/api/v1/agents/nobody/backup", "o",
                          R"({"paths":["/etc"]})");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_THAT(unknown.body, HasSubstr("no agent is called"));
  Response revoked =
      Call("POST", "/api/v1/agents/old/backup", "o", R"({"paths":["/etc"]})");
  EXPECT_EQ(revoked.status, 409);
  EXPECT_THAT(revoked.body, HasSubstr("revoked"));
  Response nopaths = Call("POST", "/api/v1/agents/web1/backup", "o", "{}");
  EXPECT_EQ(nopaths.status, 400);
  EXPECT_THAT(nopaths.body, HasSubstr("paths is required"));
  EXPECT_EQ(Call("POST", "/api/v1/agents/web1/backup", "o",
                 R"({"agent":"db","paths":["/etc"]})")
                .status,
            400);
  for (const char* w : {"0", "56", "x"})
    EXPECT_EQ(
        Call("GET", std::string("/api/v1/agent/jobs/next?wait=") + w, "agentA")
            .status,
        400)
        << w;
  EXPECT_EQ(
      Call("POST", "/api/v1/agent/jobs/12/progress", "agentA", "{}").status,
      404);
}

TEST_F(AgentJobRoutesTest, APollOverTheCapAnswers204WithRetryAfter) {
  auto first = std::async(std::launch::async, [&] {
    return Call("GET", "/api/v1/agent/jobs/next?wait=3", "agentB");
  });
  while (dispatch_->waiting_polls() == 0) std::this_thread::sleep_for(1ms);
  auto t0 = std::chrono::steady_clock::now();
  Response r = Call("GET", "/api/v1/agent/jobs/next?wait=3", "agentA");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  EXPECT_EQ(r.status, 204);
  bool retry_after = false;
  for (const auto& [k, v] : r.headers)
    retry_after |= k == "retry-after" && v == "5";
  EXPECT_TRUE(retry_after);
  dispatch_->Shutdown();
  EXPECT_EQ(first.get().status, 204);
}

TEST_F(AgentJobRoutesTest, AJobForAnAgentOfAnotherRepositoryFails) {
  agents_[0].repository = "other";
  // The route queues it into the agent's repository...
  int64_t id = Queue("web1", R"({"paths":["/etc"]})");
  EXPECT_EQ(jobs_->Get(id)->spec.repository, "other");
  dispatch_->Shutdown();
  Ended(id);
  // ... and a schedule naming another one is refused by the job.
  JobSpec spec;
  spec.kind = "agent-backup";
  spec.repository = "main";
  spec.params = {{"agent", "web1"}, {"paths", {"/etc"}}};
  auto other = jobs_->Submit(spec);
  ASSERT_TRUE(other.ok());
  JobRecord r = Ended(*other);
  EXPECT_EQ(r.state, JobState::kFailed);
  EXPECT_THAT(r.outcome.error,
              HasSubstr("stores its points in repository other, not main"));
}

}  // namespace
}  // namespace haven::appliance
