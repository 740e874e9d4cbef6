// snapshot/: a libvirt host — its domains, their configuration, and
// pull-mode backup jobs with checkpoints (libvirt 7.6+ per-disk backup
// modes; QEMU exports the frozen disks over NBD on a unix socket).
//
// Every libvirt object is held by an RAII handle. A PullBackup that is not
// ended on purpose aborts its job, deletes the checkpoint it created and
// removes its socket directory when destroyed: a failed backup leaves
// nothing behind.
#ifndef HAVEN_SNAPSHOT_LIBVIRT_HOST_H_
#define HAVEN_SNAPSHOT_LIBVIRT_HOST_H_

#include <libvirt/libvirt.h>

#include <memory>
#include <string>
#include <vector>

#include "snapshot/domain_xml.h"
#include "snapshot/nbd_source.h"

namespace haven::snapshot {

struct ConnClose {
  void operator()(virConnectPtr c) const { virConnectClose(c); }
};
struct DomainFree {
  void operator()(virDomainPtr d) const { virDomainFree(d); }
};
using ConnPtr = std::unique_ptr<virConnect, ConnClose>;
using DomainPtr = std::unique_ptr<virDomain, DomainFree>;

// The prefix of the checkpoints Haven creates.
inline constexpr char kCheckpointPrefix[] = "haven-";

struct GuestFileSystem {
  std::string mountpoint, type, device;
  std::vector<std::string> disks;  // targets ("vda"); untrusted, from the guest
};

class Vm {
 public:
  Vm(virConnectPtr conn, DomainPtr dom, std::string name)
      : conn_(conn), dom_(std::move(dom)), name_(std::move(name)) {}
  const std::string& name() const { return name_; }
  virDomainPtr get() const { return dom_.get(); }

  // Running or paused (has a QEMU process); false when shut off.
  Result<bool> Active() const;
  Result<std::string> Xml(bool inactive) const;
  // Virtual size of a disk of a running domain.
  Result<uint64_t> DiskCapacity(const std::string& target) const;
  // Names of this domain's checkpoints that start with kCheckpointPrefix.
  Result<std::vector<std::string>> HavenCheckpoints() const;
  // Disks the checkpoint keeps a bitmap for; NotFound if it does not exist.
  Result<std::vector<std::string>> CheckpointBitmaps(
      const std::string& checkpoint) const;
  Status DeleteCheckpoint(const std::string& checkpoint) const;
  // Path of a volume disk (pool/volume) or the disk's own path.
  Result<std::string> DiskPath(const DomainDisk& disk) const;
  // Domain XML (live and inactive), networks, pools, NVRAM and snapshot
  // metadata, then `host_facts` (LibvirtHost::HostFacts, read once per
  // host job). `xml` is the domain's XML already read (live if `active`,
  // else the defined one) and `info` what it says. Missing optional parts
  // are listed in `notes`. File names are checked where the files are
  // stored (agent::StoreConfigFiles).
  Result<std::vector<ConfigFile>> CaptureConfig(
      const DomainInfo& info, bool active, const std::string& xml,
      const std::vector<ConfigFile>& host_facts,
      std::vector<std::string>& notes) const;
  // The guest's mounted file systems as its QEMU guest agent lists them
  // (guest-get-fsinfo), each with the disk targets it lies on (empty when
  // the agent cannot map it to a disk). FailedPrecondition when the VM has
  // no agent or it does not answer; another error when the agent cannot
  // list file systems (an old one).
  Result<std::vector<GuestFileSystem>> GuestFileSystems() const;
  // Freezes guest file systems through the QEMU guest agent: those mounted
  // at `mountpoints`, or every one when it is empty. Returns how many it
  // froze (0 is possible: nothing mounted, or all excluded).
  Result<int> Freeze(const std::vector<std::string>& mountpoints = {}) const;
  // Thaws every frozen guest file system.
  Status Thaw() const;

  // Live block copy (instant recovery's finish): copies the whole chain of
  // the running disk `target` into a new file `path` of `format` (libvirt
  // creates it), as a transient job, so a persistent domain may run it.
  Status StartBlockCopy(const std::string& target, const std::string& path,
                        const std::string& format) const;
  struct BlockJob {
    bool active = false;
    uint64_t cur = 0, end = 0;
  };
  Result<BlockJob> BlockJobInfo(const std::string& target) const;
  // Switches the disk over to the finished copy; an error while the copy
  // is not yet in step with the source (try again).
  Status PivotBlockCopy(const std::string& target) const;
  Status AbortBlockJob(const std::string& target) const;
  Status Destroy() const;
  // Whether the QEMU guest agent answers (it is asked the guest's time).
  bool AgentAnswers() const;
  // The first screen as QEMU captures it: (MIME type, bytes), e.g.
  // image/x-portable-pixmap. An error when the VM has no display.
  Result<std::pair<std::string, std::string>> Screenshot() const;

