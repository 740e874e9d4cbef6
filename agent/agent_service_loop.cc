// RunAgentLoop (agent_service.h). Kept apart from RunAgentService so that
// its tests link without the HTTPS client.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <thread>

#include "agent/agent_service.h"
#include "base/time.h"

namespace haven::agent {
namespace {

using nlohmann::json;

constexpr std::string_view kHello = "/api/v1/agent/hello";
constexpr size_t kMaxWarningsSent = 1000;

void Say(const AgentServiceOptions& o, const std::string& line) {
  if (o.log) o.log(line);
}

// Sleeps `seconds`, waking early when `cancel` fires; false then.
bool Pause(double seconds, const CancelToken& cancel) {
  double end = MonotonicSeconds() + seconds;
  while (!cancel.cancelled()) {
    double left = end - MonotonicSeconds();
    if (left <= 0) return true;
    std::this_thread::sleep_for(
        std::chrono::duration<double>(std::min(left, 0.1)));
  }
  return false;
}

// The {"error": ...} of an answer, else its status.
std::string ErrorOf(const HttpReply& r) {
  json j = json::parse(r.body, nullptr, false);
  if (j.is_object() && j.contains("error") && j["error"].is_string())
    return j["error"].get<std::string>();
  return "the appliance answered HTTP " + std::to_string(r.status);
}

// Exponential backoff with jitter between the options' bounds.
class Backoff {
 public:
  explicit Backoff(const AgentServiceOptions& o)
      : o_(o), next_(o.min_backoff_seconds), rng_(std::random_device{}()) {}
  double Next() {
    std::uniform_real_distribution<double> jitter(0.75, 1.25);
    double d = std::clamp(next_ * jitter(rng_), o_.min_backoff_seconds,
                          o_.max_backoff_seconds);
    next_ = std::min(next_ * 2, o_.max_backoff_seconds);
    return d;
  }
  void Reset() { next_ = o_.min_backoff_seconds; }

 private:
  const AgentServiceOptions& o_;
  double next_;
  std::mt19937 rng_;
};

// The link's state, logged when it changes.
class Link {
 public:
  explicit Link(const AgentServiceOptions& o) : o_(o) {}
  void Up(const std::string& line) {
    if (up_) return;
    up_ = true;
    Say(o_, line);
  }
  void Down(const std::string& why) {
    if (!up_ && !first_) return;
    up_ = first_ = false;
    Say(o_,
        "not connected: " + why + " (retrying every " +
            std::to_string(static_cast<int>(o_.min_backoff_seconds)) + " to " +
            std::to_string(static_cast<int>(o_.max_backoff_seconds)) + " s)");
  }
  bool up() const { return up_; }

 private:
  const AgentServiceOptions& o_;
  bool up_ = false, first_ = true;
};

// The progress of one running job, sent by a thread of its own.
class Reporter {
 public:
  Reporter(AgentTransport& t, int64_t job, const AgentServiceOptions& o,
           CancelToken job_cancel)
      : t_(t),
        o_(o),
        path_("/api/v1/agent/jobs/" + std::to_string(job) + "/progress"),
        job_cancel_(std::move(job_cancel)) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~Reporter() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  void Update(const Progress& p) {
    std::lock_guard lock(mu_);
    latest_ = p;
    changed_ = true;
  }
  bool cancelled_by_appliance() const { return by_appliance_.load(); }

 private:
  void Loop() {
    double last_sent = MonotonicSeconds();
    std::unique_lock lock(mu_);
    while (!stop_) {
      wake_.wait_for(
          lock, std::chrono::duration<double>(o_.progress_interval_seconds));
      if (stop_) break;
      if (o_.cancel.cancelled()) job_cancel_.Cancel();
      double now = MonotonicSeconds();
      if (!changed_ && now - last_sent < o_.heartbeat_seconds) continue;
      json body = {{"done_bytes", latest_.done_bytes},
                   {"total_bytes", latest_.total_bytes},
                   {"item", latest_.item}};
      changed_ = false;
      lock.unlock();
      auto r = t_.PostJson(path_, body.dump(), 30);
      lock.lock();
      last_sent = now;
      // A lost report is not worth a retry: the next one carries the
      // figures again. Only the appliance's "cancelled" matters.
      if (r.ok() && r->status == 409) {
        json j = json::parse(r->body, nullptr, false);
        if (j.is_object() && j.value("cancelled", false)) {
          by_appliance_ = true;
          job_cancel_.Cancel();
        }
      }
    }
  }

