// `haven agent run`'s loop (agent/agent_service.h) against a scripted
// appliance: a job is run and its result delivered; a revoked agent ends
// the loop; an unreachable appliance is retried with one log line per
// change; a job cancelled on the appliance stops the backup and sends no
// result.
#include "agent/agent_service.h"

#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/unit/test_util.h"

namespace haven::agent {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

struct Call {
  std::string method, path, body;
};

// Answers each request with `answer`; records them all. Thread-safe.
class FakeAppliance : public AgentTransport {
 public:
  std::function<Result<HttpReply>(const Call&)> answer;

  Result<HttpReply> Get(std::string_view path, double) override {
    return Record({"GET", std::string(path), ""});
  }
  Result<HttpReply> PostJson(std::string_view path, std::string_view body,
                             double) override {
    return Record({"POST", std::string(path), std::string(body)});
  }
  std::vector<Call> calls() {
    std::lock_guard lock(mu_);
    return calls_;
  }
  std::vector<Call> To(const std::string& suffix) {
    std::vector<Call> out;
    for (const Call& c : calls())
      if (c.path.size() >= suffix.size() &&
          c.path.compare(c.path.size() - suffix.size(), suffix.size(),
                         suffix) == 0)
        out.push_back(c);
    return out;
  }

 private:
  Result<HttpReply> Record(Call c) {
    {
      std::lock_guard lock(mu_);
      calls_.push_back(c);
    }
    return answer(c);
  }
  std::mutex mu_;
  std::vector<Call> calls_;
};

HttpReply Reply(long status, const json& body = nullptr) {
  HttpReply r;
  r.status = status;
  if (!body.is_null()) r.body = body.dump();
  r.content_type = "application/json";
  return r;
}

AgentServiceOptions Options(std::vector<std::string>* log, std::mutex* log_mu) {
  AgentServiceOptions o;
  o.log = [log, log_mu](const std::string& line) {
    std::lock_guard lock(*log_mu);
    log->push_back(line);
  };
  o.hostname = "web1.example";
  o.version = "0.1.0";
  o.min_backoff_seconds = 0.01;
  o.max_backoff_seconds = 0.05;
  o.progress_interval_seconds = 0.02;
  o.busy_pause_seconds = 0.01;
  return o;
}

const json kJob = {{"job",
                    {{"id", 5},
                     {"kind", "file-backup"},
                     {"params",
                      {{"name", "etc"},
                       {"paths", {"/etc", "/home"}},
                       {"excludes", {"*.tmp"}},
                       {"exclude_caches", true},
                       {"one_file_system", false}}}}}};

TEST(AgentServiceTest, RunsAJobAndDeliversItsResult) {
  std::vector<std::string> log;
  std::mutex log_mu;
  AgentServiceOptions o = Options(&log, &log_mu);
  FakeAppliance appliance;
  int polls = 0;
  appliance.answer = [&](const Call& c) -> Result<HttpReply> {
    if (c.path == "/api/v1/agent/hello")
      return Reply(200, {{"agent_id", "a1"}, {"name", "web1"}});
    if (c.path == "/api/v1/agent/jobs/next?wait=25") {
      if (++polls == 1) return Reply(200, kJob);
      o.cancel.Cancel();
      return Reply(204);
    }
    return Reply(200, {{"job", 5}});
  };
  FileBackupOptions seen;
  AgentBackupRunner backup = [&](const FileBackupOptions& f) {
    seen = f;
    Progress p;
    p.done_bytes = 10;
    p.total_bytes = 100;
    p.item = "/etc/passwd";
    f.progress(p);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    AgentBackupResult r;
    r.files.manifest.id = "0123abcd";
    r.files.files = 3;
    r.files.bytes_read = 300;
    r.uploaded_bytes = 120;
    return Result<AgentBackupResult>(r);
  };
  Status s = RunAgentLoop(appliance, appliance, backup, o);
  EXPECT_TRUE(s.ok()) << s.ToString();

  EXPECT_EQ(seen.name, "etc");
  EXPECT_EQ(seen.paths, (std::vector<std::string>{"/etc", "/home"}));
  EXPECT_EQ(seen.excludes, (std::vector<std::string>{"*.tmp"}));
  EXPECT_TRUE(seen.exclude_caches);
  EXPECT_FALSE(seen.one_file_system);
  auto hello = appliance.To("/agent/hello");
  ASSERT_EQ(hello.size(), 1u);
  EXPECT_EQ(json::parse(hello[0].body)["hostname"], "web1.example");
  auto progress = appliance.To("/jobs/5/progress");
  ASSERT_FALSE(progress.empty());
  bool figures = false;
  for (const Call& c : progress)
    figures |= json::parse(c.body)["done_bytes"] == 10 &&
               json::parse(c.body)["item"] == "/etc/passwd";
  EXPECT_TRUE(figures);
  auto result = appliance.To("/jobs/5/result");
  ASSERT_EQ(result.size(), 1u);
  json r = json::parse(result[0].body);
  EXPECT_EQ(r["outcome"], "succeeded");
  EXPECT_EQ(r["point"], "0123abcd");
  EXPECT_EQ(r["stats"]["bytes_read"], 300);
  EXPECT_EQ(r["stats"]["uploaded_bytes"], 120);
  std::lock_guard lock(log_mu);
  std::string all;
  for (const auto& l : log) all += l + "\n";
  EXPECT_THAT(all, HasSubstr("connected to the appliance as agent web1"));
  EXPECT_THAT(all, HasSubstr("job 5: succeeded, point 0123abcd"));
}

TEST(AgentServiceTest, ARevokedAgentStops) {
  std::vector<std::string> log;
  std::mutex log_mu;
  AgentServiceOptions o = Options(&log, &log_mu);
  FakeAppliance appliance;
  int polls = 0;
  appliance.answer = [&](const Call& c) -> Result<HttpReply> {
    if (c.path == "/api/v1/agent/hello") return Reply(200, {{"name", "web1"}});
    if (++polls < 3) return Reply(204);
    return Reply(401, {{"error",
                        "this agent was revoked on 2026-12-07; enroll it "
                        "again with a new token"}});
  };
  AgentBackupRunner backup = [](const FileBackupOptions&) {
    return Result<AgentBackupResult>(Internal("not called"));
  };
  Status s = RunAgentLoop(appliance, appliance, backup, o);
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr("this agent was revoked on 2026-12-07"));
  EXPECT_EQ(polls, 3);
}

