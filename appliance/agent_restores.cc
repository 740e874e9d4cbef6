#include "appliance/agent_restores.h"

#include "appliance/agent_jobs.h"
#include "appliance/restore_jobs.h"
#include "restore/restore_plan_json.h"

namespace haven::appliance {
namespace {

using nlohmann::json;

// Plans and restore results come from an agent: bounded, and read only
// field by field.
constexpr size_t kMaxAgentPlanBytes = 4u << 20;

JobOutcome FailedWith(const Status& s) {
  JobOutcome o;
  o.state =
      s.code() == Code::kCancelled ? JobState::kCancelled : JobState::kFailed;
  o.error = s.message();
  return o;
}

Status CheckParams(const JobSpec& spec) {
  const json& p = spec.params;
  if (!p.is_object()) return InvalidArgument("params must be a JSON object");
  for (const char* f : {"agent", "point"})
    if (!p.contains(f) || !p[f].is_string() || p[f].get<std::string>().empty())
      return InvalidArgument(std::string("params.") + f +
                             " must be a non-empty string");
  if (!p.contains("options") || !p["options"].is_object())
    return InvalidArgument("params.options must be an object");
  return restore::VmRestoreOptionsFromJson(p["options"]).status();
}

JobOutcome RunPlan(const Services& s, const JobSpec& spec, JobContext& ctx) {
  const json& p = spec.params;
  auto agent = AgentForJob(*s.agent_dispatch, p["agent"].get<std::string>(),
                           spec.repository);
  if (!agent.ok()) return FailedWith(agent.status());
  if (Status host = RequireHostAgent(*agent); !host.ok())
    return FailedWith(host);
  auto repo = s.repositories->Open(spec.repository);
  if (!repo.ok()) return FailedWith(repo.status());
  auto point = (*repo)->FindSnapshot(p["point"].get<std::string>());
  if (!point.ok()) return FailedWith(point.status());
  if (point->kind != "vm")
    return FailedWith(InvalidArgument(
        "point " + point->id.substr(0, 8) + " is a " + point->kind +
        " backup, not a VM's: only VM points restore onto a host agent"));
  json request = {{"points", json::array({point->id})},
                  {"all", false},
                  {"options", p["options"]}};
  AgentTask task;
  task.job_id = ctx.job_id;
  task.kind = "vm-restore-plan";
  task.params = {{"repository", spec.repository},
                 {"point", point->id},
                 {"request", request}};
  auto r = RunOnAgent(*s.agent_dispatch, *agent, std::move(task), ctx, "plan",
                      point->name);
  if (!r.ok()) return FailedWith(r.status());
  if (r->outcome != "succeeded")
    return FailedWith(FailedPrecondition(
        "agent " + agent->name + " could not plan the restore: " +
        (r->error.empty() ? "it gave no reason" : r->error)));
  const json& st = r->stats;
  if (!st.is_object() || !st.contains("plan") || !st["plan"].is_object() ||
      !st.contains("view") || !st["view"].is_object() ||
      !st.contains("conflicts") || !st["conflicts"].is_number_unsigned() ||
      st.dump().size() > kMaxAgentPlanBytes)
    return FailedWith(DataLoss("agent " + agent->name +
                               " answered with a plan this appliance cannot "
                               "read (plan, view, conflicts)"));
  StoredPlan stored;
  stored.kind = "vm";
  stored.repository = spec.repository;
  request["agent"] = agent->id;
  request["agent_name"] = agent->name;
  stored.request = request;
  stored.plan = st["plan"];
  stored.view = st["view"];
  stored.view["agent"] = agent->name;
  stored.conflicts = st["conflicts"].get<int64_t>();
  stored.created_by = spec.requested_by;
  auto store = RestorePlanStore::Open(*s.db);
  if (!store.ok()) return FailedWith(store.status());
  if (Status put = store->Put(stored); !put.ok()) return FailedWith(put);
  ctx.log("agent " + agent->name + " planned the restore of point " +
          point->id.substr(0, 8) + " (" + point->name + "): plan " + stored.id +
          ", " + std::to_string(stored.conflicts) + " conflict(s)");
  JobOutcome out;
  out.state = JobState::kSucceeded;
  out.result = StoredPlanJson(stored);
  return out;
}

}  // namespace

Result<int64_t> SubmitAgentRestorePlan(const Services& s,
                                       const std::string& repository,
                                       const std::string& point,
                                       const std::string& agent,
                                       const restore::VmRestoreOptions& vm,
                                       const std::string& by) {
  if (!s.agent_dispatch || !s.jobs)
    return FailedPrecondition("agents are not enabled on this appliance");
  JobSpec spec;
  spec.kind = kAgentRestorePlanKind;
  spec.repository = repository;
  spec.params = {{"agent", agent},
                 {"point", point},
                 {"options", restore::VmRestoreOptionsJson(vm)}};
  spec.requested_by = by;
  return s.jobs->Submit(std::move(spec));
}

JobOutcome RunAgentMachineRestore(const Services& s, const StoredPlan& stored,
                                  JobContext& ctx) {
  const json& req = stored.request;
  if (!s.agent_dispatch)
    return FailedWith(
        FailedPrecondition("agents are not enabled on this appliance"));
  if (!req.contains("points") || !req["points"].is_array() ||
      req["points"].size() != 1 || !req["points"][0].is_string())
    return FailedWith(InvalidArgument("restore plan " + stored.id +
                                      " names no single point"));
  auto agent =
      AgentForJob(*s.agent_dispatch, req.value("agent", ""), stored.repository);
  if (!agent.ok()) return FailedWith(agent.status());
  if (Status host = RequireHostAgent(*agent); !host.ok())
    return FailedWith(host);
  const std::string point = req["points"][0].get<std::string>();
  AgentTask task;
  task.job_id = ctx.job_id;
  task.kind = "vm-restore";
  task.params = {{"repository", stored.repository},
                 {"point", point},
                 {"plan", stored.plan},
                 {"options", req.value("options", json::object())}};
  ctx.log("running restore plan " + stored.id + " made by " +
          stored.created_by + " at " + stored.created_at + " on agent " +
          agent->name);
  auto r = RunOnAgent(*s.agent_dispatch, *agent, std::move(task), ctx,
                      "restore", req.value("agent_name", agent->name));
  if (!r.ok()) return FailedWith(r.status());
  JobOutcome out;
  out.result = r->stats;
  out.result["agent"] = agent->name;
  if (r->outcome == "succeeded") {
    out.state = JobState::kSucceeded;
  } else if (r->outcome == "partial") {
    out.state = JobState::kPartial;
    out.error = "agent " + agent->name + ": " + r->error;
  } else {
    out.state = JobState::kFailed;
    out.error = "agent " + agent->name + ": " +
                (r->error.empty() ? "the restore failed" : r->error);
  }
  // One item per VM the agent reports, as a local restore has.
  if (r->stats.contains("vms") && r->stats["vms"].is_array())
    for (const json& v : r->stats["vms"]) {
      if (!v.is_object()) continue;
      JobItem item;
      if (v.contains("name") && v["name"].is_string())
        item.name = v["name"].get<std::string>();
      if (v.contains("outcome") && v["outcome"].is_string())
        item.outcome = v["outcome"].get<std::string>();
      if (v.contains("error") && v["error"].is_string())
        item.error = v["error"].get<std::string>();
      item.detail = v;
      out.items.push_back(std::move(item));
    }
  return out;
}

void RegisterAgentRestoreKinds(Services& s) {
  const Services* services = &s;
  s.jobs->RegisterKind(kAgentRestorePlanKind, CheckParams,
                       [services](const JobSpec& spec, JobContext& ctx) {
                         return RunPlan(*services, spec, ctx);
                       });
}

}  // namespace haven::appliance