  AgentTransport& t_;
  const AgentServiceOptions& o_;
  const std::string path_;
  CancelToken job_cancel_;
  std::mutex mu_;
  std::condition_variable wake_;
  Progress latest_;
  bool changed_ = true, stop_ = false;
  std::atomic<bool> by_appliance_{false};
  std::thread thread_;
};

Result<FileBackupOptions> OptionsOf(const json& p) {
  if (!p.is_object())
    return InvalidArgument("the job's params are not an object");
  FileBackupOptions o;
  auto strings = [&](const char* name,
                     std::vector<std::string>* out) -> Status {
    if (!p.contains(name)) return OkStatus();
    if (!p[name].is_array())
      return InvalidArgument(std::string(name) + " is not a list");
    for (const json& s : p[name]) {
      if (!s.is_string())
        return InvalidArgument(std::string(name) + " holds a non-string");
      out->push_back(s.get<std::string>());
    }
    return OkStatus();
  };
  if (!p.contains("name") || !p["name"].is_string())
    return InvalidArgument("the job names no backup (name)");
  o.name = p["name"].get<std::string>();
  HAVEN_RETURN_IF_ERROR(strings("paths", &o.paths));
  HAVEN_RETURN_IF_ERROR(strings("excludes", &o.excludes));
  if (o.paths.empty()) return InvalidArgument("the job names no paths");
  for (const char* b : {"exclude_caches", "one_file_system"})
    if (p.contains(b) && !p[b].is_boolean())
      return InvalidArgument(std::string(b) + " is not true or false");
  o.exclude_caches = p.value("exclude_caches", false);
  o.one_file_system = p.value("one_file_system", false);
  return o;
}

json ResultOf(const AgentBackupResult& r) {
  const FileBackupResult& f = r.files;
  json warnings = json::array();
  for (size_t i = 0; i < f.warnings.size() && i < kMaxWarningsSent; ++i)
    warnings.push_back(f.warnings[i]);
  return {{"outcome", f.warnings.empty() ? "succeeded" : "partial"},
          {"point", f.manifest.id},
          {"warnings", warnings},
          {"stats",
           {{"entries", f.entries},
            {"files", f.files},
            {"bytes", f.bytes},
            {"files_read", f.files_read},
            {"files_unchanged", f.files_unchanged},
            {"bytes_read", f.bytes_read},
            {"uploaded_chunks", r.uploaded_chunks},
            {"uploaded_bytes", r.uploaded_bytes},
            {"skipped_chunks", r.skipped_chunks}}}};
}

class Loop {
 public:
  Loop(AgentTransport& control, AgentTransport& reports,
       const AgentBackupRunner& backup, const AgentServiceOptions& o)
      : control_(control),
        reports_(reports),
        backup_(backup),
        o_(o),
        backoff_(o),
        link_(o) {}

  Status Run() {
    while (!o_.cancel.cancelled()) {
      if (!link_.up()) {
        HAVEN_RETURN_IF_ERROR(Hello());
        continue;
      }
      HAVEN_RETURN_IF_ERROR(PollOnce());
    }
    Say(o_, "stopped");
    return OkStatus();
  }

 private:
  // A refusal of the credential ends the loop; anything else is retried.
  Status Refused(const HttpReply& r) {
    std::string why = ErrorOf(r);
    Say(o_, "the appliance refused this agent: " + why);
    return PermissionDenied(why);
  }

  void Lost(const std::string& why) {
    link_.Down(why);
    (void)Pause(backoff_.Next(), o_.cancel);
  }

  Status Hello() {
    json body = {{"hostname", o_.hostname}, {"version", o_.version}};
    auto r = control_.PostJson(kHello, body.dump(), 30);
    if (!r.ok()) {
      Lost(r.status().message());
      return OkStatus();
    }
    if (r->status == 401) return Refused(*r);
    if (r->status != 200) {
      Lost(ErrorOf(*r));
      return OkStatus();
    }
    json j = json::parse(r->body, nullptr, false);
    std::string name = j.is_object() ? j.value("name", "") : "";
    backoff_.Reset();
    link_.Up("connected to the appliance as agent " + name +
             "; waiting for jobs");
    return OkStatus();
  }

  Status PollOnce() {
    std::string path = "/api/v1/agent/jobs/next?wait=" +
                       std::to_string(std::clamp(o_.poll_wait_seconds, 1, 55));
    double t0 = MonotonicSeconds();
    auto r = control_.Get(path, o_.poll_timeout_seconds);
    if (!r.ok()) {
      Lost(r.status().message());
      return OkStatus();
    }
    if (r->status == 401) return Refused(*r);
    if (r->status == 204) {
      backoff_.Reset();
      // Answered at once with nothing: too many agents wait (the
      // appliance's Retry-After); ask again after a pause.
      if (MonotonicSeconds() - t0 < o_.poll_wait_seconds / 2.0)
        (void)Pause(o_.busy_pause_seconds, o_.cancel);
      return OkStatus();
    }
    if (r->status != 200) {
      Lost(ErrorOf(*r));
      return OkStatus();
    }
    backoff_.Reset();
    json j = json::parse(r->body, nullptr, false);
    if (!j.is_object() || !j.contains("job") || !j["job"].is_object() ||
        !j["job"].contains("id") || !j["job"]["id"].is_number_integer()) {
      Say(o_, "the appliance handed a job this agent cannot read; ignored");
      return OkStatus();
    }
    return RunJob(j["job"]);
  }

