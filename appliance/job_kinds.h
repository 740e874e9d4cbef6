// The job kinds havend runs for its own repositories: each a validator of
// the API's params (400 before anything is queued) and an executor that
// calls the same core function `haven` calls for the same work.
//
//   backup  agent::BackupHost on snapshot::LibvirtHost(config.libvirt_uri)
//           params {"all": true} | {"vms": [NAME, ...]}, "exclude": [GLOB],
//           "parallel" (1..32), "limit_read" (MB/s, 10^6 bytes), "adaptive",
//           "full"; one item per VM (bytes read / new / stored); partial
//           when some VMs landed and others did not
//   forget  repository::Forget with a retention policy: "keep_last",
//           "keep_hourly" ... "keep_yearly", "keep_within" ("7d", "1y6m"),
//           "name", "dry_run"; at least one rule
//   gc      repository::CollectGarbage: "repack_below", "max_unused"
//           (percent), "dry_run"
//   check   repository::CheckRepository: "read_data_percent" (0..100)
//   verify  restore::VerifyRestore of the latest point of each VM, one at a
//           time: {"all": true} | {"vms": [NAME, ...]}, "console" (text
//           the serial console must show), "agent"
//           (the guest agent must answer; the default without "console"),
//           "timeout" (seconds); one item per VM, the result stored with
//           the point; failed/partial when a VM did not come up
//
// Unknown params are refused, so a typo is not silently ignored.
#ifndef HAVEN_APPLIANCE_JOB_KINDS_H_
#define HAVEN_APPLIANCE_JOB_KINDS_H_

#include "appliance/jobs.h"
#include "appliance/repositories.h"

namespace haven::appliance {

// Validators, exposed for tests: OK or InvalidArgument naming the field.
Status ValidateBackupParams(const nlohmann::json& params);
Status ValidateForgetParams(const nlohmann::json& params);
Status ValidateGcParams(const nlohmann::json& params);
Status ValidateCheckParams(const nlohmann::json& params);
Status ValidateVerifyParams(const nlohmann::json& params);

// Registers the five kinds above on `jobs`; `repositories` (and the
// configuration it holds) must outlive it.
// `release` (may be unset) is called with a repository's name before gc
// takes it alone, so that readers holding it open (the API's repository
// cache) let go at once instead of after their idle time.
void RegisterRepositoryJobKinds(
    JobService& jobs, const RepositoryCatalog& repositories,
    std::function<void(const std::string&)> release = {});

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_JOB_KINDS_H_
