// Restoring a VM onto a remote host agent (docs/agents.md, "Restoring a VM
// onto a host agent"). The plan must describe the host it runs on, so the
// host agent makes it and runs it; the appliance keeps it between the two,
// as it keeps its own plans (restore_plans.h), so what runs is what was
// shown:
//
//   POST /restores/vm/plan {"agent", ...}
//     job agent-restore-plan ---- task "vm-restore-plan" ----> host agent
//       {repository, point, request}            PlanHostRestore + dry run
//     stored plan (kind vm,   <--- {"plan", "view", "conflicts"} ----
//     request.agent = the agent's id)
//   POST /restores/vm {"plan"}
//     job restore-vm ------------- task "vm-restore" ---------> host agent
//       {repository, point, plan, options}      the stored plan, not a new
//     the agent's result      <--- HostRestoreResultJson ----- one; run
//
// While either task is in flight the agent reads the point, and only that
// point, through /agent/jobs/{id}/point and /chunks (agent_restore_reads.h).
#ifndef HAVEN_APPLIANCE_AGENT_RESTORES_H_
#define HAVEN_APPLIANCE_AGENT_RESTORES_H_

#include <nlohmann/json.hpp>
#include <string>

#include "appliance/jobs.h"
#include "appliance/restore_plans.h"
#include "appliance/services.h"
#include "restore/host_restore.h"

namespace haven::appliance {

inline constexpr char kAgentRestorePlanKind[] = "agent-restore-plan";

// The job that has `agent` plan the restore of `point` (id prefix, latest,
// NAME:latest) with `request.vm`; its result is the stored plan
// (StoredPlanJson). The job's id.
Result<int64_t> SubmitAgentRestorePlan(const Services& s,
                                       const std::string& repository,
                                       const std::string& point,
                                       const std::string& agent,
                                       const restore::VmRestoreOptions& vm,
                                       const std::string& by);

// restore-vm of a plan an agent made (stored.request.agent): the agent runs
// the stored plan.
JobOutcome RunAgentMachineRestore(const Services& s, const StoredPlan& stored,
                                  JobContext& ctx);

// Registers agent-restore-plan.
void RegisterAgentRestoreKinds(Services& s);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_AGENT_RESTORES_H_
