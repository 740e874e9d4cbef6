// The sync job kind: recovery points copied between one of havend's
// repositories and a remote appliance (appliance/remotes.h) with
// repository::CopyPoints (docs/copies.md), the same call `haven copy` makes.
//
//   sync  params {"remote": NAME, "direction": "pull" | "push"}, optional
//         "names": [backup names], "refs": [id prefixes, "latest",
//         "NAME:latest"], "keep_last", "keep_hourly", "keep_daily",
//         "keep_weekly", "keep_monthly", "keep_yearly" (which points: those
//         this policy keeps, per name), "bytes_per_second" (0: no limit),
//         "dry_run"
//
// pull: the remote's points into JobSpec::repository; push: that
// repository's points to the remote. The job's result is the copy's report
// (CopyReportJson), one item per point; retention is not run. The remote's
// token is read from its file when the job starts and goes nowhere else.
#ifndef HAVEN_APPLIANCE_SYNC_JOBS_H_
#define HAVEN_APPLIANCE_SYNC_JOBS_H_

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "appliance/config.h"
#include "appliance/jobs.h"
#include "appliance/remotes.h"
#include "appliance/repositories.h"

namespace haven::appliance {

// The repository the copy routes serve and a sync job uses: `requested`
// when given (InvalidArgument naming the configured ones if there is none
// such), else the one named "default", else the first configured.
// FailedPrecondition when none is configured.
Result<std::string> CopyRepository(const ApplianceConfig& config,
                                   std::string_view requested);

// A sync job's params (InvalidArgument naming the field); pure: whether
// the remote exists is the kind's validator's to check.
Status ValidateSyncParams(const nlohmann::json& params);

// Registers "sync" on `jobs`; its validator also refuses a remote
// `remotes` does not know. `catalog` and `remotes` must outlive `jobs`.
void RegisterSyncJobKind(JobService& jobs, const RepositoryCatalog& catalog,
                         RemoteStore& remotes);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_SYNC_JOBS_H_
