#include "appliance/sync_jobs.h"

#include <set>

#include "agent/appliance_copy.h"
#include "base/json.h"
#include "base/outcome.h"
#include "repository/copy.h"
#include "repository/repository.h"

namespace haven::appliance {
namespace {

using nlohmann::json;

constexpr const char* kKeepFields[] = {"keep_last",    "keep_hourly",
                                       "keep_daily",   "keep_weekly",
                                       "keep_monthly", "keep_yearly"};

Status StringList(const json& p, const char* name, size_t max_items,
                  size_t max_bytes) {
  if (!p.contains(name)) return OkStatus();
  const json& v = p[name];
  if (!v.is_array() || v.size() > max_items)
    return InvalidArgument(std::string(name) + " must be a list of at most " +
                           std::to_string(max_items) + " strings");
  for (const json& s : v)
    if (!s.is_string() || s.get<std::string>().empty() ||
        s.get<std::string>().size() > max_bytes)
      return InvalidArgument(std::string(name) + " must hold strings of 1 to " +
                             std::to_string(max_bytes) + " characters");
  return OkStatus();
}

std::vector<std::string> Strings(const json& p, const char* name) {
  std::vector<std::string> out;
  if (p.contains(name))
    for (const json& s : p[name]) out.push_back(s.get<std::string>());
  return out;
}

repository::RetentionPolicy KeepOf(const json& p) {
  repository::RetentionPolicy k;
  k.last = p.value("keep_last", 0);
  k.hourly = p.value("keep_hourly", 0);
  k.daily = p.value("keep_daily", 0);
  k.weekly = p.value("keep_weekly", 0);
  k.monthly = p.value("keep_monthly", 0);
  k.yearly = p.value("keep_yearly", 0);
  return k;
}

JobOutcome Failed(const Status& s) {
  JobOutcome o;
  o.state =
      s.code() == Code::kCancelled ? JobState::kCancelled : JobState::kFailed;
  o.error = s.message();
  return o;
}

std::string_view ItemOutcome(const repository::CopyPointResult& p) {
  if (p.outcome == "copied") return OutcomeName(Outcome::kOk);
  if (p.outcome == "failed") return OutcomeName(OutcomeOf(p.status));
  return OutcomeName(Outcome::kSkipped);  // present, would copy
}

JobOutcome RunSync(const RepositoryCatalog& catalog, RemoteStore& remotes,
                   const JobSpec& spec, JobContext& ctx) {
  const json& p = spec.params;
  const std::string remote = p.value("remote", "");
  const bool pull = p.value("direction", "") == "pull";
  repository::CopyOptions o;
  o.select.names = Strings(p, "names");
  o.select.refs = Strings(p, "refs");
  o.select.keep = KeepOf(p);
  o.dry_run = p.value("dry_run", false);
  o.bytes_per_second = p.value("bytes_per_second", 0.0);
  o.progress = ctx.progress;
  o.cancel = ctx.cancel;

  auto conn = remotes.Connection(remote);
  if (!conn.ok()) return Failed(conn.status());
  ctx.log(std::string(pull ? "pull from" : "push to") + " remote " + remote +
          " (" + conn->url + ") " + (pull ? "into" : "from") + " repository " +
          spec.repository + (o.dry_run ? " (dry run: nothing is sent)" : ""));
  repository::OpenOptions open;
  // A pull writes here (a dry run still asks which chunks are here).
  open.write = pull;
  open.on_wait = ctx.log;
  auto repo = catalog.Open(spec.repository, open);
  if (!repo.ok()) return Failed(repo.status());

  Result<repository::CopyReport> report = Internal("not run");
  if (pull) {
    auto from = agent::OpenApplianceSource(*conn, ctx.cancel);
    if (!from.ok()) return Failed(from.status());
    repository::LocalCopyTarget to(**repo);
    report = repository::CopyPoints(**from, to, o);
  } else {
    auto to = agent::OpenApplianceTarget(*conn, ctx.cancel);
    if (!to.ok()) return Failed(to.status());
    repository::LocalCopySource from(**repo);
    report = repository::CopyPoints(from, **to, o);
  }
  if (!report.ok()) return Failed(report.status());
  const repository::CopyReport& r = *report;

  JobOutcome out;
  out.result = json::parse(DumpJson(repository::CopyReportJson(r)));
  for (const repository::CopyPointResult& pt : r.points) {
    JobItem item;
    item.name = pt.name + " " + pt.id;
    item.outcome = std::string(ItemOutcome(pt));
    if (!pt.status.ok()) item.error = pt.status.message();
    item.new_bytes = pt.bytes_sent;
    item.detail = {{"id", pt.id},
                   {"name", pt.name},
                   {"kind", pt.kind},
                   {"time", pt.time},
                   {"outcome", pt.outcome},
                   {"chunks_sent", pt.chunks_sent},
                   {"bytes_sent", pt.bytes_sent}};
    ctx.log(pt.id.substr(0, 8) + " (" + pt.name + ", " + pt.time + "): " +
            pt.outcome + (pt.status.ok() ? "" : ": " + pt.status.message()));
    out.items.push_back(std::move(item));
  }
  for (const auto& d : r.damaged)
    ctx.log("damaged chunk " + d.id.Hex() + ": " + d.error);
  for (const auto& e : r.source_errors) ctx.log("unreadable point: " + e);
  out.new_bytes = r.bytes_sent;
  ctx.log(std::to_string(r.copied()) + " point(s) " +
          (r.dry_run ? "to copy" : "copied") + ", " +
          std::to_string(r.failed()) + " failed; " +
          std::to_string(r.chunks_sent) + " chunks (" +
          std::to_string(r.bytes_sent) + " bytes) " +
          (r.dry_run ? "to send" : "sent") + " of " +
          std::to_string(r.chunks_checked) + " checked");
  if (r.failed() == 0) {
    out.state = JobState::kSucceeded;
  } else if (r.copied() > 0) {
    out.state = JobState::kPartial;
    out.error = std::to_string(r.failed()) + " of " +
                std::to_string(r.failed() + r.copied()) +
                " points could not be copied";
  } else {
    out.state = JobState::kFailed;
    out.error = std::to_string(r.failed()) + " point(s) could not be copied";
    for (const auto& pt : r.points)
      if (pt.outcome == "failed") {
        out.error +=
            " (" + pt.id.substr(0, 8) + ": " + pt.status.message() + ")";
        break;
      }
  }
  return out;
}

}  // namespace

Result<std::string> CopyRepository(const ApplianceConfig& config,
                                   std::string_view requested) {
  std::string known;
  for (const RepositoryConfig& r : config.repositories)
    known += (known.empty() ? "" : ", ") + r.name;
  if (!requested.empty()) {
    if (config.FindRepository(requested)) return std::string(requested);
    return InvalidArgument(
        "there is no repository " + QuoteUntrusted(requested) +
        " (configured: " + (known.empty() ? "none" : known) + ")");
  }
  if (config.repositories.empty())
    return FailedPrecondition("no repository is configured");
  if (const RepositoryConfig* d = config.FindRepository("default"))
    return d->name;
  return config.repositories.front().name;
}

Status ValidateSyncParams(const json& p) {
  if (!p.is_object()) return InvalidArgument("params must be a JSON object");
  static const std::set<std::string> kAllowed = {
      "remote",      "direction",        "names",
      "refs",        "keep_last",        "keep_hourly",
      "keep_daily",  "keep_weekly",      "keep_monthly",
      "keep_yearly", "bytes_per_second", "dry_run"};
  for (const auto& [key, value] : p.items())
    if (!kAllowed.count(key))
      return InvalidArgument("unknown field " + QuoteUntrusted(key) +
                             " in a sync job's params");
  if (!p.contains("remote") || !p["remote"].is_string() ||
      !ValidRemoteName(p["remote"].get<std::string>()))
    return InvalidArgument(
        "remote must name a remote appliance "
        "(GET /api/v1/remotes lists them)");
  if (!p.contains("direction") || !p["direction"].is_string() ||
      (p["direction"] != "pull" && p["direction"] != "push"))
    return InvalidArgument(
        "direction must be \"pull\" (the remote's points here) or \"push\" "
        "(this appliance's points there)");
  HAVEN_RETURN_IF_ERROR(StringList(p, "names", 1000, 255));
  HAVEN_RETURN_IF_ERROR(StringList(p, "refs", 1000, 320));
  for (const char* k : kKeepFields)
    if (p.contains(k) &&
        (!p[k].is_number_integer() || p[k].get<int64_t>() < 0 ||
         p[k].get<int64_t>() > 1000000))
      return InvalidArgument(std::string(k) +
                             " must be an integer from 0 to 1000000");
  if (p.contains("bytes_per_second") &&
      (!p["bytes_per_second"].is_number() ||
       p["bytes_per_second"].get<double>() < 0 ||
       p["bytes_per_second"].get<double>() > 1e12))
    return InvalidArgument(
        "bytes_per_second must be a number from 0 (no limit) to 1e12");
  if (p.contains("dry_run") && !p["dry_run"].is_boolean())
    return InvalidArgument("dry_run must be true or false");
  return OkStatus();
}

void RegisterSyncJobKind(JobService& jobs, const RepositoryCatalog& catalog,
                         RemoteStore& remotes) {
  const RepositoryCatalog* c = &catalog;
  RemoteStore* r = &remotes;
  jobs.RegisterKind(
      "sync",
      [r](const JobSpec& s) -> Status {
        HAVEN_RETURN_IF_ERROR(ValidateSyncParams(s.params));
        return r->Get(s.params["remote"].get<std::string>()).status();
      },
      [c, r](const JobSpec& s, JobContext& ctx) {
        return RunSync(*c, *r, s, ctx);
      });
}

}  // namespace haven::appliance