TEST(AgentServiceTest, AnUnreachableApplianceIsRetriedAndLoggedOnce) {
  std::vector<std::string> log;
  std::mutex log_mu;
  AgentServiceOptions o = Options(&log, &log_mu);
  FakeAppliance appliance;
  int hellos = 0, polls = 0;
  appliance.answer = [&](const Call& c) -> Result<HttpReply> {
    if (c.path == "/api/v1/agent/hello") {
      if (++hellos <= 4) return Unavailable("connection refused");
      return Reply(200, {{"name", "web1"}});
    }
    ++polls;
    if (polls == 1) return Unavailable("connection reset");
    if (polls == 2) return Reply(503, {{"error", "busy"}});
    o.cancel.Cancel();
    return Reply(204);
  };
  AgentBackupRunner backup = [](const FileBackupOptions&) {
    return Result<AgentBackupResult>(Internal("not called"));
  };
  ASSERT_TRUE(RunAgentLoop(appliance, appliance, backup, o).ok());
  std::lock_guard lock(log_mu);
  int down = 0, up = 0;
  for (const auto& l : log) {
    down += l.rfind("not connected: ", 0) == 0;
    up += l.find("connected to the appliance") != std::string::npos;
  }
  // Four refused hellos: one line. Then up; the reset poll: down again
  // (one line), hello again: up; the 503: down and up once more.
  EXPECT_EQ(down, 3);
  EXPECT_EQ(up, 3);
  EXPECT_EQ(hellos, 7);
}

TEST(AgentServiceTest, AJobCancelledOnTheApplianceStopsTheBackup) {
  std::vector<std::string> log;
  std::mutex log_mu;
  AgentServiceOptions o = Options(&log, &log_mu);
  FakeAppliance appliance;
  int polls = 0;
  appliance.answer = [&](const Call& c) -> Result<HttpReply> {
    if (c.path == "/api/v1/agent/hello") return Reply(200, {{"name", "web1"}});
    if (c.path.find("/progress") != std::string::npos)
      return Reply(409,
                   {{"error", "job 5 was cancelled"}, {"cancelled", true}});
    if (c.path.find("/result") != std::string::npos) return Reply(200);
    if (++polls == 1) return Reply(200, kJob);
    o.cancel.Cancel();
    return Reply(204);
  };
  bool stopped = false;
  AgentBackupRunner backup = [&](const FileBackupOptions& f) {
    for (int i = 0; i < 500 && !f.cancel.cancelled(); ++i) {
      f.progress(Progress());
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    stopped = f.cancel.cancelled();
    return Result<AgentBackupResult>(Cancelled("the backup was cancelled"));
  };
  ASSERT_TRUE(RunAgentLoop(appliance, appliance, backup, o).ok());
  EXPECT_TRUE(stopped);
  EXPECT_TRUE(appliance.To("/jobs/5/result").empty());
}

TEST(AgentServiceTest, AJobOfAnUnknownKindFailsWithASentence) {
  std::vector<std::string> log;
  std::mutex log_mu;
  AgentServiceOptions o = Options(&log, &log_mu);
  FakeAppliance appliance;
  int polls = 0;
  appliance.answer = [&](const Call& c) -> Result<HttpReply> {
    if (c.path == "/api/v1/agent/hello") return Reply(200, {{"name", "web1"}});
    if (c.path.find("/result") != std::string::npos) return Reply(200);
    if (++polls == 1)
      return Reply(200, {{"job", {{"id", 9}, {"kind", "vm-backup"}}}});
    o.cancel.Cancel();
    return Reply(204);
  };
  AgentBackupRunner backup = [](const FileBackupOptions&) {
    return Result<AgentBackupResult>(Internal("not called"));
  };
  ASSERT_TRUE(RunAgentLoop(appliance, appliance, backup, o).ok());
  auto result = appliance.To("/jobs/9/result");
  ASSERT_EQ(result.size(), 1u);
  json r = json::parse(result[0].body);
  EXPECT_EQ(r["outcome"], "failed");
  EXPECT_THAT(r["error"].get<std::string>(),
              HasSubstr("does not run jobs of kind vm-backup"));
}

}  // namespace
}  // namespace haven::agent
