#include "appliance/restore_executors.h"

#include "appliance/agent_restores.h"
#include "appliance/restore_plans.h"
#include "base/json.h"
#include "base/outcome.h"
#include "restore/host_restore.h"
#include "restore/isolated_reader.h"
#include "restore/point_files.h"
#include "restore/restore_plan_json.h"
#include "snapshot/libvirt_host.h"

namespace haven::appliance {
namespace {

JobOutcome Failed(const Status& status) {
  JobOutcome out;
  out.state = status.code() == Code::kCancelled ? JobState::kCancelled
                                                : JobState::kFailed;
  out.error = status.message();
  return out;
}

// The stored plan a job's params name, of `kind`.
Result<StoredPlan> LoadPlan(const Services& s, const JobSpec& spec,
                            const std::string& kind) {
  if (!spec.params.is_object() || !spec.params.contains("plan") ||
      !spec.params["plan"].is_string())
    return InvalidArgument("params.plan must be a restore plan's id");
  HAVEN_ASSIGN_OR_RETURN(RestorePlanStore store, RestorePlanStore::Open(*s.db));
  HAVEN_ASSIGN_OR_RETURN(StoredPlan plan,
                         store.Get(spec.params["plan"].get<std::string>()));
  if (plan.kind != kind)
    return InvalidArgument("restore plan " + plan.id + " is a " + plan.kind +
                           " restore");
  return plan;
}

nlohmann::json FromOrdered(const nlohmann::ordered_json& j) {
  return nlohmann::json::parse(DumpJson(j));
}

JobOutcome MachineOutcome(const restore::HostRestoreResult& r) {
  JobOutcome out;
  nlohmann::json result = FromOrdered(restore::HostRestoreResultJson(r));
  for (size_t i = 0; i < r.vms.size(); ++i) {
    const restore::VmRestoreItem& v = r.vms[i];
    JobItem item;
    item.name = v.plan.name;
    item.outcome = std::string(OutcomeName(v.outcome));
    item.error = v.outcome == Outcome::kPartial ? v.result.start_error
                 : v.outcome == Outcome::kOk    ? ""
                                                : v.status.message();
    for (const auto& d : v.result.disks) item.read_bytes += d.data_bytes;
    out.read_bytes += item.read_bytes;
    item.detail = result["vms"][i];
    if (out.error.empty() && !item.error.empty())
      out.error = item.name + ": " + item.error;
    out.items.push_back(std::move(item));
  }
  out.result = std::move(result);
  const bool all_ok = r.failed == 0 && r.cancelled == 0 && r.not_started == 0 &&
                      r.conflicts == 0;
  out.state = all_ok                             ? JobState::kSucceeded
              : r.cancelled > 0 && r.failed == 0 ? JobState::kCancelled
              : r.succeeded > 0                  ? JobState::kPartial
                                                 : JobState::kFailed;
  return out;
}

}  // namespace

JobOutcome RunMachineRestore(const Services& s, const JobSpec& spec,
                             JobContext& ctx) {
  const std::string kind = spec.kind == "restore-host" ? "host" : "vm";
  auto stored = LoadPlan(s, spec, kind);
  if (!stored.ok()) return Failed(stored.status());
  // A plan a host agent made runs on that agent.
  if (stored->request.contains("agent"))
    return RunAgentMachineRestore(s, *stored, ctx);
  auto repo = s.repositories->Open(stored->repository);
  if (!repo.ok()) return Failed(repo.status());
  auto host = snapshot::LibvirtHost::Connect(s.config->libvirt_uri);
  if (!host.ok()) return Failed(host.status());
  // The plan as it was shown: never planned again.
  auto plan = restore::HostRestorePlanFromJson(stored->plan, **repo);
  if (!plan.ok()) return Failed(plan.status());
  auto options = restore::VmRestoreOptionsFromJson(
      stored->request.value("options", nlohmann::json::object()));
  if (!options.ok()) return Failed(options.status());
  restore::HostRestoreRequest req;
  req.vm = std::move(*options);
  req.vm.log = ctx.log;
  ProgressFn progress = ctx.progress;
  req.vm.progress = [progress](const std::string& label) -> ProgressFn {
    if (!progress) return nullptr;
    return [progress, label](const Progress& p) {
      Progress q = p;
      q.phase = "restore";
      q.item = label;
      progress(q);
    };
  };
  req.cancel = ctx.cancel;
  if (ctx.log)
    ctx.log("running restore plan " + stored->id + " made by " +
            stored->created_by + " at " + stored->created_at + ": " +
            std::to_string(plan->vms.size()) + " VM(s)");
  restore::HostRestoreResult r =
      restore::RestoreHost(**repo, **host, *plan, req);
  return MachineOutcome(r);
}

restore::FileRestoreOptions FileOptions(const nlohmann::json& request) {
  restore::FileRestoreOptions opt;
  opt.target = restore::FileTarget::kDirectory;
  opt.path = request.value("target", "");
  const std::string ow = request.value("overwrite", "never");
  opt.overwrite = ow == "always"     ? restore::Overwrite::kAlways
                  : ow == "if-newer" ? restore::Overwrite::kIfNewer
                                     : restore::Overwrite::kNever;
  // A point's set-id bits and device nodes are not made through the API
  // (as for guest images in the CLI): a file an operator restores must not
  // become a set-uid binary or a door to the host's disks.
  opt.keep_setid = false;
  opt.devices = false;
  return opt;
}

Result<restore::FileRestoreStats> RunIsolatedFileRestore(
    const repository::Repository& repo, const repository::Manifest& point,
    const nlohmann::json& request, const restore::FileRestoreOptions& options,
    const CancelToken& cancel) {
  const std::string disk = request.value("disk", "");
  const int partition = request.value("partition", -1);
  const std::vector<std::string> paths =
      request.value("paths", std::vector<std::string>{});
  auto work = [&](const CancelToken& token) -> Result<std::string> {
    HAVEN_ASSIGN_OR_RETURN(
        auto files, restore::PointFiles::Open(repo, point, disk, partition));
    restore::FileRestoreOptions opt = options;
    opt.cancel = token;
    HAVEN_ASSIGN_OR_RETURN(
        restore::FileRestoreStats st,
        restore::RestoreGuestFiles(files->tree(), paths, opt));
    return DumpJson(restore::FileRestoreStatsJson(st));
  };
  restore::IsolatedOutputs outputs;
  if (!options.dry_run) outputs.dir = options.path;
  HAVEN_ASSIGN_OR_RETURN(std::string text,
                         restore::RunIsolatedResult(work, outputs, cancel));
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded())
    return Internal("the isolated file restore returned no JSON");
  return restore::FileRestoreStatsFromJson(j);
}

