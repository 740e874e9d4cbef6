// The agent's service loop (agent/agent_service.h) with the real pinned
// client (agent/appliance_client.h) against the real HTTPS server, API
// dispatcher, agent registry, job service and agent routes on loopback:
// an agent-backup job reaches the agent, its point comes back as the job's
// result; a job cancelled on the appliance stops the agent's backup; a
// revoked agent's loop ends with the appliance's sentence. The backup
// itself is a stand-in (upload_sink_test covers uploads).
#include <future>
#include <mutex>
#include <thread>

#include "agent/agent_service.h"
#include "appliance/agent_jobs.h"
#include "appliance/agents.h"
#include "appliance/certificate.h"
#include "appliance/https_server.h"
#include "appliance/job_service.h"
#include "appliance/routes.h"
#include "tests/unit/test_util.h"

namespace haven::appliance {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

class ClientTransport : public agent::AgentTransport {
 public:
  explicit ClientTransport(std::unique_ptr<agent::ApplianceClient> c)
      : c_(std::move(c)) {}
  Result<agent::HttpReply> Get(std::string_view path, double t) override {
    return c_->Get(path, t);
  }
  Result<agent::HttpReply> PostJson(std::string_view path,
                                    std::string_view body, double t) override {
    return c_->Post(path, "application/json", body, t);
  }

