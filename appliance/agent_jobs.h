// Jobs the appliance hands to enrolled agents (docs/agents.md, "Jobs for
// agents"). An agent opens every connection itself, so the appliance cannot
// call it: it keeps a long poll open (GET /api/v1/agent/jobs/next) and
// AgentDispatch hands it what a job executor offered.
//
//   job executor (agent-backup)          agent (haven agent run)
//   Offer(agent, task) ---------------> NextFor(agent, wait) -> the task
//   WaitForResult(job, cancel) <------- Progress(job, ...)   (relayed)
//                               <------- Finish(job, result)
//
// A task no poll took within pickup_limit fails its job, naming the agent
// and when it last asked for work. A task taken but silent (no progress,
// no result) for silence_limit fails too. A cancelled job is dropped from
// the queue; a task already taken is remembered as cancelled, so the
// agent's next progress or result report is refused (the route answers 409
// "cancelled") and the agent stops.
//
// Long polls hold a handler thread each: at most max_waiting_polls wait at
// once; a poll over that gets what is queued for it or, when nothing is,
// an immediate "busy" (the route: 204 with Retry-After).
//
// Thread-safe. Nothing here is persistent: when havend stops, its running
// jobs are marked interrupted (jobs.h) and queued tasks are gone with them.
#ifndef HAVEN_APPLIANCE_AGENT_JOBS_H_
#define HAVEN_APPLIANCE_AGENT_JOBS_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "appliance/agents.h"
#include "appliance/jobs.h"
#include "base/progress.h"
#include "base/status.h"

namespace haven::appliance {

// What an agent is handed: {"id", "kind", "params"} on the wire.
struct AgentTask {
  int64_t job_id = 0;
  std::string kind;  // "file-backup"
  nlohmann::json params = nlohmann::json::object();
};

// POST /agent/jobs/{id}/progress.
struct AgentProgress {
  uint64_t done_bytes = 0, total_bytes = 0;
  std::string item, message;  // message: a log line for the job (may be "")
};

// POST /agent/jobs/{id}/result.
struct AgentResult {
  std::string outcome;  // "succeeded" | "partial" | "failed"
  std::string point;    // the point committed (succeeded, partial)
  std::string error;    // why it failed (failed)
  std::vector<std::string> warnings;
  nlohmann::json stats = nlohmann::json::object();  // the agent's figures
};

// An agent by id or by name; nullopt when there is none. The daemon gives
// LookupIn(registry); tests a map.
using AgentLookup = std::function<Result<std::optional<AgentInfo>>(
    const std::string& id_or_name)>;

inline AgentLookup LookupIn(AgentRegistry& registry) {
  return [&registry](
             const std::string& key) -> Result<std::optional<AgentInfo>> {
    HAVEN_ASSIGN_OR_RETURN(std::optional<AgentInfo> by_id, registry.Get(key));
    if (by_id) return by_id;
    return registry.FindByName(key);
  };
}

struct AgentDispatchOptions {
  // A task not taken by a poll within this fails its job.
  std::chrono::milliseconds pickup_limit{std::chrono::minutes(15)};
  // A task taken, then neither progress nor result for this long: failed.
  std::chrono::milliseconds silence_limit{std::chrono::minutes(15)};
  // Long polls waiting at once (each holds a handler thread); >= 1.
  int max_waiting_polls = 2;
  // How often WaitForResult looks at its cancel token.
  std::chrono::milliseconds cancel_check{200};
  AgentLookup lookup;  // may be unset: every agent is unknown
};

class AgentDispatch {
 public:
  explicit AgentDispatch(AgentDispatchOptions options);
  ~AgentDispatch();  // Shutdown()
  AgentDispatch(const AgentDispatch&) = delete;
  AgentDispatch& operator=(const AgentDispatch&) = delete;

  // The agent `key` names (id or name) through options.lookup.
  Result<std::optional<AgentInfo>> FindAgent(const std::string& key) const;

  // Queues `task` for `agent` (its id and name; last_contact: the
  // registry's, seconds since the epoch; 0: never). AlreadyExists when the
  // job already has a task.
  Status Offer(const AgentInfo& agent, AgentTask task);

