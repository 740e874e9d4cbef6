#include "appliance/agent_jobs.h"

#include <algorithm>
#include <set>

#include "base/time.h"

namespace haven::appliance {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// Reports kept for the waiter between two of its wake-ups; more means the
// job thread is stuck, and the oldest are dropped.
constexpr size_t kMaxPendingReports = 64;
// Cancelled tasks remembered for the agent's next report.
constexpr size_t kMaxRememberedCancels = 1024;

int64_t NowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string TimeText(int64_t seconds) {
  return FormatTime(seconds * 1000000000, TimeStyle::kRfc3339Utc);
}

std::string Minutes(std::chrono::milliseconds d) {
  auto m = std::chrono::duration_cast<std::chrono::minutes>(d).count();
  if (m >= 1) return std::to_string(m) + (m == 1 ? " minute" : " minutes");
  auto s = std::chrono::duration_cast<std::chrono::seconds>(d).count();
  return std::to_string(s) + (s == 1 ? " second" : " seconds");
}

}  // namespace

AgentDispatch::AgentDispatch(AgentDispatchOptions options)
    : options_(std::move(options)) {}

AgentDispatch::~AgentDispatch() { Shutdown(); }

Result<std::optional<AgentInfo>> AgentDispatch::FindAgent(
    const std::string& key) const {
  if (!options_.lookup) return std::optional<AgentInfo>();
  return options_.lookup(key);
}

Status AgentDispatch::Offer(const AgentInfo& agent, AgentTask task) {
  std::lock_guard lock(mu_);
  if (shutdown_) return Unavailable("havend is stopping");
  int64_t id = task.job_id;
  if (entries_.count(id))
    return AlreadyExists("job " + std::to_string(id) +
                         " already has a task for an agent");
  Entry e;
  e.agent_id = agent.id;
  e.agent_name = agent.name;
  e.task = std::move(task);
  e.offered = e.heard = Clock::now();
  e.registry_contact = agent.last_contact;
  entries_.emplace(id, std::move(e));
  queues_[agent.id].push_back(id);
  changed_.notify_all();
  return OkStatus();
}

std::string AgentDispatch::LastContactText(const Entry& e) const {
  int64_t last = e.registry_contact;
  if (auto it = last_poll_.find(e.agent_id); it != last_poll_.end())
    last = std::max(last, it->second);
  return last > 0 ? TimeText(last) : "it was enrolled";
}

void AgentDispatch::RememberCancelled(int64_t job_id,
                                      const std::string& agent_id) {
  cancelled_[job_id] = agent_id;
  while (cancelled_.size() > kMaxRememberedCancels)
    cancelled_.erase(cancelled_.begin());
}

