#include "appliance/restore_jobs.h"

#include <ctime>
#include <filesystem>

#include "appliance/restore_executors.h"
#include "base/json.h"
#include "restore/restore_plan_json.h"
#include "snapshot/libvirt_host.h"

namespace haven::appliance {

namespace {

std::string JobKind(const std::string& kind) {
  return kind == "vm"     ? kRestoreVmKind
         : kind == "host" ? kRestoreHostKind
                          : kRestoreFilesKind;
}

nlohmann::json FromOrdered(const nlohmann::ordered_json& j) {
  return nlohmann::json::parse(DumpJson(j));
}

std::string OverwriteName(restore::Overwrite o) {
  return o == restore::Overwrite::kAlways    ? "always"
         : o == restore::Overwrite::kIfNewer ? "if-newer"
                                             : "never";
}

// An absolute folder path in its plain form: no "." or ".." segments, no
// doubled slashes, no control characters, not "/" itself.
Status CheckTarget(const std::string& target) {
  if (target.empty() || target[0] != '/')
    return InvalidArgument("target " + QuoteUntrusted(target) +
                           " is not an absolute path");
  for (unsigned char c : target)
    if (c < 0x20 || c == 0x7f)
      return InvalidArgument("target has a control character in its path");
  std::string plain = std::filesystem::path(target).lexically_normal();
  while (plain.size() > 1 && plain.back() == '/') plain.pop_back();
  std::string given = target;
  while (given.size() > 1 && given.back() == '/') given.pop_back();
  if (plain != given)
    return InvalidArgument("target " + QuoteUntrusted(target) +
                           " is not a plain path (no '.', '..' or '//')");
  if (plain == "/") return InvalidArgument("target / is the root folder");
  return OkStatus();
}

}  // namespace

nlohmann::json StoredPlanJson(const StoredPlan& p) {
  nlohmann::json j = {{"id", p.id},
                      {"kind", p.kind},
                      {"repository", p.repository},
                      {"created_by", p.created_by},
                      {"created_at", p.created_at},
                      {"expires_at", IsoUtc(p.expires_at)},
                      {"conflicts", p.conflicts},
                      {"runnable", p.conflicts == 0 && p.job_id < 0},
                      {"job", p.job_id > 0 ? nlohmann::json(p.job_id)
                                           : nlohmann::json(nullptr)},
                      {"request", p.request},
                      {"plan", p.view}};
  return j;
}

Result<StoredPlan> PlanMachineRestore(
    const Services& s, const std::string& kind, const std::string& repository,
    const restore::HostRestoreRequest& request, const std::string& by) {
  HAVEN_ASSIGN_OR_RETURN(auto repo, s.repositories->Open(repository));
  HAVEN_ASSIGN_OR_RETURN(auto host,
                         snapshot::LibvirtHost::Connect(s.config->libvirt_uri));
  restore::HostRestoreRequest req = request;
  req.dry_run = true;
  req.vm.log = nullptr;
  req.vm.progress = nullptr;
  HAVEN_ASSIGN_OR_RETURN(restore::HostRestorePlan plan,
                         restore::PlanHostRestore(*repo, *host, req));
  // The core's own report of a dry run, as `haven restore vm --dry-run
  // --json` prints it.
  restore::HostRestoreResult dry =
      restore::RestoreHost(*repo, *host, plan, req);
  StoredPlan stored;
  stored.kind = kind;
  stored.repository = repository;
  stored.request = {{"points", req.points},
                    {"all", req.all},
                    {"options", restore::VmRestoreOptionsJson(req.vm)}};
  stored.plan = restore::HostRestorePlanJson(plan);
  stored.view = FromOrdered(restore::HostRestoreResultJson(dry));
  stored.conflicts = static_cast<int64_t>(plan.conflicts());
  stored.created_by = by;
  HAVEN_ASSIGN_OR_RETURN(RestorePlanStore store, RestorePlanStore::Open(*s.db));
  HAVEN_RETURN_IF_ERROR(store.Put(stored));
  return stored;
}

Result<StoredPlan> PlanFileRestore(const Services& s, const FilePlanRequest& r,
                                   const std::string& by) {
  if (r.paths.empty())
    return InvalidArgument("paths: name at least one path in the point");
  for (const auto& p : r.paths)
    if (p.empty() || p[0] != '/')
      return InvalidArgument("paths: " + QuoteUntrusted(p) +
                             " is not an absolute path in the point");
  HAVEN_ASSIGN_OR_RETURN(auto repo, s.repositories->Open(r.repository));
  HAVEN_ASSIGN_OR_RETURN(repository::Manifest point,
                         repo->FindSnapshot(r.point));
  std::string target = r.target;
  if (target.empty())
    target = s.config->state_dir + "/restores/" + point.id.substr(0, 8) + "-" +
             std::to_string(std::time(nullptr));
  HAVEN_RETURN_IF_ERROR(CheckTarget(target));
  StoredPlan stored;
  stored.kind = "files";
  stored.repository = r.repository;
  stored.request = {
      {"point", point.id},        {"point_name", point.name},
      {"point_kind", point.kind}, {"disk", r.disk},
      {"partition", r.partition}, {"paths", r.paths},
      {"target", target},         {"overwrite", OverwriteName(r.overwrite)}};
  restore::FileRestoreOptions opt = FileOptions(stored.request);
  opt.dry_run = true;
  HAVEN_ASSIGN_OR_RETURN(
      restore::FileRestoreStats st,
      RunIsolatedFileRestore(*repo, point, stored.request, opt, CancelToken()));
  nlohmann::json view = restore::FileRestoreStatsJson(st);
  view.erase("seconds");
  view["snapshot"] = point.id;
  view["target"] = target;
  view["overwrite"] = OverwriteName(r.overwrite);
  stored.plan = view;
  stored.view = view;
  stored.conflicts = static_cast<int64_t>(st.problems.size());
  stored.created_by = by;
  HAVEN_ASSIGN_OR_RETURN(RestorePlanStore store, RestorePlanStore::Open(*s.db));
  HAVEN_RETURN_IF_ERROR(store.Put(stored));
  return stored;
}

Result<int64_t> SubmitRestore(const Services& s, const std::string& kind,
                              const std::string& plan_id,
                              const std::string& by) {
  HAVEN_ASSIGN_OR_RETURN(RestorePlanStore store, RestorePlanStore::Open(*s.db));
  HAVEN_ASSIGN_OR_RETURN(StoredPlan plan, store.Get(plan_id));
  if (plan.kind != kind)
    return NotFound("restore plan " + plan_id + " is a " + plan.kind +
                    " restore, not a " + kind +
                    " one: run it through "
                    "/api/v1/restores/" +
                    plan.kind);
  if (plan.conflicts > 0)
    return FailedPrecondition(
        "restore plan " + plan_id + " has " + std::to_string(plan.conflicts) +
        " conflict(s) and cannot run; resolve them and make a new plan");
  HAVEN_ASSIGN_OR_RETURN(plan, store.Claim(plan_id));
  JobSpec spec;
  spec.kind = JobKind(kind);
  spec.repository = plan.repository;
  spec.params = {{"plan", plan_id}};
  spec.requested_by = by;
  auto id = s.jobs->Submit(spec);
  if (!id.ok()) {
    (void)store.SetJob(plan_id, -1);  // released: it may be submitted again
    return id.status();
  }
  HAVEN_RETURN_IF_ERROR(store.SetJob(plan_id, *id));
  return *id;
}

Status RegisterRestoreKinds(Services& s) {
  HAVEN_RETURN_IF_ERROR(RestorePlanStore::Open(*s.db).status());
  const Services* services = &s;
  for (const std::string kind : {"vm", "host", "files"}) {
    auto validate = [services, kind](const JobSpec& spec) -> Status {
      if (!spec.params.is_object() || !spec.params.contains("plan") ||
          !spec.params["plan"].is_string())
        return InvalidArgument("params.plan must be a restore plan's id");
      HAVEN_ASSIGN_OR_RETURN(RestorePlanStore store,
                             RestorePlanStore::Open(*services->db));
      HAVEN_ASSIGN_OR_RETURN(StoredPlan plan,
                             store.Get(spec.params["plan"].get<std::string>()));
      if (plan.kind != kind)
        return InvalidArgument("restore plan " + plan.id + " is a " +
                               plan.kind + " restore, not " + kind);
      if (plan.repository != spec.repository)
        return InvalidArgument("restore plan " + plan.id +
                               " restores from repository " + plan.repository +
                               ", not " + spec.repository);
      if (plan.conflicts > 0)
        return FailedPrecondition("restore plan " + plan.id + " has " +
                                  std::to_string(plan.conflicts) +
                                  " conflict(s)");
      return OkStatus();
    };
    auto execute = [services, kind](const JobSpec& spec, JobContext& ctx) {
      return kind == "files" ? RunFileRestore(*services, spec, ctx)
                             : RunMachineRestore(*services, spec, ctx);
    };
    s.jobs->RegisterKind(JobKind(kind), validate, execute);
  }
  return OkStatus();
}

}  // namespace haven::appliance
