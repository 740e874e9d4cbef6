// restore/: rebuild whole libvirt VMs from their recovery points, on the
// same host or on one that has never seen them (the host-loss path).
//
// A restore is planned first, changing nothing, and the plan is the value
// the run executes — a dry run shows exactly what a run with the same
// arguments on the unchanged host does: the disks to write (paths, formats,
// sizes, the space they need), the folders to create, the domain XML
// rewritten for this host with its UUID and MACs (a new identity is derived
// from the point, the new name and the host, so planning twice gives the
// same one), the virtual networks to create from their captured XML or to
// map, and every problem the run would hit: conflicts with what the host has
// and a preflight of the storage folder (not a folder, not writable,
// read-only, too little space, not enterable by QEMU's user). Any problem
// refuses the whole restore unless `replace` allows it. Execution then:
//   1. writes a journal <dir>/.haven-restore-<name>.json
//      (restore/restore_journal.h) naming every file and network this
//      restore may create, and updates it after each step;
//   2. writes each disk and the NVRAM beside its final path
//      (PATH.haven-restore, itself written as .haven-partial and synced);
//   3. creates the missing networks (defined, started, autostart);
//   4. moves the files into place, removes a replaced domain, defines the
//      new one (its <metadata> names the point), starts it if asked, and
//      removes the journal.
// A restore killed at any step is finished by running it again: the plan
// recognises its own work from the journal and the domain's metadata —
// complete staged disks are not written again, a domain it defined is not a
// conflict — and never claims what it did not create. A failed one removes
// the files it wrote (when libvirt refuses the definition too); networks it
// created stay, as does the removal of a domain it replaced.
#ifndef HAVEN_RESTORE_VM_RESTORE_H_
#define HAVEN_RESTORE_VM_RESTORE_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/progress.h"
#include "repository/repository.h"
#include "restore/image_restore.h"
#include "snapshot/domain_xml.h"
#include "snapshot/libvirt_host.h"

