// Instant recovery: a VM runs straight from a recovery point, within
// seconds whatever the size of its disks, and later moves onto real storage
// without stopping.
//
//   restore vm POINT --instant   (PlanVmRestore + ExecuteVmRestore with
//                                 VmRestoreOptions::instant)
//     <dir>/.haven-instant-<name>/   0711, root
//        nbd.sock     haven-nbd (restore/nbd_main.cc) serving each disk of
//                     the point read-only as an NBD export named by its
//                     target; 0660, group of QEMU's user
//        <target>.qcow2  the overlay QEMU runs on: the guest's writes land
//                     here, reads of what it never wrote go to the server,
//                     which fetches only the chunks they touch (bounded
//                     cache); a read the repository cannot serve fails in
//                     the guest (EIO), it never returns other bytes
//        state.json   what this file describes, for --finish and --discard
//        nbd.pid, nbd.log, stats.json   the server's pid, log and figures
//   restore vm --instant --finish NAME
//     for each disk: libvirt block copy of the whole chain (overlay +
//     export) into the planned final file, while the VM runs; once in step,
//     pivot; the copy is synced. Then the server stops and the folder goes.
//     The VM's definition names the final files (libvirt updates it with the
//     pivot; checked, and redefined if not).
//   restore vm --instant --discard NAME
//     stops and undefines the VM, stops the server, removes the folder (the
//     guest's writes go with it).
//
// The server holds a shared repository lock while it runs: gc's sweep waits
// for it (a served point must keep its chunks).
#ifndef HAVEN_RESTORE_INSTANT_RESTORE_H_
#define HAVEN_RESTORE_INSTANT_RESTORE_H_

#include <functional>
#include <string>
#include <vector>

#include "base/progress.h"
#include "base/status.h"
#include "restore/vm_restore.h"
#include "snapshot/libvirt_host.h"

namespace haven::restore {

inline constexpr char kInstantDirPrefix[] = ".haven-instant-";

// Fills plan.instant_dir, each disk's overlay and plan.instant_xml (from
// plan.xml). A folder already at instant_dir is a conflict.
Status PlanInstant(VmPlan& plan);

// Starts the server and makes the overlays; writes state.json. On error
// nothing is left behind (server stopped, folder removed).
Status StartInstantExport(const VmPlan& plan, const InstantSource& source,
                          const std::string& qemu_label,
                          const std::function<void(const std::string&)>& log);

// Stops the server of an instant folder (its pid file, checked to be
// haven-nbd) and removes the folder.
void StopInstantExport(const std::string& instant_dir);

struct InstantDisk {
  std::string target, overlay, path, format;
  uint64_t size = 0;
};

struct InstantState {
  std::string dir, name, point, repository, socket;
  std::vector<InstantDisk> disks;
};

Result<InstantState> LoadInstantState(const std::string& dir);

// The instant folder a domain's disks run from; NotFound when none does.
Result<std::string> InstantDirOf(const snapshot::Vm& vm);

struct InstantFinishOptions {
  std::function<void(const std::string&)> log;
  // Progress of one disk's copy ("vm1 vda").
  std::function<ProgressFn(const std::string& label)> progress;
  CancelToken cancel;  // between disks, and while a copy runs (aborted)
};

struct InstantFinishResult {
  struct Disk {
    std::string target, path;
    uint64_t bytes = 0;
    double seconds = 0;
  };
  std::vector<Disk> disks;
  double seconds = 0;
};

// Moves a running instant VM onto its final files (see the top).
// FailedPrecondition when the VM is not running or does not run from a
// point. A finish that is interrupted is finished by running it again:
// disks already switched are skipped.
Result<InstantFinishResult> FinishInstant(const snapshot::LibvirtHost& host,
                                          const std::string& name,
                                          const InstantFinishOptions& options);

// Stops and undefines an instant VM and removes what its instant restore
// made. FailedPrecondition for a domain that does not run from a point.
Status DiscardInstant(const snapshot::LibvirtHost& host,
                      const std::string& name,
                      const std::function<void(const std::string&)>& log);

}  // namespace haven::restore

#endif  // HAVEN_RESTORE_INSTANT_RESTORE_H_
