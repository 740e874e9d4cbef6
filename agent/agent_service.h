// `haven agent run`: an enrolled agent's service loop (docs/agents.md,
// "Jobs for agents"). The agent opens every connection itself:
//
//   hello  POST /api/v1/agent/hello (records the contact, checks the
//          credential)
//   loop   GET /api/v1/agent/jobs/next?wait=25 (a long poll)
//            204            ask again (after a pause when the appliance
//                           answered at once: it has too many polls open)
//            200 a job      "file-backup": BackupFilesToAppliance, progress
//                           at most once a second (and at least every 30 s)
//                           to /progress, then /result with the outcome and
//                           the point, or the error sentence
//   A transport failure or an appliance answering 5xx: reconnect with
//   exponential backoff and jitter (1 s .. 60 s); one log line per change
//   of state, not per retry. 401 (revoked, or a credential the appliance
//   no longer knows): the sentence, and the loop ends with
//   PermissionDenied. A /progress answered 409 "cancelled": the backup
//   stops (nothing is committed) and no result is sent.
//
// The loop runs one job at a time and asks for work only when idle; the
// appliance counts on it (agent_jobs.h: an agent that asks again without
// reporting its job has lost it).
#ifndef HAVEN_AGENT_AGENT_SERVICE_H_
#define HAVEN_AGENT_AGENT_SERVICE_H_

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "agent/appliance_client.h"
#include "agent/upload_sink.h"
#include "base/progress.h"
#include "base/status.h"

namespace haven::agent {

struct AgentServiceOptions {
  // Cancelled: the loop ends (a running backup stops at its next check and
  // the appliance is told). SIGTERM in `haven agent run`.
  CancelToken cancel;
  // One line per event (connected, lost, job started and ended); unset:
  // nothing is logged.
  std::function<void(const std::string&)> log;
  std::string hostname, version;  // sent with hello
  int poll_wait_seconds = 25;     // asked of the appliance (1..55)
  double poll_timeout_seconds = 40;
  double min_backoff_seconds = 1, max_backoff_seconds = 60;
  double progress_interval_seconds = 1;
  double heartbeat_seconds = 30;  // progress sent at least this often
  // A poll answered sooner than this was refused for load: wait before
  // the next.
  double busy_pause_seconds = 5;
  int result_attempts = 10;  // tries to deliver a job's result
  // The hypervisor a host agent backs up and restores onto.
  std::string libvirt_uri = "qemu:///system";
  // Task kinds beyond "file-backup" this agent runs (a host agent's
  // "vm-backup", "vm-restore-plan", "vm-restore": agent_vm_tasks.h), by
  // kind. A kind not here is answered "failed: this agent does not run it".
  std::map<std::string,
           std::function<Result<nlohmann::json>(
               int64_t job, const nlohmann::json& params,
               const ProgressFn& progress, const CancelToken& cancel)>>
      tasks;
};

// What the loop needs of the appliance: ApplianceClient's GET and POST of
// JSON (tests give a fake). Transport failures are errors, HTTP statuses
// replies, as ApplianceClient has them.
class AgentTransport {
 public:
  virtual ~AgentTransport() = default;
  virtual Result<HttpReply> Get(std::string_view path,
                                double timeout_seconds) = 0;
  virtual Result<HttpReply> PostJson(std::string_view path,
                                     std::string_view body,
                                     double timeout_seconds) = 0;
};

// Runs a job's file backup into the appliance (BackupFilesToAppliance).
using AgentBackupRunner =
    std::function<Result<AgentBackupResult>(const FileBackupOptions&)>;

// The loop of the file comment. `control` carries hello, polls and
// results; `reports` the progress a reporter thread sends while a backup
// runs (a second connection, so the two never share a client). Returns OK
// when options.cancel ended it, PermissionDenied with the appliance's
// sentence when the agent was refused (revoked).
Status RunAgentLoop(AgentTransport& control, AgentTransport& reports,
                    const AgentBackupRunner& backup,
                    const AgentServiceOptions& options);

// `haven agent run`: the identity in `state_dir` (LoadIdentity), two
// ApplianceClients pinned to it, and RunAgentLoop with
// BackupFilesToAppliance. NotFound when the machine is not enrolled.
Status RunAgentService(const std::string& state_dir,
                       const AgentServiceOptions& options);

}  // namespace haven::agent

#endif  // HAVEN_AGENT_AGENT_SERVICE_H_
