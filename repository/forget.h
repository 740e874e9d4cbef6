// Forget: remove recovery points by retention rules or by name — the job
// behind `haven forget`, callable by any front end.
//
//   by rules:   list every point; if any manifest cannot be read, stop with
//               DataLoss and remove nothing (an unreadable point may be the
//               newest of its group, and the rules applied without it could
//               remove the points that should be kept); else ApplyRetention
//               per backup name and remove what no rule keeps
//   by points:  resolve each spec (id prefix, latest, NAME:latest); a
//               protected one refuses the whole request (FailedPrecondition)
//               before anything is removed; a damaged manifest named by
//               its full id is removed without being read (the way out
//               that check and repair name)
//
// Protected points are never removed. Only manifests are deleted; `gc`
// frees their data afterwards.
#ifndef HAVEN_REPOSITORY_FORGET_H_
#define HAVEN_REPOSITORY_FORGET_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/outcome.h"
#include "base/progress.h"
#include "repository/repository.h"
#include "repository/retention.h"

namespace haven::repository {

struct ForgetRequest {
  // Exactly one of: rules (policy not Empty()) or points to remove.
  RetentionPolicy policy;
  std::vector<std::string> points;  // id prefix, latest or NAME:latest
  std::string name;                 // with rules: only this backup name
  bool dry_run = false;             // decide and report; remove nothing
  CancelToken cancel;               // checked between removals
  ProgressFn progress;              // phase "forget", item = point id
};

struct ForgottenPoint {
  RetentionDecision decision;  // the point, keep or not, and why
  // kOk: kept, or removed (or would be, in a dry run); kFailed: removing it
  // failed (status says why); kCancelled: left because the job was cancelled.
  Outcome outcome = Outcome::kOk;
  Status status;
};

struct ForgetResult {
  bool dry_run = false;
  std::string policy;  // RetentionPolicy::Describe(), "" for explicit points
  uint64_t kept = 0, removed = 0, failed = 0, cancelled = 0;
  // Chosen for removal but retained by object lock (outcome kSkipped): a
  // forget after the retention ends removes them.
  uint64_t deferred = 0;
  std::vector<ForgottenPoint> points;  // by name, then newest first
  double duration_seconds = 0;
};

// Runs `request` on `repo` (opened for writing unless dry_run).
// Errors, with nothing removed: InvalidArgument for a request with both or
// neither of rules and points, or a negative count; DataLoss naming every
// unreadable manifest (rules only); NotFound / InvalidArgument from
// FindSnapshot for a bad spec; FailedPrecondition for a protected point
// named explicitly. Once removal starts, per-point failures are in the
// result (outcome kFailed), not the returned Status.
Result<ForgetResult> Forget(Repository& repo, const ForgetRequest& request);

// The result as `haven forget --json` prints it: dry_run, policy, kept,
// removed, snapshots [{id, name, time, keep, reasons, outcome, error?}],
// failed, cancelled, duration_seconds.
nlohmann::ordered_json ForgetResultJson(const ForgetResult& result);

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_FORGET_H_
