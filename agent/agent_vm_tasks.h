// What a host agent runs for the appliance (docs/agents.md, "Host agents"):
// the task kinds beyond file backups, as AgentServiceOptions::tasks holds
// them. Each gets the job's id and params and answers the body of
// /agent/jobs/{id}/result: {"outcome", "point", "error", "warnings",
// "stats"}.
//
//   vm-backup        {"vm", "full"}: BackupVmToAppliance — the VM's disks
//                    (bitmap-incremental) and configuration into the
//                    appliance; the point is named after the VM
//   vm-restore-plan  {"repository", "point", "request": {"points", "all",
//                    "options"}}: PlanHostRestore on this host, reading the
//                    point through the appliance, and its dry run; stats
//                    {"plan": HostRestorePlanJson, "view":
//                    HostRestoreResultJson, "conflicts"}
//   vm-restore       {"repository", "point", "plan", "options"}: the stored
//                    plan as it was shown (never planned again) through
//                    RestoreHost; stats HostRestoreResultJson
//
// A task that cannot start (libvirt unreachable, bad params) answers
// "failed" with the sentence; a cancelled one returns Cancelled (the loop
// then reports nothing was committed).
#ifndef HAVEN_AGENT_AGENT_VM_TASKS_H_
#define HAVEN_AGENT_AGENT_VM_TASKS_H_

#include <string>

#include "agent/agent_service.h"
#include "agent/appliance_client.h"

namespace haven::agent {

using AgentTask = decltype(AgentServiceOptions::tasks)::mapped_type;

// `client` is the connection uploads and reads go through (shared with the
// loop, which waits while a task runs); `libvirt_uri` the hypervisor.
AgentTask VmBackupTask(ApplianceClient& client, std::string state_dir,
                       std::string libvirt_uri,
                       std::function<void(const std::string&)> log);
// A plan this agent made, remembered in state_dir/plans/ (0600, by the
// SHA-256 of its JSON); CheckPlanIsOurs: PermissionDenied in words unless
// `plan` is one of them, made within the hour.
Status RememberPlan(const std::string& state_dir, const nlohmann::json& plan);
Status CheckPlanIsOurs(const std::string& state_dir,
                       const nlohmann::json& plan);

// The plan task remembers each plan it makes (state_dir/plans/, by the
// SHA-256 of its JSON); the restore task runs only a plan it made within the
// hour, so the appliance cannot hand this host a plan of its own.
AgentTask VmRestorePlanTask(ApplianceClient& client, std::string state_dir,
                            std::string libvirt_uri);
AgentTask VmRestoreTask(ApplianceClient& client, std::string state_dir,
                        std::string libvirt_uri,
                        std::function<void(const std::string&)> log);

}  // namespace haven::agent

#endif  // HAVEN_AGENT_AGENT_VM_TASKS_H_