Result<AgentResult> AgentDispatch::WaitForResult(
    int64_t job_id, const CancelToken& cancel,
    const std::function<void(const AgentProgress&)>& on_progress) {
  std::unique_lock lock(mu_);
  auto it = entries_.find(job_id);
  if (it == entries_.end())
    return NotFound("job " + std::to_string(job_id) +
                    " has no task for an agent");
  auto drop = [&](Entry& e) {
    if (e.state == State::kQueued) {
      auto& q = queues_[e.agent_id];
      q.erase(std::remove(q.begin(), q.end(), job_id), q.end());
      if (q.empty()) queues_.erase(e.agent_id);
    }
    entries_.erase(job_id);
  };
  for (;;) {
    Entry& e = it->second;
    // Relay the reports without the lock: the job's progress and log
    // callbacks take the job service's locks.
    if (!e.reports.empty() && on_progress) {
      std::deque<AgentProgress> reports;
      reports.swap(e.reports);
      lock.unlock();
      for (const AgentProgress& p : reports) on_progress(p);
      lock.lock();
      it = entries_.find(job_id);
      if (it == entries_.end())
        return NotFound("job " + std::to_string(job_id) + "'s task is gone");
      continue;
    }
    if (e.state == State::kDone) {
      AgentResult r = std::move(e.result);
      entries_.erase(it);
      return r;
    }
    if (e.state == State::kLost) {
      std::string name = e.agent_name;
      entries_.erase(it);
      return FailedPrecondition(
          "agent " + name +
          " asked for new work without reporting the end of this "
          "job: it restarted or lost the job");
    }
    if (cancel.cancelled()) {
      if (e.state == State::kTaken) RememberCancelled(job_id, e.agent_id);
      drop(e);
      return Cancelled("the job was cancelled");
    }
    if (shutdown_) {
      drop(e);
      return Unavailable("havend is stopping");
    }
    auto now = Clock::now();
    if (e.state == State::kQueued && now - e.offered >= options_.pickup_limit) {
      std::string why = "agent " + e.agent_name +
                        " has not asked for work since " + LastContactText(e) +
                        ": is `haven agent run` running on it?";
      drop(e);
      return FailedPrecondition(why);
    }
    if (e.state == State::kTaken && now - e.heard >= options_.silence_limit) {
      std::string why = "agent " + e.agent_name + " took the job but sent " +
                        "nothing for " + Minutes(options_.silence_limit) +
                        ": it may have stopped or lost its connection";
      RememberCancelled(job_id, e.agent_id);
      drop(e);
      return Unavailable(why);
    }
    auto limit = e.state == State::kQueued ? e.offered + options_.pickup_limit
                                           : e.heard + options_.silence_limit;
    changed_.wait_until(lock, std::min(limit, now + options_.cancel_check));
    it = entries_.find(job_id);
    if (it == entries_.end())
      return NotFound("job " + std::to_string(job_id) + "'s task is gone");
  }
}

AgentDispatch::Poll AgentDispatch::NextFor(const std::string& agent_id,
                                           std::chrono::milliseconds wait) {
  std::unique_lock lock(mu_);
  last_poll_[agent_id] = NowSeconds();
  // The agent runs one job at a time and asks only when idle: a task it
  // took and never finished is lost.
  for (auto& [id, e] : entries_)
    if (e.agent_id == agent_id && e.state == State::kTaken) {
      e.state = State::kLost;
      changed_.notify_all();
    }
  auto take = [&]() -> std::optional<AgentTask> {
    auto q = queues_.find(agent_id);
    if (q == queues_.end() || q->second.empty()) return std::nullopt;
    int64_t id = q->second.front();
    q->second.pop_front();
    if (q->second.empty()) queues_.erase(q);
    Entry& e = entries_.at(id);
    e.state = State::kTaken;
    e.heard = Clock::now();
    changed_.notify_all();
    return e.task;
  };
  Poll poll;
  if ((poll.task = take()) || shutdown_) return poll;
  if (waiting_ >= std::max(1, options_.max_waiting_polls)) {
    poll.busy = true;
    return poll;
  }
  ++waiting_;
  auto deadline = Clock::now() + wait;
  while (!shutdown_ && !(poll.task = take())) {
    if (changed_.wait_until(lock, deadline) == std::cv_status::timeout) {
      poll.task = take();
      break;
    }
  }
  --waiting_;
  last_poll_[agent_id] = NowSeconds();
  return poll;
}

Status AgentDispatch::Reportable(const std::string& agent_id, int64_t job_id,
                                 Entry** entry) {
  std::string job = "job " + std::to_string(job_id);
  if (auto c = cancelled_.find(job_id); c != cancelled_.end()) {
    if (c->second != agent_id)
      return PermissionDenied(job + " is not this agent's");
    return Cancelled(job + " was cancelled");
  }
  auto it = entries_.find(job_id);
  if (it == entries_.end())
    return NotFound(job + " is not running on an agent");
  if (it->second.agent_id != agent_id)
    return PermissionDenied(job + " is not this agent's");
  if (it->second.state == State::kQueued)
    return FailedPrecondition(job + " has not been handed to this agent yet");
  if (it->second.state != State::kTaken)
    return FailedPrecondition(job + " has already ended");
  *entry = &it->second;
  return OkStatus();
}