namespace haven::restore {

inline constexpr char kDefaultStorageDir[] = "/var/lib/libvirt/images";

// Instant recovery (restore/instant_restore.h): where the disks are served
// from. The passphrase goes to the server on a pipe, never in argv.
struct InstantSource {
  std::string repository;  // location haven-nbd opens (absolute or s3:)
  std::string passphrase;
  // The haven-nbd program; "": $HAVEN_NBD, else haven-nbd beside the
  // running program, else /usr/lib/haven/haven-nbd.
  std::string server;
  size_t cache_mb = 256;  // decompressed chunks kept, per disk
};

struct VmRestoreOptions {
  std::string name;         // new domain name; empty: the captured one
  std::string storage_dir;  // empty: the pool's folder or kDefaultStorageDir
  std::string pool;         // a folder-backed libvirt storage pool
  std::string format;       // raw | qcow2; empty: the original's
  std::map<std::string, std::string> network_map;  // network or bridge
  bool new_identity = false;                       // new UUID and MAC addresses
  bool replace = false;  // replace a same-named domain and files
  bool start = false;
  bool verify_ids = false;
  // Create a network the VM used and this host lacks from its definition
  // in the recovery point. Off: such a network is a conflict (map it).
  bool create_networks = true;
  // Set: instant recovery. Nothing is written; each disk is served from
  // the point under a qcow2 overlay and the VM is started at once.
  std::optional<InstantSource> instant;
  // Progress of one disk: `label` names it ("vm1 vda").
  std::function<ProgressFn(const std::string& label)> progress;
  CancelToken cancel;  // checked between VMs, disks and chunks
  std::function<void(const std::string&)> log;  // one line per step
};

struct PlannedDisk {
  std::string target;  // vda
  std::string path;    // final path
  std::string format;  // raw | qcow2
  uint64_t size = 0;
  uint64_t data_bytes = 0;  // from chunks: what the file needs (holes kept)
  bool exists = false;  // a file is at `path` (ours from a journal, or
                        // replaced)
  // "": written by this run; "staged": a complete PATH.haven-restore from
  // an interrupted run of this restore is used; "placed": already in place.
  std::string resume;
  // Instant recovery: the qcow2 overlay the VM runs on; `path` is where
  // `restore vm --instant --finish` copies the disk to.
  std::string overlay;
};

struct PlannedNetwork {
  std::string name;  // the name the restored VM uses
  std::string from;  // the captured name (differs when mapped)
  // create: from the recovery point by this VM's restore; restore: created
  // by `by`, an earlier VM of this restore; resume: created by an
  // interrupted run of this restore (started if stopped); exists | mapped:
  // the host's; bridge: a host bridge; missing: a conflict.
  std::string action;
  std::string xml;  // for create: the definition to use
  std::string by;   // for restore: the VM whose restore creates it
};

struct VmPlan {
  repository::Manifest snapshot;
  std::string source_name;  // the captured domain name
  std::string name;         // the domain name on this host
  std::string uuid;         // the UUID it gets: kept, or new
  bool new_uuid = false;
  // restore: the whole restore runs; finish: an interrupted run of this
  // restore defined the domain, only its last steps (start, journal) run;
  // done: the domain was restored from this point before and is left alone
  // (with `start`, started if it is stopped).
  std::string state = "restore";
  std::string dir;                       // where the files go
  std::vector<std::string> create_dirs;  // folders made, outermost first
  // In dir's file system: bytes the files need (holes kept), at full size,
  // and free now (before earlier VMs of the same restore took theirs).
  uint64_t space_needed = 0, space_full = 0, space_free = 0;
  std::string journal;
  std::vector<PlannedDisk> disks;
  std::vector<PlannedNetwork> networks;
  std::string nvram_path, nvram_config;  // config: the file in the snapshot
  std::string replace_domain;            // an existing domain to replace
  std::string xml;                       // the domain XML to define
  // Instant recovery: the folder of the overlays, the server's socket and
  // state (<dir>/.haven-instant-<name>), and the XML defined now (disks on
  // the overlays); `xml` is what the VM is once finished.
  std::string instant_dir, instant_xml;
  std::vector<std::pair<std::string, std::string>> macs;  // old -> new
  // conflicts: every problem that would make the run fail or harm
  // something (any one refuses the restore); warnings: what it does anyway.
  std::vector<std::string> conflicts, warnings;
};

// What earlier plans of one `restore host` will create, so that later plans
// neither conflict with them nor create a network twice.
struct PlanContext {
  std::set<std::string> names, paths;
  std::map<std::string, std::string> networks;  // created -> by which VM
  std::set<std::string> new_macs;               // given to earlier VMs
  std::map<uint64_t, uint64_t> space_claimed;   // st_dev -> bytes
  std::optional<std::string> qemu_label;        // read once
  // MAC address (lower case) -> domain, for every domain on the host; read
  // by the first plan that needs it.
  std::optional<std::multimap<std::string, std::string>> host_macs;
};

struct VmRestoreResult {
  bool defined = false, started = false;
  bool already = false;  // plan state "done": nothing was written
  std::string uuid;
  std::string start_error;  // why --start failed (the VM is defined)
  struct Disk {
    uint64_t data_bytes = 0;
    double seconds = 0;
  };
  std::vector<Disk> disks;  // as plan.disks
  std::vector<std::string> networks_created;
  double seconds = 0;
};

// Plans the restore of `snapshot` (a `haven backup vm` point) onto `host`.
// Errors are for what makes a plan impossible (not a VM point, unreadable
// XML); conflicts with the host are listed in the plan. A point a host agent
// committed (snapshot.agent_id) is rewritten with DomainRewrite::untrusted,
// and what its XML and the networks created from it would reach on `host`
// (snapshot::UntrustedDomainProblems, UntrustedNetworkProblems, on the XML
// as defined) are conflicts too; ExecuteVmRestore checks them again.
Result<VmPlan> PlanVmRestore(const repository::PointReader& repo,
                             const repository::Manifest& snapshot,
                             const snapshot::LibvirtHost& host,
                             const VmRestoreOptions& options,
                             PlanContext& context);

// Carries out a plan without conflicts.
Result<VmRestoreResult> ExecuteVmRestore(const repository::PointReader& repo,
                                         const snapshot::LibvirtHost& host,
                                         const VmPlan& plan,
                                         const VmRestoreOptions& options);

}  // namespace haven::restore

#endif  // HAVEN_RESTORE_VM_RESTORE_H_
