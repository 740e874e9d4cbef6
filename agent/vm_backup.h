// agent/: the host agent's main job — back up libvirt VMs.
//
// A running VM is captured with a pull-mode backup job: all its disks at one
// instant, exported over NBD and read with libnbd. qcow2 disks get a bitmap
// in a new checkpoint; the next run reads only the extents dirty since the
// checkpoint of the VM's latest recovery point, and the new point is that
// point's image with the dirty ranges replaced (a full image logically).
// Anything that makes the dirty map untrustworthy — no earlier point or
// checkpoint, a checkpoint or bitmap gone or broken, a disk added or
// resized, --full — makes that disk a full read, logged with the reason;
// it never fails the job. Raw disks are read fully every time (they cannot
// hold a bitmap). CD-ROMs, read-only and network disks are skipped and
// listed.
//
// When the QEMU guest agent answers, the guest file systems on the backed-up
// disks are frozen just around the start of the job; the point is
// application-consistent only when every one of them was frozen. Otherwise
// (no agent, nothing mounted, a file system the agent cannot place on a
// disk or did not freeze) it is crash-consistent, and the manifest says why.
// Optional hooks run before the freeze and after the thaw.
//
// A shut-off VM's disks are read directly: raw files with their allocation
// map, qcow2 (with its backing chain) and other formats through qemu-nbd.
//
// The configuration is stored with every point as config files: domain XML
// (live and inactive), every network the interfaces use, the storage pools
// of the disks, NVRAM, snapshot metadata and host facts.
//
// A failure (VM stopped, crashed or undefined mid-backup, repository
// error) writes no recovery point and leaves no checkpoint, NBD socket or
// scratch file behind. A process killed mid-backup cannot clean up: the
// VM keeps its libvirt job, which the next backup of the VM aborts
// (snapshot::PullBackup::AbortLeftover) before starting its own.
#ifndef HAVEN_AGENT_VM_BACKUP_H_
#define HAVEN_AGENT_VM_BACKUP_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "agent/point_sink.h"
#include "base/outcome.h"
#include "base/progress.h"
#include "base/rate_limiter.h"
#include "repository/repository.h"
#include "snapshot/libvirt_host.h"

namespace haven::agent {

struct VmBackupOptions {
  bool full = false;         // ignore checkpoints: read every disk fully
  std::string pre_freeze;    // shell command run before the freeze
  std::string post_thaw;     // shell command run after the thaw
  double hook_timeout = 60;  // seconds; a hook over time is killed
  int threads = 0;
  std::string time;  // recorded time; empty: now
  ProgressFn progress;
  CancelToken cancel;  // checked between disks and between chunks
  std::function<void(const std::string&)> log;  // fallbacks, freeze, cleanup
  double fault_delay = 0;  // tests: sleep after the job started (seconds)
  // Reads from the VM's disks wait for this budget, shared with the other
  // VMs of a host job (BackupHost makes it); null: no limit.
  std::shared_ptr<RateLimiter> limit_read;
  // The host's facts (LibvirtHost::HostFacts), read once by a host job for
  // all its VMs; null: BackupVm reads them.
  std::shared_ptr<const std::vector<snapshot::ConfigFile>> host_facts;
};

struct VmDiskReport {
  std::string name;
  std::string mode;    // "full" | "incremental"
  std::string reason;  // why full
  uint64_t size = 0, read_bytes = 0;
  uint64_t changed_bytes = 0;  // chunks not kept from the parent (all, if full)
};

// Where a VM's backup spent its time (seconds). All but `read` is the fixed
// cost of a VM, paid whatever changed.
struct VmPhaseSeconds {
  double prepare = 0;  // domain, latest point, configuration, plan
  double capture = 0;  // hooks, freeze, the backup job begun, NBD opened
  double read = 0;     // reading the disks and storing their data
  double finish = 0;   // job ended, config stored, commit, old checkpoints
};

struct VmBackupReport {
  std::string name;
  // kOk (the point is committed), kFailed or kCancelled (no point was
  // written; status says why), kSkipped (excluded by BackupHost).
  Outcome outcome = Outcome::kFailed;
  Status status;
  bool ok() const {
    return outcome == Outcome::kOk || outcome == Outcome::kPartial;
  }
  repository::Manifest manifest;  // when ok()
  std::vector<VmDiskReport> disks;
  std::vector<std::pair<std::string, std::string>> skipped;  // disk, why
  double seconds = 0;
  VmPhaseSeconds phases;  // of a backup that got that far
};

// Backs up one VM into `sink`. Never throws away an error: report.outcome
// is kFailed (or kCancelled) and report.status says what happened (after
// sink.Abandon). The parent is sink.LatestPoint(name, "vm"); chunks are
// sink.chunk_size(); the point is written by sink.Commit.
VmBackupReport BackupVm(PointSink& sink, const snapshot::LibvirtHost& host,
                        const std::string& name,
                        const VmBackupOptions& options);

// The same into a repository opened for writing (a LocalPointSink whose
// LatestPoint refuses while a manifest of the VM is unreadable).
VmBackupReport BackupVm(repository::Repository& repo,
                        const snapshot::LibvirtHost& host,
                        const std::string& name,
                        const VmBackupOptions& options);

// A VM hook through haven::RunHook (base/process.h): `command` with
// HAVEN_VM and HAVEN_HOOK in the environment, killed after `timeout`
// seconds; a failure is Unavailable ("the pre-freeze hook exited with
// code 3").
Status RunHook(const std::string& command, const std::string& vm,
               const std::string& phase, double timeout);

}  // namespace haven::agent

#endif  // HAVEN_AGENT_VM_BACKUP_H_