std::optional<AgentTask> AgentDispatch::TaskOf(const std::string& agent_id,
                                               int64_t job_id) const {
  std::lock_guard lock(mu_);
  if (cancelled_.count(job_id)) return std::nullopt;
  auto it = entries_.find(job_id);
  if (it == entries_.end() || it->second.agent_id != agent_id ||
      it->second.state != State::kTaken)
    return std::nullopt;
  return it->second.task;
}

Status AgentDispatch::Progress(const std::string& agent_id, int64_t job_id,
                               AgentProgress progress) {
  std::lock_guard lock(mu_);
  Entry* e = nullptr;
  HAVEN_RETURN_IF_ERROR(Reportable(agent_id, job_id, &e));
  e->heard = Clock::now();
  // Byte counts only matter as the latest; messages are kept in order.
  if (!e->reports.empty() && e->reports.back().message.empty())
    e->reports.back() = std::move(progress);
  else
    e->reports.push_back(std::move(progress));
  while (e->reports.size() > kMaxPendingReports) e->reports.pop_front();
  changed_.notify_all();
  return OkStatus();
}

Status AgentDispatch::Finish(const std::string& agent_id, int64_t job_id,
                             AgentResult result) {
  std::lock_guard lock(mu_);
  Entry* e = nullptr;
  HAVEN_RETURN_IF_ERROR(Reportable(agent_id, job_id, &e));
  e->heard = Clock::now();
  e->result = std::move(result);
  e->state = State::kDone;
  changed_.notify_all();
  return OkStatus();
}

void AgentDispatch::Shutdown() {
  std::lock_guard lock(mu_);
  shutdown_ = true;
  changed_.notify_all();
}

int AgentDispatch::waiting_polls() const {
  std::lock_guard lock(mu_);
  return waiting_;
}

// ------------------------------------------------------ job kind

