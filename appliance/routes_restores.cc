// /api/v1/restores: plan a restore (a dry run that changes nothing, stored
// with an id), show a plan, run a plan as a job. See restore_jobs.h.
#include <chrono>
#include <set>
#include <thread>

#include "appliance/agent_restores.h"
#include "appliance/restore_jobs.h"
#include "appliance/routes.h"
#include "base/time.h"

namespace haven::appliance {
namespace {

using nlohmann::json;

// How long a plan request waits for a host agent's plan before answering
// 202 with the job.
constexpr double kAgentPlanWaitSeconds = 50;

// A JSON request body read field by field; the first problem is kept and
// answered as 400 naming the field.
class Body {
 public:
  Body(const Request& req, std::set<std::string> known) {
    j_ = json::parse(req.body, nullptr, false);
    if (j_.is_discarded() || !j_.is_object()) {
      status_ = InvalidArgument("the request body must be a JSON object");
      return;
    }
    for (const auto& [key, value] : j_.items())
      if (!known.count(key)) {
        status_ = InvalidArgument("unknown field " + QuoteUntrusted(key));
        return;
      }
  }
  void Str(const char* key, std::string& out, bool required = false) {
    if (const json* v = Get(key, required, &json::is_string, "a string"))
      out = v->get<std::string>();
  }
  void Bool(const char* key, bool& out) {
    if (const json* v = Get(key, false, &json::is_boolean, "true or false"))
      out = v->get<bool>();
  }
  void Int(const char* key, int& out) {
    if (const json* v =
            Get(key, false, &json::is_number_integer, "a whole number")) {
      if (*v < -1 || *v > 1024) return Fail(key, "between -1 and 1024");
      out = v->get<int>();
    }
  }
  void Strings(const char* key, std::vector<std::string>& out) {
    const json* v = Get(key, false, &json::is_array, "a list of strings");
    if (!v) return;
    for (const auto& s : *v) {
      if (!s.is_string()) return Fail(key, "a list of strings");
      out.push_back(s.get<std::string>());
    }
  }
  void Map(const char* key, std::map<std::string, std::string>& out) {
    const json* v = Get(key, false, &json::is_object, "an object");
    if (!v) return;
    for (const auto& [from, to] : v->items()) {
      if (!to.is_string() || from.empty() || to.get<std::string>().empty())
        return Fail(key, "an object of non-empty names");
      out[from] = to.get<std::string>();
    }
  }
  void Fail(const char* key, const char* want) {
    if (status_.ok())
      status_ = InvalidArgument(std::string(key) + " must be " + want);
  }
  const Status& status() const { return status_; }

