// RunAgentService (agent_service.h): the real appliance behind the loop.
#include "agent/agent_service.h"

#include "agent/agent_vm_tasks.h"

namespace haven::agent {
namespace {

class ClientTransport : public AgentTransport {
 public:
  explicit ClientTransport(std::unique_ptr<ApplianceClient> client)
      : client_(std::move(client)) {}
  Result<HttpReply> Get(std::string_view path,
                        double timeout_seconds) override {
    return client_->Get(path, timeout_seconds);
  }
  Result<HttpReply> PostJson(std::string_view path, std::string_view body,
                             double timeout_seconds) override {
    return client_->Post(path, "application/json", body, timeout_seconds);
  }

 private:
  std::unique_ptr<ApplianceClient> client_;
};

}  // namespace

Status RunAgentService(const std::string& state_dir,
                       const AgentServiceOptions& options) {
  HAVEN_ASSIGN_OR_RETURN(AgentIdentity identity, LoadIdentity(state_dir));
  // One client for the backup's uploads and the loop's requests (they
  // take turns), one for the progress reports sent while a backup runs.
  HAVEN_ASSIGN_OR_RETURN(auto client, ApplianceClient::Create(identity));
  HAVEN_ASSIGN_OR_RETURN(auto report_client, ApplianceClient::Create(identity));
  ApplianceClient* uploads = client.get();
  ClientTransport control(std::move(client));
  ClientTransport reports(std::move(report_client));
  if (options.log)
    options.log("agent " + identity.name + " (" + identity.agent_id + ") of " +
                identity.url + ", state in " + state_dir);
  AgentBackupRunner backup = [uploads, &state_dir](const FileBackupOptions& o) {
    return BackupFilesToAppliance(*uploads, state_dir, o);
  };
  // Only a host agent (enrolled with --kind host) runs the VM tasks: a
  // guest's agent answers them "this agent does not run jobs of kind ...".
  AgentServiceOptions o = options;
  if (identity.kind == "host") {
    if (!o.tasks.count("vm-backup"))
      o.tasks["vm-backup"] =
          VmBackupTask(*uploads, state_dir, options.libvirt_uri, options.log);
    if (!o.tasks.count("vm-restore-plan"))
      o.tasks["vm-restore-plan"] =
          VmRestorePlanTask(*uploads, state_dir, options.libvirt_uri);
    if (!o.tasks.count("vm-restore"))
      o.tasks["vm-restore"] =
          VmRestoreTask(*uploads, state_dir, options.libvirt_uri, options.log);
  }
  return RunAgentLoop(control, reports, backup, o);
}

}  // namespace haven::agent