namespace {

constexpr size_t kMaxPaths = 1000;
constexpr size_t kMaxPathBytes = 4096;

Status Strings(const json& p, const char* name, bool absolute, bool required) {
  if (!p.contains(name)) {
    if (required) return InvalidArgument(std::string(name) + " is required");
    return OkStatus();
  }
  const json& v = p[name];
  if (!v.is_array() || v.size() > kMaxPaths || (required && v.empty()))
    return InvalidArgument(std::string(name) + " must be a list of 1 to " +
                           std::to_string(kMaxPaths) + " strings");
  for (const json& s : v) {
    if (!s.is_string() || s.get_ref<const std::string&>().empty() ||
        s.get_ref<const std::string&>().size() > kMaxPathBytes)
      return InvalidArgument(std::string(name) +
                             " must hold strings of 1 to 4096 bytes");
    const std::string& text = s.get_ref<const std::string&>();
    if (text.find('\0') != std::string::npos)
      return InvalidArgument(std::string(name) + ": " + QuoteUntrusted(text) +
                             " holds a NUL byte");
    if (absolute && text[0] != '/')
      return InvalidArgument(std::string(name) + ": " + QuoteUntrusted(text) +
                             " is not an absolute path");
  }
  return OkStatus();
}

Status Text(const json& p, const char* name, size_t max) {
  if (!p.contains(name)) return OkStatus();
  const json& v = p[name];
  if (!v.is_string() || v.get_ref<const std::string&>().empty() ||
      v.get_ref<const std::string&>().size() > max)
    return InvalidArgument(std::string(name) + " must be a string of 1 to " +
                           std::to_string(max) + " bytes");
  for (unsigned char c : v.get_ref<const std::string&>())
    if (c < 0x20 || c == 0x7f)
      return InvalidArgument(std::string(name) + ": " +
                             QuoteUntrusted(v.get<std::string>()) +
                             " holds a control character");
  return OkStatus();
}

JobOutcome FailedWith(const Status& s) {
  JobOutcome o;
  o.state =
      s.code() == Code::kCancelled ? JobState::kCancelled : JobState::kFailed;
  o.error = s.message();
  return o;
}

uint64_t Figure(const json& stats, const char* name) {
  auto it = stats.find(name);
  if (it == stats.end() || !it->is_number_unsigned()) return 0;
  return it->get<uint64_t>();
}

JobOutcome RunAgentBackup(AgentDispatch& dispatch, const JobSpec& spec,
                          JobContext& ctx) {
  const json& p = spec.params;
  auto found = AgentForJob(dispatch, p.value("agent", ""), spec.repository);
  if (!found.ok()) return FailedWith(found.status());
  const AgentInfo& agent = *found;

  AgentTask task;
  task.job_id = ctx.job_id;
  std::string backup_name;
  if (p.contains("vm")) {
    if (Status host = RequireHostAgent(agent); !host.ok())
      return FailedWith(host);
    // A host agent's VM backup: the VM's name is the backup's.
    task.kind = "vm-backup";
    backup_name = p.at("vm").get<std::string>();
    task.params = {{"vm", backup_name}, {"full", p.value("full", false)}};
  } else {
    task.kind = "file-backup";
    task.params = {{"name", p.value("name", agent.name)},
                   {"paths", p.at("paths")},
                   {"excludes", p.value("excludes", json::array())},
                   {"exclude_caches", p.value("exclude_caches", false)},
                   {"one_file_system", p.value("one_file_system", false)}};
    backup_name = task.params["name"].get<std::string>();
  }
  auto r =
      RunOnAgent(dispatch, agent, std::move(task), ctx, "backup", backup_name);
  if (!r.ok()) return FailedWith(r.status());

  JobOutcome out;
  JobItem item;
  item.name = backup_name;
  item.read_bytes = Figure(r->stats, "bytes_read");
  item.new_bytes = Figure(r->stats, "uploaded_bytes");
  item.stored_bytes = Figure(r->stats, "uploaded_bytes");
  size_t shown = 0;
  for (const std::string& w : r->warnings)
    if (++shown <= 1000) ctx.log("warning: " + w);
  if (r->outcome == "succeeded") {
    out.state = JobState::kSucceeded;
    item.outcome = "ok";
  } else if (r->outcome == "partial") {
    out.state = JobState::kPartial;
    item.outcome = "partial";
    out.error = "agent " + agent.name + " committed point " +
                r->point.substr(0, 8) + " with " +
                std::to_string(r->warnings.size()) +
                (p.contains("vm") ? " warnings" : " entries it could not read");
    item.error = out.error;
  } else {
    out.state = JobState::kFailed;
    item.outcome = "failed";
    out.error = "agent " + agent.name + ": " +
                (r->error.empty() ? "the backup failed" : r->error);
    item.error = out.error;
  }
  if (!r->point.empty())
    ctx.log("agent " + agent.name + " committed point " + r->point);
  out.result = {{"agent", agent.name},
                {"agent_id", agent.id},
                {"name", backup_name},
                {"outcome", r->outcome},
                {"point", r->point.empty() ? json(nullptr) : json(r->point)},
                {"warnings", r->warnings.size()},
                {"stats", r->stats}};
  item.detail = out.result;
  out.read_bytes = item.read_bytes;
  out.new_bytes = item.new_bytes;
  out.stored_bytes = item.stored_bytes;
  out.items.push_back(std::move(item));
  return out;
}

}  // namespace

Result<AgentInfo> AgentForJob(AgentDispatch& dispatch, const std::string& key,
                              const std::string& repository) {
  HAVEN_ASSIGN_OR_RETURN(std::optional<AgentInfo> found,
                         dispatch.FindAgent(key));
  if (!found) return NotFound("no agent is called " + QuoteUntrusted(key));
  const AgentInfo& agent = *found;
  if (agent.revoked)
    return FailedPrecondition("agent " + agent.name + " was revoked on " +
                              TimeText(*agent.revoked) +
                              "; enroll it again to give it work");
  if (!agent.repository.empty() && agent.repository != repository)
    return FailedPrecondition("agent " + agent.name +
                              " stores its points in repository " +
                              agent.repository + ", not " + repository);
  return agent;
}

