// BackupHost: the host agent's nightly job — back up every VM of a libvirt
// host, or a selection, one outcome per VM. `haven backup vm` and the
// appliance's scheduler both call it.
//
//   choose VMs:   the names given (in that order), or with `all` every
//                 defined domain (sorted); then drop those matching an
//                 `exclude` pattern (listed as skipped)
//   once:         the host's facts (versions, capabilities, CPU model),
//                 recorded with every VM's point; one libvirt connection
//                 and one open repository serve every VM
//   VMs:          `parallel` at a time, taken in order; a VM not started
//                 when the job is cancelled is "cancelled"; else BackupVm —
//                 one VM's failure never stops the others
//
// Each VM's point is committed on its own (agent/vm_backup.h), by its own
// PointSink (locally: its own ChunkWriter) into the one repository (writers run
// at once: the concurrent-writer rule of docs/repository-format.md), so a
// failed or cancelled VM leaves the points of the others, and all earlier ones,
// intact.
//
// Reads of all VMs draw from one budget: `limit_read_bytes_per_second`,
// lowered further while the host's I/O pressure is high with `adaptive`
// (base/io_pressure.h).
#ifndef HAVEN_AGENT_HOST_BACKUP_H_
#define HAVEN_AGENT_HOST_BACKUP_H_

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "agent/vm_backup.h"
#include "base/io_pressure.h"
#include "base/progress.h"
#include "repository/repository.h"
#include "snapshot/libvirt_host.h"

namespace haven::agent {

// VMs backed up at once unless the request says otherwise: chosen by
// bench/host.sh (docs/benchmark-results.md, "Nightly window").
inline constexpr int kDefaultParallel = 2;
inline constexpr int kMaxParallel = 32;

struct HostBackupRequest {
  std::vector<std::string> names;  // these VMs; or, with `all`, every VM
  bool all = false;
  // Domain names or globs (*, ?, [...]) left out of the run, e.g. "test-*".
  std::vector<std::string> exclude;
  // For every VM. Its progress and cancel are replaced by the two below.
  // Its `log` is called from the VMs' threads, `parallel` at a time: it
  // must be thread-safe (each line is prefixed with the VM's name).
  VmBackupOptions vm;
  // VMs backed up at the same time, 1..kMaxParallel.
  int parallel = kDefaultParallel;
  // Host-job progress, serialized: phase "backup", item = the running VMs'
  // names, bytes and rate over all VMs, items_* counts of VMs, an ETA.
  ProgressFn progress;
  CancelToken cancel;  // checked between VMs and inside each backup
  // Bytes per second read from all VMs' disks together; 0: no limit.
  // Live VMs are read through their QEMU process (its NBD server), so this
  // limit, not Haven's own I/O priority, is what spares the running VMs.
  double limit_read_bytes_per_second = 0;
  // Run at background priority (base/priority.h): every thread of this
  // process and everything it starts. False: as the caller runs.
  bool low_priority = true;
  // Adaptive mode: slow the reads down while the host's I/O pressure is
  // high, speed them up when it falls (never above the limit, if any).
  bool adaptive = false;
  AdaptiveOptions adaptive_options;  // thresholds; ceiling set from the limit
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
  int parallel = 1;  // VMs at a time, as run
  // Adaptive mode: whether it ran (it needs PSI), how often it slowed the
  // reads down, the lowest rate it set (bytes/s) and the highest pressure.
  bool adaptive = false;
  std::string adaptive_note;  // why it did not run, when asked for
  int slowdowns = 0;
  double lowest_rate = 0, highest_pressure = 0;
};

// Backs up the VMs `request` selects on `host` into `repo` (opened for
// writing). Errors only for a request that selects nothing sensible or a
// `parallel` out of range (InvalidArgument), or a host that cannot list its
// domains; every per-VM failure is an outcome in the result.
Result<HostBackupResult> BackupHost(repository::Repository& repo,
                                    const snapshot::LibvirtHost& host,
                                    const HostBackupRequest& request);

// The sink one VM's backup writes through (called from the VMs' threads,
// `parallel` at a time); an error fails that VM only.
using PointSinkFactory =
    std::function<Result<std::unique_ptr<PointSink>>(const std::string& vm)>;

// The same, each VM through its own sink from `sinks`.
Result<HostBackupResult> BackupHost(const PointSinkFactory& sinks,
                                    const snapshot::LibvirtHost& host,
                                    const HostBackupRequest& request);

// One VM's report as `haven backup vm --json` prints it: name, ok,
// snapshot, error, consistency, consistency_reason, disks, skipped,
// new_stored_bytes, duration_seconds, then outcome, code, logical_bytes,
// read_bytes, new_bytes, phases {prepare,capture,read,finish}_seconds.
nlohmann::ordered_json VmBackupReportJson(const VmBackupReport& report);
// {vms: [...], succeeded, failed, cancelled, skipped, duration_seconds,
//  parallel, read_bytes, adaptive: {on, note, slowdowns, lowest_rate,
//  highest_pressure}}.
nlohmann::ordered_json HostBackupResultJson(const HostBackupResult& result);

}  // namespace haven::agent

#endif  // HAVEN_AGENT_HOST_BACKUP_H_