JobOutcome RunFileRestore(const Services& s, const JobSpec& spec,
                          JobContext& ctx) {
  auto stored = LoadPlan(s, spec, "files");
  if (!stored.ok()) return Failed(stored.status());
  auto repo = s.repositories->Open(stored->repository);
  if (!repo.ok()) return Failed(repo.status());
  const std::string id = stored->request.value("point", "");
  auto point = (*repo)->LoadSnapshot(id);
  if (!point.ok())
    return Failed(point.status().code() == Code::kNotFound
                      ? NotFound("the recovery point " + id.substr(0, 8) +
                                 " the plan restores is no longer in the "
                                 "repository")
                      : point.status());
  restore::FileRestoreOptions opt = FileOptions(stored->request);
  if (ctx.log)
    ctx.log("running restore plan " + stored->id + " made by " +
            stored->created_by + ": files of " + id.substr(0, 8) + " into " +
            opt.path);
  auto st =
      RunIsolatedFileRestore(**repo, *point, stored->request, opt, ctx.cancel);
  if (!st.ok()) return Failed(st.status());
  JobOutcome out;
  nlohmann::json result = restore::FileRestoreStatsJson(*st);
  result["snapshot"] = id;
  result["target"] = opt.path;
  // Problems the plan did not show are what changed since it was made.
  const size_t planned =
      stored->plan.value("problems", nlohmann::json::array()).size();
  out.state = st->complete() ? JobState::kSucceeded : JobState::kPartial;
  if (!st->complete())
    out.error =
        std::to_string(st->problems.size()) + " entr(ies) not restored" +
        (st->problems.size() > planned ? " (not in the plan: the "
                                         "target changed since)"
                                       : "") +
        ": " + st->problems.front().path + ": " + st->problems.front().what;
  out.read_bytes = st->bytes;
  out.result = std::move(result);
  if (ctx.log)
    ctx.log("restored " + std::to_string(st->files) + " file(s), " +
            std::to_string(st->dirs) + " folder(s), " +
            std::to_string(st->bytes) + " bytes into " + opt.path);
  return out;
}

}  // namespace haven::appliance
