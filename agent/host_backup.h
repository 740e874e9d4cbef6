// BackupHost: the host agent's nightly job — back up every VM of a libvirt
// host, or a selection, one outcome per VM. `haven backup vm` and the
// appliance's scheduler both call it.
//
//   choose VMs:   the names given (in that order), or with `all` every
//                 defined domain (sorted); then drop those matching an
//                 `exclude` pattern (listed as skipped)
//   for each VM:  if cancelled, it and every later VM are "cancelled";
//                 else BackupVm — one VM's failure never stops the others
//
// Each VM's point is committed on its own (agent/vm_backup.h), so a failed
// or cancelled VM leaves the points of the others, and all earlier ones,
// intact.
#ifndef HAVEN_AGENT_HOST_BACKUP_H_
#define HAVEN_AGENT_HOST_BACKUP_H_

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "agent/vm_backup.h"
#include "base/progress.h"
#include "repository/repository.h"
#include "snapshot/libvirt_host.h"

namespace haven::agent {

struct HostBackupRequest {
  std::vector<std::string> names;  // these VMs; or, with `all`, every VM
  bool all = false;
  // Domain names or globs (*, ?, [...]) left out of the run, e.g. "test-*".
  std::vector<std::string> exclude;
  // For every VM. Its progress and cancel are replaced by the two below.
  VmBackupOptions vm;
  ProgressFn progress;  // phase "backup", item = the VM's name
  CancelToken cancel;   // checked between VMs and inside each backup
  // Bytes per second read from all VMs' disks together; 0: no limit.
  // Live VMs are read through their QEMU process (its NBD server), so this
  // limit, not Haven's own I/O priority, is what spares the running VMs.
  double limit_read_bytes_per_second = 0;
  // Run at background priority (base/priority.h): every thread of this
  // process and everything it starts. False: as the caller runs.
  bool low_priority = true;
};

struct VmSelection {
  std::vector<std::string> chosen;    // to back up, in order
  std::vector<std::string> excluded;  // matched an `exclude` pattern
};

// Which VMs `request` names, given the host's `defined` domains (consulted
// only with `all`). InvalidArgument when it gives both or neither of names
// and `all`. A named VM that is not defined is still chosen: its backup
// fails with libvirt's NotFound, as one outcome among the others.
Result<VmSelection> SelectVms(const HostBackupRequest& request,
                              const std::vector<std::string>& defined);
// The same, asking `host` for its domains when `all` is set.
Result<VmSelection> SelectVms(const HostBackupRequest& request,
                              const snapshot::LibvirtHost& host);

struct HostBackupResult {
  std::string uri;                    // the host
  std::vector<VmBackupReport> vms;    // chosen VMs in order, then excluded
  int succeeded = 0, failed = 0, cancelled = 0, skipped = 0;
  double duration_seconds = 0;
};

// Backs up the VMs `request` selects on `host` into `repo` (opened for
// writing). Errors only for a request that selects nothing sensible
// (InvalidArgument) or a host that cannot list its domains; every per-VM
// failure is an outcome in the result.
Result<HostBackupResult> BackupHost(repository::Repository& repo,
                                    const snapshot::LibvirtHost& host,
                                    const HostBackupRequest& request);

// One VM's report as `haven backup vm --json` prints it: name, ok,
// snapshot, error, consistency, consistency_reason, disks, skipped,
// new_stored_bytes, duration_seconds, then outcome, code, logical_bytes,
// read_bytes, new_bytes.
nlohmann::ordered_json VmBackupReportJson(const VmBackupReport& report);
// {vms: [...], succeeded, failed, cancelled, skipped, duration_seconds}.
nlohmann::ordered_json HostBackupResultJson(const HostBackupResult& result);

}  // namespace haven::agent

#endif  // HAVEN_AGENT_HOST_BACKUP_H_
