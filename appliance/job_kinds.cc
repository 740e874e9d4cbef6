#include "appliance/job_kinds.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "agent/host_backup.h"
#include "base/priority.h"
#include "repository/check.h"
#include "repository/forget.h"
#include "repository/gc.h"
#include "repository/retention.h"
#include "restore/host_restore.h"
#include "restore/verify_restore.h"

namespace haven::appliance {
namespace {

using nlohmann::json;

// The params every kind gets are untrusted JSON: each check names the
// field and what it must be.
Status OnlyFields(const json& p, const std::set<std::string>& allowed) {
  if (!p.is_object()) return InvalidArgument("params must be a JSON object");
  for (const auto& [key, value] : p.items())
    if (!allowed.count(key))
      return InvalidArgument("unknown field " + QuoteUntrusted(key) +
                             " in the job's params");
  return OkStatus();
}

Status Bool(const json& p, const char* name) {
  if (p.contains(name) && !p[name].is_boolean())
    return InvalidArgument(std::string(name) + " must be true or false");
  return OkStatus();
}

// A number from lo to hi when present.
Status Number(const json& p, const char* name, double lo, double hi,
              bool integer) {
  if (!p.contains(name)) return OkStatus();
  const json& v = p[name];
  bool ok = integer ? v.is_number_integer() : v.is_number();
  if (ok) {
    double d = v.get<double>();
    ok = d >= lo && d <= hi;
  }
  if (!ok)
    return InvalidArgument(std::string(name) + " must be " +
                           (integer ? "an integer" : "a number") + " from " +
                           std::to_string(static_cast<long long>(lo)) + " to " +
                           std::to_string(static_cast<long long>(hi)));
  return OkStatus();
}

Status Names(const json& p, const char* name, size_t max) {
  if (!p.contains(name)) return OkStatus();
  const json& v = p[name];
  if (!v.is_array() || v.size() > max)
    return InvalidArgument(std::string(name) + " must be a list of at most " +
                           std::to_string(max) + " names");
  for (const json& n : v)
    if (!n.is_string() || n.get<std::string>().empty() ||
        n.get<std::string>().size() > 255)
      return InvalidArgument(std::string(name) +
                             " must hold names of 1 to 255 characters");
  return OkStatus();
}

std::vector<std::string> Strings(const json& p, const char* name) {
  std::vector<std::string> out;
  if (p.contains(name))
    for (const json& n : p[name]) out.push_back(n.get<std::string>());
  return out;
}

// An executor's failure before any work: the job failed with that reason.
// Backup and verify jobs name their VMs: all of them, or a list.
Status AllOrVms(const json& p) {
  bool all = p.value("all", false);
  bool vms = p.contains("vms") && !p["vms"].empty();
  if (all == vms)
    return InvalidArgument(
        "give either \"all\": true or a non-empty \"vms\" list, not both");
  return OkStatus();
}

JobOutcome Failed(const Status& s) {
  JobOutcome o;
  o.state =
      s.code() == Code::kCancelled ? JobState::kCancelled : JobState::kFailed;
  o.error = s.message();
  return o;
}

repository::OpenOptions OpenFor(JobContext& ctx, bool write) {
  repository::OpenOptions o;
  o.write = write;
  o.on_wait = ctx.log;  // "waiting for the repository lock held by ..."
  return o;
}

// ------------------------------------------------------------- backup

JobOutcome RunBackup(const RepositoryCatalog& catalog, const JobSpec& spec,
                     JobContext& ctx) {
  const json& p = spec.params;
  agent::HostBackupRequest req;
  req.all = p.value("all", false);
  req.names = Strings(p, "vms");
  req.exclude = Strings(p, "exclude");
  req.parallel = p.value("parallel", agent::kDefaultParallel);
  req.limit_read_bytes_per_second = p.value("limit_read", 0.0) * 1e6;
  req.adaptive = p.value("adaptive", false);
  req.vm.full = p.value("full", false);
  // BackupHost's low_priority lowers the whole process, which here would
  // be havend's API too; this job's thread (and so every thread and child
  // the backup starts) is lowered instead.
  req.low_priority = false;
  (void)LowerThreadPriority();
  req.vm.log = ctx.log;
  req.progress = ctx.progress;
  req.cancel = ctx.cancel;
  // The test hook `haven backup vm` honours (tests/integration): a pause
  // after each VM's backup job began, so a test can cancel or kill mid-run.
  if (const char* d = std::getenv("HAVEN_FAULT_VM_BACKUP_DELAY"))
    req.vm.fault_delay = std::atof(d);

  const std::string& uri = catalog.config().libvirt_uri;
  auto host = snapshot::LibvirtHost::Connect(uri);
  if (!host.ok()) return Failed(host.status());
  auto repo = catalog.Open(spec.repository, OpenFor(ctx, true));
  if (!repo.ok()) return Failed(repo.status());
  auto r = agent::BackupHost(**repo, **host, req);
  if (!r.ok()) return Failed(r.status());

  JobOutcome out;
  for (const agent::VmBackupReport& v : r->vms) {
    JobItem item;
    item.name = v.name;
    item.outcome = std::string(OutcomeName(v.outcome));
    if (!v.ok() && v.outcome != Outcome::kSkipped)
      item.error = v.status.message();
    if (v.ok()) {
      const auto& st = v.manifest.stats;
      item.read_bytes = st.read_bytes;
      item.new_bytes = st.new_raw_bytes;
      item.stored_bytes = st.new_stored_bytes;
    }
    item.detail = agent::VmBackupReportJson(v);
    out.read_bytes += item.read_bytes;
    out.new_bytes += item.new_bytes;
    out.stored_bytes += item.stored_bytes;
    ctx.log(v.name + ": " + item.outcome +
            (item.error.empty() ? "" : ": " + item.error));
    out.items.push_back(std::move(item));
  }
  out.result = agent::HostBackupResultJson(*r);
  int not_done = r->failed + r->cancelled;
  if (not_done == 0) {
    out.state = JobState::kSucceeded;
    if (r->vms.empty()) ctx.log("no VM matched: there was nothing to back up");
  } else if (r->succeeded > 0) {
    out.state = JobState::kPartial;
    out.error = std::to_string(r->succeeded) + " of " +
                std::to_string(r->succeeded + not_done) +
                " VMs backed up; the others have no new point";
  } else {
    out.state = r->cancelled > 0 && ctx.cancel.cancelled()
                    ? JobState::kCancelled
                    : JobState::kFailed;
    out.error = "no VM was backed up";
    for (const auto& v : r->vms)
      if (!v.ok() && v.outcome != Outcome::kSkipped) {
        out.error += " (" + v.name + ": " + v.status.message() + ")";
        break;
      }
  }
  return out;
}

// ------------------------------------------------------------- forget

repository::RetentionPolicy PolicyOf(const json& p) {
  repository::RetentionPolicy policy;
  policy.last = p.value("keep_last", 0);
  policy.hourly = p.value("keep_hourly", 0);
  policy.daily = p.value("keep_daily", 0);
  policy.weekly = p.value("keep_weekly", 0);
  policy.monthly = p.value("keep_monthly", 0);
  policy.yearly = p.value("keep_yearly", 0);
  if (p.contains("keep_within")) {
    auto w =
        repository::ParseRetentionDuration(p["keep_within"].get<std::string>());
    if (w.ok()) policy.within_seconds = *w;
  }
  return policy;
}

JobOutcome RunForget(const RepositoryCatalog& catalog, const JobSpec& spec,
                     JobContext& ctx) {
  repository::ForgetRequest req;
  req.policy = PolicyOf(spec.params);
  req.name = spec.params.value("name", "");
  req.dry_run = spec.params.value("dry_run", false);
  req.cancel = ctx.cancel;
  req.progress = ctx.progress;
  ctx.log("policy: " + req.policy.Describe() +
          (req.name.empty() ? "" : ", backup name " + req.name) +
          (req.dry_run ? " (dry run)" : ""));
  auto repo = catalog.Open(spec.repository, OpenFor(ctx, !req.dry_run));
  if (!repo.ok()) return Failed(repo.status());
  auto r = repository::Forget(**repo, req);
  if (!r.ok()) return Failed(r.status());
  JobOutcome out;
  out.result = repository::ForgetResultJson(*r);
  for (const auto& pt : r->points)
    if (!pt.decision.keep)
      ctx.log(std::string(r->dry_run ? "would remove " : "removed ") +
              pt.decision.item.id.substr(0, 8) + " (" + pt.decision.item.name +
              ", " + pt.decision.item.time + ")" +
              (pt.outcome == Outcome::kOk
                   ? ""
                   : ": " + std::string(OutcomeName(pt.outcome)) + " " +
                         pt.status.message()));
  ctx.log("kept " + std::to_string(r->kept) + ", " +
          (r->dry_run ? "would remove " : "removed ") +
          std::to_string(r->removed));
  if (r->failed > 0) {
    out.state = JobState::kPartial;
    out.error = std::to_string(r->failed) +
                " recovery point(s) could not be "
                "removed";
  } else if (r->cancelled > 0) {
    out.state = JobState::kCancelled;
  } else {
    out.state = JobState::kSucceeded;
  }
  return out;
}

// ------------------------------------------------------------- gc, check

JobOutcome RunGc(const RepositoryCatalog& catalog,
                 const std::function<void(const std::string&)>& release,
                 const JobSpec& spec, JobContext& ctx) {
  const RepositoryConfig* cfg = catalog.Find(spec.repository);
  if (!cfg)
    return Failed(
        NotFound("repository " + spec.repository + " is no longer configured"));
  auto pass = ReadSecretFile(cfg->password_file);
  if (!pass.ok()) return Failed(pass.status());
  repository::GcOptions opt;
  opt.repack_below = spec.params.value("repack_below", 80.0) / 100;
  opt.max_unused = spec.params.value("max_unused", 5.0) / 100;
  opt.dry_run = spec.params.value("dry_run", false);
  opt.open = OpenFor(ctx, true);
  opt.on_phase = ctx.log;
  opt.cancel = ctx.cancel;  // honoured until the sweep begins
  if (release) release(spec.repository);
  auto r = repository::CollectGarbage(cfg->path, *pass, opt);
  if (!r.ok()) return Failed(r.status());
  JobOutcome out;
  out.result = repository::GcReportJson(*r, opt.dry_run);
  for (const auto& sk : r->skipped) ctx.log("warning: " + sk);
  out.state = r->skipped.empty() ? JobState::kSucceeded : JobState::kPartial;
  if (!r->skipped.empty())
    out.error = std::to_string(r->skipped.size()) + " pack(s) left alone";
  return out;
}

JobOutcome RunCheck(const RepositoryCatalog& catalog, const JobSpec& spec,
                    JobContext& ctx) {
  repository::CheckOptions opt;
  opt.read_data_percent = spec.params.value("read_data_percent", 0.0);
  opt.cancel = ctx.cancel;
  opt.on_phase = ctx.log;
  auto repo = catalog.Open(spec.repository, OpenFor(ctx, false));
  if (!repo.ok()) return Failed(repo.status());
  auto r = repository::CheckRepository(**repo, opt);
  if (!r.ok()) return Failed(r.status());
  JobOutcome out;
  out.result = repository::CheckReportJson(*r);
  out.read_bytes = r->bytes_read;
  size_t shown = 0;
  for (const auto& f : r->findings)
    if (++shown <= 1000) ctx.log("DAMAGE: " + f);
  if (r->findings.empty()) {
    out.state = JobState::kSucceeded;
    ctx.log("no errors found in " + std::to_string(r->snapshots) +
            " recovery points");
  } else {
    out.state = JobState::kFailed;
    out.error = std::to_string(r->findings.size()) + " problem(s) found";
  }
  return out;
}

// ------------------------------------------------------------- verify

JobOutcome RunVerify(const RepositoryCatalog& catalog, const JobSpec& spec,
                     JobContext& ctx) {
  const json& p = spec.params;
  const RepositoryConfig* rc = catalog.Find(spec.repository);
  if (!rc) return Failed(NotFound("no repository called " + spec.repository));
  auto pass = ReadSecretFile(rc->password_file);
  if (!pass.ok()) return Failed(pass.status());
  auto host = snapshot::LibvirtHost::Connect(catalog.config().libvirt_uri);
  if (!host.ok()) return Failed(host.status());
  auto repo = catalog.Open(spec.repository, OpenFor(ctx, true));
  if (!repo.ok()) return Failed(repo.status());
  auto latest = restore::LatestVmPoints(**repo);
  if (!latest.ok()) return Failed(latest.status());
  const std::vector<std::string> names = Strings(p, "vms");
  std::vector<repository::Manifest> points;
  for (const auto& m : *latest)
    if (p.value("all", false) ||
        std::find(names.begin(), names.end(), m.name) != names.end())
      points.push_back(m);
  JobOutcome out;
  for (const std::string& n : names)
    if (std::none_of(points.begin(), points.end(),
                     [&](const auto& m) { return m.name == n; })) {
      JobItem item;
      item.name = n;
      item.outcome = "failed";
      item.error = "no recovery point of " + n + " in " + spec.repository;
      out.items.push_back(item);
    }
  int passed = 0, failed = static_cast<int>(out.items.size());
  // One at a time: each boots a VM on this host.
  for (const auto& m : points) {
    if (ctx.cancel.cancelled()) return Failed(Cancelled("verify cancelled"));
    restore::VerifyRequest req;
    req.point = m;
    req.source.repository =
        std::filesystem::absolute(rc->path).lexically_normal();
    req.source.passphrase = *pass;
    req.console_pattern = p.value("console", "");
    req.agent = p.value("agent", false) || req.console_pattern.empty();
    req.timeout_seconds = p.value("timeout", 300.0);
    req.log = ctx.log;
    req.cancel = ctx.cancel;
    ctx.log("verifying " + m.name + " point " + m.id.substr(0, 8));
    auto r = restore::VerifyRestore(**repo, **host, req);
    JobItem item;
    item.name = m.name;
    if (!r.ok()) {
      item.outcome = "failed";
      item.error = r.status().message();
      ++failed;
    } else {
      Status stored = (*repo)->WriteVerification(
          m.id, restore::VerifyResultJson(*r, true).dump());
      item.detail = restore::VerifyResultJson(*r, false);
      item.outcome =
          r->passed && stored.ok() && r->left_behind.empty() ? "ok" : "failed";
      item.error =
          !r->passed     ? r->reason
          : !stored.ok() ? "the result could not be stored: " + stored.message()
          : r->left_behind.empty() ? ""
                                   : "left behind: " + r->left_behind.front();
      (item.outcome == "ok" ? passed : failed) += 1;
    }
    ctx.log(m.name + ": " +
            (item.outcome == "ok" ? "passed" : "FAILED: " + item.error));
    out.items.push_back(std::move(item));
  }
  out.result = {{"passed", passed}, {"failed", failed}};
  if (failed == 0) {
    out.state = JobState::kSucceeded;
    if (points.empty()) ctx.log("no VM point matched: nothing to verify");
  } else {
    out.state = passed > 0 ? JobState::kPartial : JobState::kFailed;
    out.error = std::to_string(failed) + " of " +
                std::to_string(passed + failed) +
                " VM point(s) failed verification";
    for (const auto& i : out.items)
      if (i.outcome != "ok") {
        out.error += " (" + i.name + ": " + i.error + ")";
        break;
      }
  }
  return out;
}

}  // namespace

Status ValidateVerifyParams(const json& p) {
  HAVEN_RETURN_IF_ERROR(
      OnlyFields(p, {"all", "vms", "console", "agent", "timeout"}));
  HAVEN_RETURN_IF_ERROR(Bool(p, "all"));
  HAVEN_RETURN_IF_ERROR(Bool(p, "agent"));
  HAVEN_RETURN_IF_ERROR(Names(p, "vms", 1000));
  HAVEN_RETURN_IF_ERROR(Number(p, "timeout", 1, 86400, false));
  if (p.contains("console")) {
    if (!p["console"].is_string() ||
        p["console"].get<std::string>().size() > 256)
      return InvalidArgument(
          "console must be the text a console line shows (at most 256 "
          "bytes)");
  }
  return AllOrVms(p);
}

Status ValidateBackupParams(const json& p) {
  HAVEN_RETURN_IF_ERROR(OnlyFields(p, {"all", "vms", "exclude", "parallel",
                                       "limit_read", "adaptive", "full"}));
  HAVEN_RETURN_IF_ERROR(Bool(p, "all"));
  HAVEN_RETURN_IF_ERROR(Bool(p, "adaptive"));
  HAVEN_RETURN_IF_ERROR(Bool(p, "full"));
  HAVEN_RETURN_IF_ERROR(Names(p, "vms", 1000));
  HAVEN_RETURN_IF_ERROR(Names(p, "exclude", 1000));
  HAVEN_RETURN_IF_ERROR(Number(p, "parallel", 1, agent::kMaxParallel, true));
  HAVEN_RETURN_IF_ERROR(Number(p, "limit_read", 0, 1e6, false));
  return AllOrVms(p);
}

Status ValidateForgetParams(const json& p) {
  HAVEN_RETURN_IF_ERROR(OnlyFields(
      p, {"keep_last", "keep_hourly", "keep_daily", "keep_weekly",
          "keep_monthly", "keep_yearly", "keep_within", "name", "dry_run"}));
  for (const char* k : {"keep_last", "keep_hourly", "keep_daily", "keep_weekly",
                        "keep_monthly", "keep_yearly"})
    HAVEN_RETURN_IF_ERROR(Number(p, k, 0, 1000000, true));
  HAVEN_RETURN_IF_ERROR(Bool(p, "dry_run"));
  if (p.contains("name") && !p["name"].is_string())
    return InvalidArgument("name must be a backup name (a string)");
  if (p.contains("keep_within")) {
    if (!p["keep_within"].is_string())
      return InvalidArgument("keep_within must be a span such as \"7d\"");
    HAVEN_RETURN_IF_ERROR(
        repository::ParseRetentionDuration(p["keep_within"].get<std::string>())
            .status()
            .WithContext("keep_within"));
  }
  if (PolicyOf(p).Empty())
    return InvalidArgument(
        "a forget job needs at least one rule (keep_last, keep_daily, ..., "
        "keep_within); without one it would keep everything");
  return OkStatus();
}

Status ValidateGcParams(const json& p) {
  HAVEN_RETURN_IF_ERROR(
      OnlyFields(p, {"repack_below", "max_unused", "dry_run"}));
  HAVEN_RETURN_IF_ERROR(Number(p, "repack_below", 0, 100, false));
  HAVEN_RETURN_IF_ERROR(Number(p, "max_unused", 0, 100, false));
  return Bool(p, "dry_run");
}

Status ValidateCheckParams(const json& p) {
  HAVEN_RETURN_IF_ERROR(OnlyFields(p, {"read_data_percent"}));
  return Number(p, "read_data_percent", 0, 100, false);
}

void RegisterRepositoryJobKinds(
    JobService& jobs, const RepositoryCatalog& repositories,
    std::function<void(const std::string&)> release) {
  const RepositoryCatalog* c = &repositories;
  auto params = [](Status (*v)(const json&)) {
    return [v](const JobSpec& s) { return v(s.params); };
  };
  jobs.RegisterKind(
      "backup", params(ValidateBackupParams),
      [c](const JobSpec& s, JobContext& ctx) { return RunBackup(*c, s, ctx); });
  jobs.RegisterKind(
      "forget", params(ValidateForgetParams),
      [c](const JobSpec& s, JobContext& ctx) { return RunForget(*c, s, ctx); });
  jobs.RegisterKind("gc", params(ValidateGcParams),
                    [c, release](const JobSpec& s, JobContext& ctx) {
                      return RunGc(*c, release, s, ctx);
                    });
  jobs.RegisterKind(
      "check", params(ValidateCheckParams),
      [c](const JobSpec& s, JobContext& ctx) { return RunCheck(*c, s, ctx); });
  jobs.RegisterKind(
      "verify", params(ValidateVerifyParams),
      [c](const JobSpec& s, JobContext& ctx) { return RunVerify(*c, s, ctx); });
}

}  // namespace haven::appliance