  Status RunJob(const json& job) {
    int64_t id = job["id"].get<int64_t>();
    std::string kind = job.value("kind", "");
    std::string tag = "job " + std::to_string(id);
    const json params = job.value("params", json::object());
    using Runner =
        std::function<Result<json>(const ProgressFn&, const CancelToken&)>;
    Runner runner;
    if (kind == "file-backup") {
      auto opts = OptionsOf(params);
      if (!opts.ok()) {
        Say(o_, tag + ": " + opts.status().message());
        return Deliver(
            id, {{"outcome", "failed"}, {"error", opts.status().message()}});
      }
      std::string paths;
      for (const std::string& p : opts->paths) paths += " " + p;
      Say(o_, tag + ": file backup " + opts->name + " of" + paths);
      runner = [this, o = std::move(*opts)](
                   const ProgressFn& progress,
                   const CancelToken& cancel) mutable -> Result<json> {
        o.cancel = cancel;
        o.progress = progress;
        o.progress_interval = o_.progress_interval_seconds;
        HAVEN_ASSIGN_OR_RETURN(AgentBackupResult r, backup_(o));
        return ResultOf(r);
      };
    } else if (auto it = o_.tasks.find(kind); it != o_.tasks.end()) {
      Say(o_, tag + ": " + kind);
      runner = [fn = it->second, &params, id](const ProgressFn& progress,
                                              const CancelToken& cancel) {
        return fn(id, params, progress, cancel);
      };
    } else {
      Say(o_, tag + ": kind " + kind + " is not one this agent runs");
      return Deliver(id, {{"outcome", "failed"},
                          {"error", "this agent does not run jobs of kind " +
                                        kind + " (haven " + o_.version + ")"}});
    }

    CancelToken job_cancel;
    std::optional<Result<json>> result;
    bool by_appliance = false;
    {
      Reporter reporter(reports_, id, o_, job_cancel);
      if (o_.cancel.cancelled()) job_cancel.Cancel();
      result.emplace(runner(
          [&reporter](const Progress& p) { reporter.Update(p); }, job_cancel));
      by_appliance = reporter.cancelled_by_appliance();
    }
    if (by_appliance) {
      Say(o_, tag + ": cancelled on the appliance; nothing was committed");
      return OkStatus();
    }
    if (!result->ok()) {
      const Status& s = result->status();
      std::string why = s.code() == Code::kCancelled && o_.cancel.cancelled()
                            ? "the agent was stopped during the job; "
                              "nothing was committed"
                            : s.message();
      Say(o_, tag + ": failed: " + why);
      return Deliver(id, {{"outcome", "failed"}, {"error", why}});
    }
    const json& body = **result;
    std::string line = tag + ": " + body.value("outcome", "?");
    if (body.contains("point") && body["point"].is_string() &&
        !body["point"].get<std::string>().empty())
      line += ", point " + body["point"].get<std::string>();
    if (body.contains("error") && body["error"].is_string())
      line += ": " + body["error"].get<std::string>();
    if (body.contains("warnings") && body["warnings"].is_array() &&
        !body["warnings"].empty())
      line += " (" + std::to_string(body["warnings"].size()) + " warnings)";
    Say(o_, line);
    return Deliver(id, body);
  }

  // Sends a job's result, retrying transport failures a few times (while
  // stopping: once). The appliance's refusal of it is logged, not retried.
  Status Deliver(int64_t id, const json& body) {
    std::string path = "/api/v1/agent/jobs/" + std::to_string(id) + "/result";
    Backoff backoff(o_);
    int attempts = o_.cancel.cancelled() ? 1 : std::max(1, o_.result_attempts);
    for (int i = 0; i < attempts; ++i) {
      if (i > 0 && !Pause(backoff.Next(), o_.cancel)) break;
      auto r = control_.PostJson(path, body.dump(), 60);
      if (!r.ok()) continue;
      if (r->status == 401) return Refused(*r);
      if (r->status == 200) return OkStatus();
      if (r->status >= 500) continue;
      Say(o_, "job " + std::to_string(id) +
                  ": the appliance did not take the result: " + ErrorOf(*r));
      return OkStatus();
    }
    Say(o_, "job " + std::to_string(id) +
                ": could not deliver the result to the appliance");
    return OkStatus();
  }

  AgentTransport& control_;
  AgentTransport& reports_;
  const AgentBackupRunner& backup_;
  const AgentServiceOptions& o_;
  Backoff backoff_;
  Link link_;
};

}  // namespace

Status RunAgentLoop(AgentTransport& control, AgentTransport& reports,
                    const AgentBackupRunner& backup,
                    const AgentServiceOptions& options) {
  return Loop(control, reports, backup, options).Run();
}

}  // namespace haven::agent
