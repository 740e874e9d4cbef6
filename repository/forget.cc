#include "repository/forget.h"

#include "base/time.h"

namespace haven::repository {
namespace {

Status CheckRequest(const ForgetRequest& r) {
  const RetentionPolicy& p = r.policy;
  for (int n : {p.last, p.hourly, p.daily, p.weekly, p.monthly, p.yearly})
    if (n < 0) return InvalidArgument("--keep-* counts must be >= 0");
  if (p.within_seconds < 0)
    return InvalidArgument("--keep-within must be positive");
  const bool by_policy = !p.Empty();
  if (by_policy == !r.points.empty())
    return InvalidArgument(
        by_policy ? "give either --keep-* rules or recovery points to "
                    "remove, not both"
                  : "give at least one --keep-* rule (for example "
                    "--keep-daily 7 --keep-weekly 4), or the recovery points "
                    "to remove");
  return OkStatus();
}

Result<std::vector<RetentionDecision>> DecideByPolicy(
    const Repository& repo, const ForgetRequest& r) {
  std::vector<std::string> errors;
  HAVEN_ASSIGN_OR_RETURN(std::vector<Manifest> all,
                         repo.ListSnapshots(&errors));
  if (!errors.empty()) {
    std::string msg =
        "forget applies no rule while a recovery point cannot be read; "
        "nothing was removed. Unreadable:";
    for (const auto& e : errors) msg += "\n  " + e;
    return DataLoss(msg +
                    "\nRun 'haven check' and 'haven repair snapshots', or "
                    "name the points to remove.");
  }
  std::vector<RetentionItem> items;
  for (const auto& m : all)
    if (r.name.empty() || m.name == r.name)
      items.push_back({m.id, m.name, m.time, repo.IsProtected(m.id)});
  return ApplyRetention(std::move(items), r.policy);
}

Result<std::vector<RetentionDecision>> DecideByName(const Repository& repo,
                                                    const ForgetRequest& r) {
  std::vector<RetentionDecision> out;
  for (const auto& spec : r.points) {
    Result<Manifest> found = repo.FindSnapshot(spec);
    RetentionDecision d;
    if (found.ok()) {
      d.item = {found->id, found->name, found->time,
                repo.IsProtected(found->id)};
    } else if (IsSnapshotId(spec) &&
               repo.LoadSnapshot(spec).status().code() == Code::kDataLoss) {
      // A damaged manifest named by its full id: removing it is the way
      // out that check and repair point to, so it must not need reading.
      d.item = {spec, "(unreadable)", "", repo.IsProtected(spec)};
    } else {
      return found.status();
    }
    const RetentionItem& m = d.item;
    if (m.is_protected)
      return FailedPrecondition(
          "snapshot " + m.id + " (" + m.name + ", " + m.time.substr(0, 19) +
          ") is protected; nothing was removed. Run 'haven unprotect " +
          m.id.substr(0, 8) + "' first");
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace

// Until when object lock retains the point's manifest, if that is still
// ahead; 0 if it is not retained (or the store cannot tell: then the
// delete itself is refused and reported).
static int64_t RetainedUntil(const Repository& repo, const std::string& id) {
  if (repo.config().object_lock_seconds <= 0) return 0;
  auto until = repo.backend().RetainedUntil("snapshots/" + id);
  if (!until.ok() || *until <= static_cast<int64_t>(::time(nullptr))) return 0;
  return *until;
}

Result<ForgetResult> Forget(Repository& repo, const ForgetRequest& request) {
  HAVEN_RETURN_IF_ERROR(CheckRequest(request));
  const double start = MonotonicSeconds();
  const bool by_policy = !request.policy.Empty();
  HAVEN_ASSIGN_OR_RETURN(std::vector<RetentionDecision> decisions,
                         by_policy ? DecideByPolicy(repo, request)
                                   : DecideByName(repo, request));
  ForgetResult result;
  result.dry_run = request.dry_run;
  result.policy = by_policy ? request.policy.Describe() : "";
  for (auto& d : decisions) {
    ForgottenPoint p;
    p.decision = std::move(d);
    const std::string& id = p.decision.item.id;
    if (p.decision.keep) {
      ++result.kept;
    } else if (Status c = request.cancel.Check("forget"); !c.ok()) {
      p.outcome = Outcome::kCancelled;
      p.status = c;
      ++result.cancelled;
    } else if (int64_t until = RetainedUntil(repo, id); until > 0) {
      // Object lock: planned around, removed by a forget after `until`.
      p.outcome = Outcome::kSkipped;
      p.status = FailedPrecondition(
          "retained by object lock until " +
          FormatTime(until * 1000000000, TimeStyle::kRfc3339Utc) +
          "; a forget after that removes it");
      ++result.deferred;
    } else if (request.dry_run) {
      ++result.removed;
    } else if (Status s = repo.DeleteSnapshot(id);
               !s.ok() && s.code() != Code::kNotFound) {
      // NotFound: someone else removed it meanwhile, which is what we want.
      p.outcome = Outcome::kFailed;
      p.status = s;
      ++result.failed;
    } else {
      ++result.removed;
    }
    if (request.progress) {
      Progress pr;
      pr.phase = "forget";
      pr.item = id;
      pr.elapsed_seconds = MonotonicSeconds() - start;
      request.progress(pr);
    }
    result.points.push_back(std::move(p));
  }
  result.duration_seconds = MonotonicSeconds() - start;
  return result;
}

nlohmann::ordered_json ForgetResultJson(const ForgetResult& r) {
  nlohmann::ordered_json points = nlohmann::ordered_json::array();
  for (const auto& p : r.points) {
    const RetentionDecision& d = p.decision;
    nlohmann::ordered_json e = {{"id", d.item.id},
                                {"name", d.item.name},
                                {"time", d.item.time},
                                {"keep", d.keep},
                                {"reasons", d.reasons},
                                {"protected", d.item.is_protected},
                                {"outcome", OutcomeName(p.outcome)}};
    if (!p.status.ok()) e["error"] = p.status.message();
    points.push_back(std::move(e));
  }
  return nlohmann::ordered_json{{"dry_run", r.dry_run},
                                {"policy", r.policy},
                                {"kept", r.kept},
                                {"removed", r.removed},
                                {"snapshots", std::move(points)},
                                {"failed", r.failed},
                                {"cancelled", r.cancelled},
                                {"deferred", r.deferred},
                                {"duration_seconds", r.duration_seconds}};
}

}  // namespace haven::repository