Status RequireHostAgent(const AgentInfo& agent) {
  if (agent.kind == "host") return OkStatus();
  return FailedPrecondition(
      "agent " + agent.name + " is a " + agent.kind +
      " agent: only a host agent (enrolled with --kind host) backs up VMs "
      "or has VMs restored onto its host");
}

Result<AgentResult> RunOnAgent(AgentDispatch& dispatch, const AgentInfo& agent,
                               AgentTask task, JobContext& ctx,
                               const std::string& phase,
                               const std::string& label) {
  const std::string what = task.kind;
  HAVEN_RETURN_IF_ERROR(dispatch.Offer(agent, std::move(task)));
  ctx.log("waiting for agent " + agent.name + " (" + agent.id +
          ") to ask for work");
  bool started = false;
  double t0 = MonotonicSeconds();
  auto relay = [&](const AgentProgress& r) {
    if (!started) {
      started = true;
      ctx.log("agent " + agent.name + " started the " + what + " of " + label);
    }
    if (!r.message.empty()) ctx.log(agent.name + ": " + r.message);
    if (ctx.progress) {
      haven::Progress ev = ByteProgress(r.done_bytes, r.total_bytes, 0,
                                        MonotonicSeconds() - t0, false);
      ev.phase = phase;
      ev.item = r.item.empty() ? label : r.item;
      ctx.progress(ev);
    }
  };
  return dispatch.WaitForResult(ctx.job_id, ctx.cancel, relay);
}

Status ValidateAgentBackupParams(const json& p) {
  if (!p.is_object()) return InvalidArgument("params must be a JSON object");
  static const std::set<std::string> kFields = {
      "agent",           "name", "paths", "excludes", "exclude_caches",
      "one_file_system", "vm",   "full"};
  for (const auto& [key, value] : p.items())
    if (!kFields.count(key))
      return InvalidArgument("unknown field " + QuoteUntrusted(key) +
                             " in the job's params");
  if (!p.contains("agent"))
    return InvalidArgument("agent is required: the agent's id or name");
  HAVEN_RETURN_IF_ERROR(Text(p, "agent", 255));
  if (p.contains("vm")) {
    // A host agent backs up one of its VMs: no file-backup fields.
    for (const char* f :
         {"name", "paths", "excludes", "exclude_caches", "one_file_system"})
      if (p.contains(f))
        return InvalidArgument(std::string(f) +
                               " is for file backups; a VM backup (vm) "
                               "takes only agent, vm and full");
    HAVEN_RETURN_IF_ERROR(Text(p, "vm", 255));
    if (p.contains("full") && !p["full"].is_boolean())
      return InvalidArgument("full must be true or false");
    return OkStatus();
  }
  if (p.contains("full")) return InvalidArgument("full is for VM backups (vm)");
  HAVEN_RETURN_IF_ERROR(Text(p, "name", 255));
  HAVEN_RETURN_IF_ERROR(Strings(p, "paths", true, true));
  HAVEN_RETURN_IF_ERROR(Strings(p, "excludes", false, false));
  for (const char* b : {"exclude_caches", "one_file_system"})
    if (p.contains(b) && !p[b].is_boolean())
      return InvalidArgument(std::string(b) + " must be true or false");
  return OkStatus();
}

void RegisterAgentJobKinds(JobService& jobs, AgentDispatch& dispatch) {
  AgentDispatch* d = &dispatch;
  jobs.RegisterKind(
      "agent-backup",
      [](const JobSpec& s) { return ValidateAgentBackupParams(s.params); },
      [d](const JobSpec& s, JobContext& ctx) {
        return RunAgentBackup(*d, s, ctx);
      });
}

}  // namespace haven::appliance