  // Waits until the task of `job_id` has a result and returns it. On the
  // way, `on_progress` gets each report (on this thread, never with a lock
  // held). Errors, each a sentence for the job's log:
  //   Cancelled           `cancel` fired (a queued task is dropped, a taken
  //                       one marked cancelled for the agent)
  //   FailedPrecondition  no poll took the task within pickup_limit, or the
  //                       agent asked for new work without finishing it
  //   Unavailable         a taken task was silent for silence_limit, or
  //                       Shutdown() was called
  //   NotFound            no task was offered for the job
  // The task is gone afterwards.
  Result<AgentResult> WaitForResult(
      int64_t job_id, const CancelToken& cancel,
      const std::function<void(const AgentProgress&)>& on_progress);

  struct Poll {
    std::optional<AgentTask> task;
    bool busy = false;  // over max_waiting_polls, and nothing queued
  };
  // The oldest task queued for `agent_id`, waiting up to `wait` for one.
  // A task of this agent taken earlier and not finished is failed first:
  // an agent asks for work only when it runs none, so it lost that one
  // (it restarted).
  Poll NextFor(const std::string& agent_id, std::chrono::milliseconds wait);

  // The agent's reports. NotFound for a job with no task in flight,
  // PermissionDenied for another agent's job, Cancelled ("job N was
  // cancelled") for a cancelled one (the agent must stop),
  // FailedPrecondition for a task not yet taken or already ended.
  Status Progress(const std::string& agent_id, int64_t job_id,
                  AgentProgress progress);
  Status Finish(const std::string& agent_id, int64_t job_id,
                AgentResult result);

  // The task of `job_id` if `agent_id` took it and it is in flight (not
  // queued, finished, lost or cancelled); nullopt otherwise. What routes
  // acting for a running job (a restore's reads) authorize by.
  std::optional<AgentTask> TaskOf(const std::string& agent_id,
                                  int64_t job_id) const;

  // Wakes every poll and waiter; later calls answer at once. Idempotent.
  void Shutdown();

  // Polls waiting now (for tests and /metrics).
  int waiting_polls() const;

 private:
  enum class State { kQueued, kTaken, kDone, kLost };
  struct Entry {
    std::string agent_id, agent_name;
    AgentTask task;
    State state = State::kQueued;
    std::chrono::steady_clock::time_point offered, heard;
    int64_t registry_contact = 0;
    std::deque<AgentProgress> reports;  // not yet relayed (bounded)
    AgentResult result;
  };

  std::string LastContactText(const Entry& e) const;  // mu_ held
  Status Reportable(const std::string& agent_id, int64_t job_id,
                    Entry** entry);  // mu_ held
  void RememberCancelled(int64_t job_id, const std::string& agent_id);

  const AgentDispatchOptions options_;
  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::map<int64_t, Entry> entries_;
  std::map<std::string, std::deque<int64_t>> queues_;  // agent id -> jobs
  std::map<std::string, int64_t> last_poll_;  // agent id -> epoch seconds
  std::map<int64_t, std::string> cancelled_;  // job id -> agent id
  int waiting_ = 0;
  bool shutdown_ = false;
};

// ------------------------------------------------------ job kind
//
//   agent-backup  params {"agent": ID or NAME, "name": backup name (default
//                 the agent's name), "paths": [absolute paths],
//                 "excludes": [globs], "exclude_caches", "one_file_system"};
//                 the agent runs a file backup into the appliance and the
//                 job ends with its outcome and the point's id.
//                 Or {"agent", "vm": a libvirt domain on the agent's host,
//                 "full": read every disk whole}: a host agent backs the VM
//                 up (bitmap-incremental, as `haven backup vm`) into the
//                 appliance; the point is named after the VM.

// OK or InvalidArgument naming the field.
Status ValidateAgentBackupParams(const nlohmann::json& params);

// The agent `key` (id or name) may be given work writing into or reading
// from `repository`: it exists, is not revoked, and is enrolled there (or
// into the default). Errors are sentences for a job's log.
Result<AgentInfo> AgentForJob(AgentDispatch& dispatch, const std::string& key,
                              const std::string& repository);

// FailedPrecondition in words unless `agent` is a host agent (VM backups
// and restores onto its host).
Status RequireHostAgent(const AgentInfo& agent);

// Offers `task` to `agent` and waits for its result; the agent's progress
// becomes the job's (`phase`, items named `label` unless the agent names
// them) and its messages the job's log. Errors as WaitForResult's.
Result<AgentResult> RunOnAgent(AgentDispatch& dispatch, const AgentInfo& agent,
                               AgentTask task, JobContext& ctx,
                               const std::string& phase,
                               const std::string& label);

// Registers "agent-backup" on `jobs`; `dispatch` must outlive it.
void RegisterAgentJobKinds(JobService& jobs, AgentDispatch& dispatch);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_AGENT_JOBS_H_