 private:
  virConnectPtr conn_;
  DomainPtr dom_;
  std::string name_;
};

// The folder a restore puts disks in for a pool in state `pool`: its target
// path when it is an active pool backed by a folder (dir, fs, netfs) with
// an absolute path; otherwise why not, in words.
Result<std::string> FolderOfPool(const std::string& name, bool active,
                                 const Result<PoolInfo>& info);

class LibvirtHost {
 public:
  static Result<std::unique_ptr<LibvirtHost>> Connect(const std::string& uri);
  // All defined domains, sorted by name.
  Result<std::vector<std::string>> DomainNames() const;
  Result<std::unique_ptr<Vm>> Lookup(const std::string& name) const;
  const std::string& uri() const { return uri_; }
  // What a rebuild elsewhere needs to know of this host, as config files
  // stored with each point: host/facts.json (libvirt and hypervisor
  // versions, host name, CPU model, URI) and host/capabilities.xml. A host
  // job reads them once for all its VMs.
  Result<std::vector<ConfigFile>> HostFacts() const;

  // --- for restores onto this host ---
  // The name of the domain with this UUID, "" if there is none.
  Result<std::string> DomainNameByUuid(const std::string& uuid) const;
  // Defines (or redefines) a domain; returns its UUID.
  Result<std::string> DefineDomain(const std::string& xml) const;
  Status StartDomain(const std::string& name) const;
  // Stops the domain if it runs and undefines it with its managed save,
  // snapshot and checkpoint metadata; its NVRAM and disk files are kept.
  Status RemoveDomain(const std::string& name) const;
  // The defined XML of every network, keyed by network name.
  Result<std::vector<std::pair<std::string, std::string>>> NetworkXmls() const;
  // Every network and storage pool of the host with its state, sorted by
  // name, for choosing where a restore goes. `info` is the parsed XML of
  // the running definition, or why it does not parse.
  struct NetworkState {
    std::string name;
    bool active = false, autostart = false;
    Result<NetworkInfo> info = NetworkInfo{};
  };
  Result<std::vector<NetworkState>> Networks() const;
  struct PoolState {
    std::string name;
    bool active = false;
    Result<PoolInfo> info = PoolInfo{};
  };
  Result<std::vector<PoolState>> Pools() const;
  // Defines a network, starts it and marks it autostart.
  Status CreateNetwork(const std::string& name, const std::string& xml) const;
  // Starts a defined network if it is not running and marks it autostart
  // (a network an interrupted restore defined). NotFound if there is none.
  Status StartNetwork(const std::string& name) const;
  // Stops and undefines a network; a missing one is fine.
  Status RemoveNetwork(const std::string& name) const;
  // "+UID:+GID" the host's QEMU processes run as (capabilities, DAC model;
  // domain type "kvm", else "qemu"); "" if the host does not say.
  Result<std::string> QemuDacLabel() const;
  // The target path of a storage pool backed by a folder (dir, fs, netfs);
  // other pool types, and inactive pools, are refused (FolderOfPool).
  Result<std::string> PoolFolder(const std::string& pool) const;
  Status RefreshPool(const std::string& pool) const;

 private:
  ConnPtr conn_;
  std::string uri_;
};

struct JobDisk {
  std::string target;
  std::string incremental_from;  // checkpoint; empty: full
  bool bitmap = false;           // the new checkpoint tracks this disk
};

class PullBackup {
 public:
  // Starts the job for `disks` (other disks of the domain are left out)
  // and, unless `checkpoint` is empty, creates that checkpoint at the same
  // instant. `owner` ("+UID:+GID", may be empty) is the user QEMU runs as:
  // the socket directory is made for it.
  static Result<std::unique_ptr<PullBackup>> Begin(
      const Vm& vm, const std::vector<JobDisk>& disks,
      const std::vector<std::string>& all_targets,
      const std::string& checkpoint, const std::string& owner);
  ~PullBackup();

  // A pull backup that a Haven process began on `vm` and then died with
  // (kill -9, a crash) is still running in QEMU, and libvirt refuses
  // another job until it ends. Such a job is recognized by its NBD socket
  // in a Haven job folder whose owner.lock no process holds any more (the
  // owner holds it while its job lives): it is aborted, its folder removed,
  // and the returned note says so. "" when the domain has no job, or a job
  // that is not such a leftover (another Haven's running backup, a
  // migration): Begin then refuses as before. An error only when aborting
  // the leftover failed.
  static Result<std::string> AbortLeftover(const Vm& vm);

  NbdSpec SpecFor(const JobDisk& disk) const;
  const std::string& socket() const { return socket_; }
  // Ends the job; the checkpoint stays (it is the next run's base).
  Status End();
  // Ends the job if it runs and deletes the checkpoint it created: for a
  // backup that failed after End (the point was not committed).
  void Discard();

 private:
  PullBackup(const Vm& vm) : vm_(vm) {}
  void Cleanup();
  void WaitForJobEnd(double timeout);
  void RemoveFiles();

  const Vm& vm_;
  std::string dir_, socket_, checkpoint_;
  std::vector<std::string> scratch_;
  bool started_ = false, ended_ = false, checkpoint_created_ = false;
  int lock_fd_ = -1;  // owner.lock in dir_, flock'ed while the job lives
};

// The libvirt error for a failed call, with context.
Status LibvirtError(const std::string& what);

}  // namespace haven::snapshot

#endif  // HAVEN_SNAPSHOT_LIBVIRT_HOST_H_