 private:
  const json* Get(const char* key, bool required,
                  bool (json::*is)() const noexcept, const char* want) {
    if (!status_.ok()) return nullptr;
    auto it = j_.find(key);
    if (it == j_.end()) {
      if (required)
        status_ = InvalidArgument(std::string(key) + " is required");
      return nullptr;
    }
    if (!((*it).*is)()) {
      Fail(key, want);
      return nullptr;
    }
    return &*it;
  }
  json j_;
  Status status_;
};

// The VM options both machine plans take.
void VmOptions(Body& b, restore::VmRestoreOptions& vm) {
  b.Str("storage_dir", vm.storage_dir);
  b.Str("pool", vm.pool);
  b.Str("format", vm.format);
  b.Map("network_map", vm.network_map);
  b.Bool("recreate_networks", vm.create_networks);
  b.Bool("replace", vm.replace);
  b.Bool("start", vm.start);
  b.Bool("verify_ids", vm.verify_ids);
  if (b.status().ok() && !vm.format.empty() && vm.format != "qcow2" &&
      vm.format != "raw")
    b.Fail("format", "qcow2 or raw");
  if (b.status().ok() && !vm.pool.empty() && !vm.storage_dir.empty())
    b.Fail("storage_dir", "left out when pool is given (one or the other)");
}

const std::set<std::string> kVmOptionFields = {
    "repository",        "storage_dir", "pool",  "format",    "network_map",
    "recreate_networks", "replace",     "start", "verify_ids"};

std::set<std::string> With(std::set<std::string> base,
                           std::initializer_list<const char*> more) {
  for (const char* m : more) base.insert(m);
  return base;
}

Response PlanCreated(const Result<StoredPlan>& plan) {
  if (!plan.ok()) return StatusResponse(plan.status());
  return OkJson(StoredPlanJson(plan.value()), 201);
}

// A host agent plans a restore onto its host as a job: wait for it a while,
// so that an agent that answers promptly gives the plan in this answer.
Response PlanOnAgent(Services& s, const std::string& repository,
                     const std::string& point, const std::string& agent,
                     const restore::VmRestoreOptions& vm, const ApiCall& c) {
  auto job =
      SubmitAgentRestorePlan(s, repository, point, agent, vm, c.caller.name);
  if (!job.ok()) return StatusResponse(job.status());
  const double until = MonotonicSeconds() + kAgentPlanWaitSeconds;
  while (MonotonicSeconds() < until) {
    auto rec = s.jobs->Get(*job);
    if (!rec.ok()) return StatusResponse(rec.status());
    if (rec->state == JobState::kSucceeded)
      return OkJson(rec->outcome.result, 201);
    if (rec->state == JobState::kFailed || rec->state == JobState::kCancelled ||
        rec->state == JobState::kInterrupted)
      return ErrorJson(409, rec->outcome.error.empty()
                                ? "the agent's plan job " +
                                      std::to_string(*job) + " did not finish"
                                : rec->outcome.error);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  Response r = OkJson(
      json{{"job", *job},
           {"message", "agent " + agent +
                           " has not answered yet; the plan is the job's "
                           "result when it does"}},
      202);
  r.headers.emplace_back("location", "/api/v1/jobs/" + std::to_string(*job));
  return r;
}

Response PlanVm(Services& s, const ApiCall& c) {
  Body b(c.request,
         With(kVmOptionFields, {"point", "name", "new_identity", "agent"}));
  std::string repository, point, agent;
  restore::HostRestoreRequest req;
  b.Str("repository", repository, true);
  b.Str("point", point, true);
  b.Str("name", req.vm.name);
  b.Str("agent", agent);
  b.Bool("new_identity", req.vm.new_identity);
  VmOptions(b, req.vm);
  if (!b.status().ok()) return StatusResponse(b.status());
  if (!agent.empty())
    return PlanOnAgent(s, repository, point, agent, req.vm, c);
  req.points = {point};
  return PlanCreated(
      PlanMachineRestore(s, "vm", repository, req, c.caller.name));
}

Response PlanHost(Services& s, const ApiCall& c) {
  Body b(c.request, With(kVmOptionFields, {"points", "all"}));
  std::string repository;
  restore::HostRestoreRequest req;
  b.Str("repository", repository, true);
  b.Strings("points", req.points);
  b.Bool("all", req.all);
  VmOptions(b, req.vm);
  if (b.status().ok() && req.all == !req.points.empty())
    b.Fail("points", "given (one point per VM) or all true, not both");
  if (!b.status().ok()) return StatusResponse(b.status());
  return PlanCreated(
      PlanMachineRestore(s, "host", repository, req, c.caller.name));
}

Response PlanFiles(Services& s, const ApiCall& c) {
  Body b(c.request, {"repository", "point", "disk", "partition", "paths",
                     "target", "overwrite"});
  FilePlanRequest r;
  std::string overwrite = "never";
  b.Str("repository", r.repository, true);
  b.Str("point", r.point, true);
  b.Str("disk", r.disk);
  b.Int("partition", r.partition);
  b.Strings("paths", r.paths);
  b.Str("target", r.target);
  b.Str("overwrite", overwrite);
  if (b.status().ok()) {
    if (overwrite == "never")
      r.overwrite = restore::Overwrite::kNever;
    else if (overwrite == "if-newer")
      r.overwrite = restore::Overwrite::kIfNewer;
    else if (overwrite == "always")
      r.overwrite = restore::Overwrite::kAlways;
    else
      b.Fail("overwrite", "never, if-newer or always");
  }
  if (!b.status().ok()) return StatusResponse(b.status());
  return PlanCreated(PlanFileRestore(s, r, c.caller.name));
}

Response Run(Services& s, const ApiCall& c, const std::string& kind) {
  Body b(c.request, {"plan"});
  std::string plan;
  b.Str("plan", plan, true);
  if (!b.status().ok()) return StatusResponse(b.status());
  auto job = SubmitRestore(s, kind, plan, c.caller.name);
  if (!job.ok()) return StatusResponse(job.status());
  Response r = OkJson(json{{"job", *job}, {"plan", plan}}, 202);
  r.headers.emplace_back("location", "/api/v1/jobs/" + std::to_string(*job));
  return r;
}

Response ShowPlan(Services& s, const ApiCall& c) {
  auto store = RestorePlanStore::Open(*s.db);
  if (!store.ok()) return StatusResponse(store.status());
  auto plan = store->Get(*c.Param("id"));
  if (!plan.ok()) return StatusResponse(plan.status());
  return OkJson(StoredPlanJson(*plan));
}

// OpenAPI pieces.
json Str(const char* description) {
  return {{"type", "string"}, {"description", description}};
}
json Flag(const char* description) {
  return {{"type", "boolean"}, {"description", description}};
}

json VmOptionProperties() {
  return {{"repository", Str("a configured repository's name")},
          {"storage_dir",
           Str("absolute folder for the disk and NVRAM files (default "
               "/var/lib/libvirt/images); not with pool")},
          {"pool", Str("a folder-backed libvirt storage pool; not with "
                       "storage_dir")},
          {"format", {{"type", "string"}, {"enum", {"qcow2", "raw"}}}},
          {"network_map",
           {{"type", "object"},
            {"additionalProperties", {{"type", "string"}}},
            {"description",
             "OLD: NEW — attach the interfaces of network or "
             "bridge OLD to NEW, an existing one"}}},
          {"recreate_networks",
           Flag("create a network the VM used and this host lacks from the "
                "recovery point (default true; false: such a network is a "
                "conflict)")},
          {"replace", Flag("replace a same-named domain and existing files")},
          {"start", Flag("start each VM once defined")},
          {"verify_ids", Flag("also recompute every chunk's keyed hash")}};
}

json Operation(json properties, std::vector<std::string> required,
               const char* code, const char* answer) {
  return {
      {"requestBody",
       {{"required", true},
        {"content",
         {{"application/json",
           {{"schema",
             {{"type", "object"},
              {"additionalProperties", false},
              {"required", required},
              {"properties", std::move(properties)}}}}}}}}},
      {"responses",
       {{code, {{"description", answer}}},
        {"400", {{"description", "a field is missing or wrong (named)"}}},
        {"404", {{"description", "unknown repository, point or plan"}}},
        {"409", {{"description", "the plan has conflicts, expired or ran"}}}}}};
}

}  // namespace

std::vector<Route> RestoreRoutes(Services& s) {
  json vm = VmOptionProperties();
  vm["point"] = Str("recovery point: id prefix, latest or NAME:latest");
  vm["name"] = Str("define the VM under this name (default: its own)");
  vm["agent"] =
      Str("restore onto this host agent (id or name) instead of the "
          "appliance's host: the agent plans (201 with the plan, or 202 with "
          "the planning job when the agent is slow to answer) and runs it");
  vm["new_identity"] = Flag(
      "new UUID and MAC addresses, to run beside the "
      "original");
  json host = VmOptionProperties();
  host["points"] = {{"type", "array"},
                    {"items", {{"type", "string"}}},
                    {"description",
                     "one point per VM (id prefix or "
                     "NAME:latest); or all"}};
  host["all"] = Flag("the latest point of every VM in the repository");
  json files = {
      {"repository", Str("a configured repository's name")},
      {"point", Str("recovery point (image, VM or file backup): id prefix, "
                    "latest or NAME:latest")},
      {"disk", Str("image and VM points: which disk (default: the only one)")},
      {"partition",
       {{"type", "integer"},
        {"description",
         "partition number (default: the only "
         "one with a file system)"}}},
      {"paths",
       {{"type", "array"},
        {"items", {{"type", "string"}}},
        {"description",
         "absolute paths in the point ('/' for all); "
         "each goes in under its last component"}}},
      {"target", Str("absolute folder on the appliance's host (default: "
                     "<state-dir>/restores/<point>-<time>)")},
      {"overwrite",
       {{"type", "string"},
        {"enum", {"never", "if-newer", "always"}},
        {"description",
         "what to do with a file the target "
         "has (default never: a conflict)"}}}};
  json run = {{"plan", Str("the id a plan request returned")}};
  auto plan_route = [&s](const char* path, const char* summary, json op,
                         Response (*fn)(Services&, const ApiCall&)) {
    return Route{"POST",
                 path,
                 Access::kRole,
                 Role::kOperator,
                 summary,
                 op,
                 [&s, fn](const ApiCall& c) { return fn(s, c); }};
  };
  auto run_route = [&s, &run](const char* path, const char* summary,
                              std::string kind) {
    return Route{
        "POST",
        path,
        Access::kRole,
        Role::kOperator,
        summary,
        Operation(run, {"plan"}, "202", "the job's id (Location: the job)"),
        [&s, kind](const ApiCall& c) { return Run(s, c, kind); }};
  };
  const char* created = "the stored plan: id, expiry, conflicts, plan";
  return {
      plan_route("/api/v1/restores/vm/plan",
                 "plan the restore of a VM from a recovery point (dry run: "
                 "disks, networks, UUID and MACs, conflicts); nothing changes",
                 Operation(vm, {"repository", "point"}, "201", created),
                 PlanVm),
      run_route("/api/v1/restores/vm",
                "run a stored VM restore plan as a job (restore-vm)", "vm"),
      plan_route("/api/v1/restores/host/plan",
                 "plan the restore of a whole host: every VM's latest point "
                 "(all) or the points named; nothing changes",
                 Operation(host, {"repository"}, "201", created), PlanHost),
      run_route("/api/v1/restores/host",
                "run a stored host restore plan as a job (restore-host)",
                "host"),
      plan_route(
          "/api/v1/restores/files/plan",
          "plan a file restore into a folder on the appliance's host "
          "(dry run: every entry to create, replace or skip, and "
          "conflicts)",
          Operation(files, {"repository", "point", "paths"}, "201", created),
          PlanFiles),
      run_route("/api/v1/restores/files",
                "run a stored file restore plan as a job (restore-files)",
                "files"),
      Route{"GET",
            "/api/v1/restores/plans/{id}",
            Access::kRole,
            Role::kAuditor,
            "a stored restore plan: what it restores, who made it, when it "
            "expires, the job that ran it",
            {{"responses",
              {{"200", {{"description", "the plan"}}},
               {"404", {{"description", "no such plan"}}}}}},
            [&s](const ApiCall& c) { return ShowPlan(s, c); }},
  };
}

}  // namespace haven::appliance