 private:
  std::unique_ptr<agent::ApplianceClient> c_;
};

JobRecord Ended(JobService& jobs, int64_t id) {
  for (int i = 0; i < 1000; ++i) {
    auto r = jobs.Get(id);
    if (r.ok() && r->state != JobState::kQueued &&
        r->state != JobState::kRunning)
      return *r;
    std::this_thread::sleep_for(20ms);
  }
  ADD_FAILURE() << "job " << id << " did not end";
  return {};
}

TEST(AgentWireTest, AJobGoesToTheAgentAndItsPointComesBack) {
  testing_util::TempDir dir;
  auto db = StateDb::Open(dir.Sub("havend.db"));
  ASSERT_TRUE(db.ok());
  ApplianceConfig config;
  config.repositories.push_back({"main", "/nonexistent", ""});
  AgentRegistry registry(**db);
  EnrollmentRequest er;
  er.name = "web1";
  er.created_by = "admin";
  er.repository = "main";
  auto enrollment = registry.CreateEnrollment(er);
  ASSERT_TRUE(enrollment.ok()) << enrollment.status().ToString();
  auto enrolled = registry.Enroll(enrollment->token, "web1", "guest", "web1",
                                  "0.1.0", "127.0.0.1");
  ASSERT_TRUE(enrolled.ok()) << enrolled.status().ToString();
  const std::string agent_id = enrolled->agent.id;

  AgentDispatchOptions o;
  o.lookup = LookupIn(registry);
  AgentDispatch dispatch(o);
  auto jobs = SqlJobService::Create(**db, {});
  ASSERT_TRUE(jobs.ok());
  RegisterAgentJobKinds(**jobs, dispatch);
  (*jobs)->Start();
  Services s;
  s.config = &config;
  s.jobs = jobs->get();
  s.agents = &registry;
  s.agent_dispatch = &dispatch;
  ApiOptions api;
  api.authenticate = [&registry](
                         const Request& req, bool,
                         const std::string*) -> std::variant<Caller, Response> {
    const std::string* h = req.Header("authorization");
    if (!h || h->rfind("Bearer ", 0) != 0)
      return ErrorJson(401, "authentication required");
    auto caller = registry.Authenticate(h->substr(7));
    if (!caller.ok()) return ErrorJson(401, caller.status().message());
    if (!*caller) return ErrorJson(401, "unknown credential");
    return **caller;
  };
  std::vector<Route> routes = AgentJobRoutes(s);
  for (Route& r : AgentAdminRoutes(s)) routes.push_back(std::move(r));
  auto handler = MakeApiHandler(routes, api);
  ASSERT_TRUE(handler.ok()) << handler.status().ToString();
  auto cert = LoadOrCreateCertificate(dir.path(), "localhost");
  ASSERT_TRUE(cert.ok());
  HttpsServerOptions so;
  so.listen = {"127.0.0.1", 0};
  so.log = [](std::string_view) {};
  auto server = HttpsServer::Start(so, *cert, *handler);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  std::string url = "https://127.0.0.1:" + std::to_string((*server)->port());
  auto c1 = agent::ApplianceClient::Create(url, cert->fingerprint,
                                           enrolled->credential);
  auto c2 = agent::ApplianceClient::Create(url, cert->fingerprint,
                                           enrolled->credential);
  ASSERT_TRUE(c1.ok() && c2.ok());
  ClientTransport control(std::move(*c1)), reports(std::move(*c2));

  agent::AgentServiceOptions ao;
  ao.poll_wait_seconds = 1;
  ao.progress_interval_seconds = 0.05;
  ao.min_backoff_seconds = 0.05;
  ao.max_backoff_seconds = 0.1;
  std::vector<std::string> log;
  std::mutex mu;
  ao.log = [&](const std::string& l) {
    std::lock_guard lock(mu);
    log.push_back(l);
  };
  std::atomic<bool> hold{false};
  agent::AgentBackupRunner backup = [&](const agent::FileBackupOptions& f)
      -> Result<agent::AgentBackupResult> {
    for (int i = 0; i < 20; ++i) {
      Progress p;
      p.done_bytes = i;
      p.total_bytes = 20;
      p.item = f.paths.at(0);
      f.progress(p);
      std::this_thread::sleep_for(10ms);
    }
    // The second job runs until the appliance cancels it.
    for (int i = 0; hold && i < 1000 && !f.cancel.cancelled(); ++i)
      std::this_thread::sleep_for(10ms);
    if (f.cancel.cancelled()) return Cancelled("the backup was cancelled");
    agent::AgentBackupResult r;
    r.files.manifest.id = "abcd0123abcd0123";
    r.files.bytes_read = 5;
    return r;
  };
  auto loop = std::async(std::launch::async, [&] {
    return agent::RunAgentLoop(control, reports, backup, ao);
  });

  JobSpec spec;
  spec.kind = "agent-backup";
  spec.repository = "main";
  spec.params = {{"agent", "web1"}, {"paths", {"/etc"}}};
  auto id = (*jobs)->Submit(spec);
  ASSERT_TRUE(id.ok());
  JobRecord r = Ended(**jobs, *id);
  EXPECT_EQ(r.state, JobState::kSucceeded) << r.outcome.error;
  EXPECT_EQ(r.outcome.result["point"], "abcd0123abcd0123");
  EXPECT_EQ(r.outcome.result["agent_id"], agent_id);

  hold = true;
  auto id2 = (*jobs)->Submit(spec);
  ASSERT_TRUE(id2.ok());
  // Cancel once the agent reported progress (the job has a task taken).
  for (int i = 0; i < 500; ++i) {
    auto rec = (*jobs)->Get(*id2);
    if (rec.ok() && rec->progress && rec->progress->done_bytes > 0) break;
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE((*jobs)->Cancel(*id2, "token:op").ok());
  EXPECT_EQ(Ended(**jobs, *id2).state, JobState::kCancelled);

  auto logged = [&](const std::string& text) {
    std::lock_guard lock(mu);
    for (const auto& l : log)
      if (l.find(text) != std::string::npos) return true;
    return false;
  };
  for (int i = 0; i < 500 && !logged("cancelled on the appliance"); ++i)
    std::this_thread::sleep_for(10ms);
  // Revoked: the loop ends at its next request with the sentence.
  ASSERT_TRUE(registry.Revoke(agent_id).ok());
  ASSERT_EQ(loop.wait_for(30s), std::future_status::ready);
  Status end = loop.get();
  EXPECT_EQ(end.code(), Code::kPermissionDenied) << end.ToString();
  EXPECT_THAT(end.message(), HasSubstr("revoked"));
  EXPECT_TRUE(logged("connected to the appliance as agent web1"));
  EXPECT_TRUE(logged("succeeded, point abcd0123abcd0123"));
  EXPECT_TRUE(logged("cancelled on the appliance"));
  dispatch.Shutdown();
  (*jobs)->Stop();
  (*server)->Stop();
}

}  // namespace
}  // namespace haven::appliance
