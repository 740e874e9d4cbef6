#include "snapshot/libvirt_host.h"

#include <fcntl.h>
#include <libvirt/virterror.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/file.h"
#include "base/process.h"

namespace haven::snapshot {
namespace {

struct CheckpointFree {
  void operator()(virDomainCheckpointPtr c) const {
    virDomainCheckpointFree(c);
  }
};
struct SnapshotFree {
  void operator()(virDomainSnapshotPtr s) const { virDomainSnapshotFree(s); }
};
struct NetworkFree {
  void operator()(virNetworkPtr n) const { virNetworkFree(n); }
};
struct PoolFree {
  void operator()(virStoragePoolPtr p) const { virStoragePoolFree(p); }
};
struct VolFree {
  void operator()(virStorageVolPtr v) const { virStorageVolFree(v); }
};
using CheckpointPtr = std::unique_ptr<virDomainCheckpoint, CheckpointFree>;
using SnapshotPtr = std::unique_ptr<virDomainSnapshot, SnapshotFree>;
using NetworkPtr = std::unique_ptr<virNetwork, NetworkFree>;
using PoolPtr = std::unique_ptr<virStoragePool, PoolFree>;
using VolPtr = std::unique_ptr<virStorageVol, VolFree>;

// Takes ownership of a string libvirt allocated.
std::string Take(char* s) {
  if (!s) return "";
  std::string out(s);
  std::free(s);
  return out;
}

std::string Version(unsigned long v) {
  return std::to_string(v / 1000000) + "." + std::to_string(v / 1000 % 1000) +
         "." + std::to_string(v % 1000);
}

// One folder per job for its NBD socket and scratch files (QEMU keeps the
// old content of blocks the guest overwrites during the job there).
constexpr char kJobRoot[] = "/var/lib/haven/jobs";
constexpr char kOwnerLock[] = "owner.lock";

// Removes a persistent bitmap from a qcow2 file that no QEMU has open. A
// bitmap that is not there is fine.
Status RemoveQcow2Bitmap(const std::string& path, const std::string& bitmap) {
  HAVEN_ASSIGN_OR_RETURN(ProcessResult r,
                         RunProcess({"qemu-img", "bitmap", "--remove", "-f",
                                     "qcow2", "--", path, bitmap},
                                    {}, 120, true));
  if (r.exited && r.exit_code == 0) return OkStatus();
  if (r.output.find("not found") != std::string::npos) return OkStatus();
  return Unavailable("qemu-img bitmap --remove " + path + " " + bitmap +
                     " failed: " + r.output);
}

// Creates an empty qcow2 image of `bytes` virtual bytes: the scratch file of
// a pull backup (libvirt's schema allows only qcow2 there), where QEMU keeps
// the old content of blocks the guest overwrites while the job runs.
Status CreateScratch(const std::string& path, uint64_t bytes) {
  HAVEN_ASSIGN_OR_RETURN(ProcessResult r,
                         RunProcess({"qemu-img", "create", "-q", "-f", "qcow2",
                                     "--", path, std::to_string(bytes)},
                                    {}, 120, true));
  if (r.exited && r.exit_code == 0) return OkStatus();
  return Unavailable("qemu-img create " + path + " failed: " + r.output);
}

}  // namespace

Status LibvirtError(const std::string& what) {
  const char* msg = virGetLastErrorMessage();
  return Unavailable(what + ": " + (msg ? msg : "unknown libvirt error"));
}

Status Vm::StartBlockCopy(const std::string& target, const std::string& path,
                          const std::string& format) const {
  const std::string xml = "<disk type='file'><source file='" + XmlEscape(path) +
                          "'/><driver type='" + XmlEscape(format) +
                          "'/></disk>";
  if (virDomainBlockCopy(dom_.get(), target.c_str(), xml.c_str(), nullptr, 0,
                         VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB) < 0)
    return LibvirtError("copying disk " + target + " of " + name_ + " to " +
                        path);
  return OkStatus();
}

Result<Vm::BlockJob> Vm::BlockJobInfo(const std::string& target) const {
  virDomainBlockJobInfo info{};
  int rc = virDomainGetBlockJobInfo(dom_.get(), target.c_str(), &info, 0);
  if (rc < 0)
    return LibvirtError("reading the block job of disk " + target + " of " +
                        name_);
  BlockJob j;
  j.active = rc == 1;
  j.cur = info.cur;
  j.end = info.end;
  return j;
}

Status Vm::PivotBlockCopy(const std::string& target) const {
  if (virDomainBlockJobAbort(dom_.get(), target.c_str(),
                             VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT) < 0)
    return LibvirtError("switching disk " + target + " of " + name_ +
                        " to its copy");
  return OkStatus();
}

Status Vm::AbortBlockJob(const std::string& target) const {
  if (virDomainBlockJobAbort(dom_.get(), target.c_str(), 0) < 0)
    return LibvirtError("stopping the block job of disk " + target + " of " +
                        name_);
  return OkStatus();
}

bool Vm::AgentAnswers() const {
  long long seconds = 0;
  unsigned int nseconds = 0;
  return virDomainGetTime(dom_.get(), &seconds, &nseconds, 0) == 0;
}

Result<std::pair<std::string, std::string>> Vm::Screenshot() const {
  virStreamPtr st = virStreamNew(conn_, 0);
  if (!st) return LibvirtError("a stream for the screenshot of " + name_);
  char* mime = virDomainScreenshot(dom_.get(), st, 0, 0);
  if (!mime) {
    Status s = LibvirtError("the screenshot of " + name_);
    virStreamFree(st);
    return s;
  }
  std::pair<std::string, std::string> out{mime, {}};
  std::free(mime);
  char buf[65536];
  for (;;) {
    int n = virStreamRecv(st, buf, sizeof buf);
    if (n < 0) {
      Status s = LibvirtError("reading the screenshot of " + name_);
      virStreamAbort(st);
      virStreamFree(st);
      return s;
    }
    if (n == 0) break;
    out.second.append(buf, static_cast<size_t>(n));
    if (out.second.size() > (64u << 20)) {
      virStreamAbort(st);
      virStreamFree(st);
      return DataLoss("the screenshot of " + name_ + " is over 64 MiB");
    }
  }
  virStreamFinish(st);
  virStreamFree(st);
  return out;
}

Status Vm::Destroy() const {
  if (virDomainIsActive(dom_.get()) == 1 && virDomainDestroy(dom_.get()) < 0)
    return LibvirtError("stopping " + name_);
  return OkStatus();
}

Result<std::unique_ptr<LibvirtHost>> LibvirtHost::Connect(
    const std::string& uri) {
  // Errors are returned and reported by Haven, not printed by libvirt.
  virSetErrorFunc(nullptr, [](void*, virErrorPtr) {});
  std::unique_ptr<LibvirtHost> h(new LibvirtHost);
  h->uri_ = uri;
  h->conn_.reset(virConnectOpen(uri.c_str()));
  if (!h->conn_)
    return LibvirtError("cannot connect to libvirt at " + uri +
                        " (is libvirtd running?)");
  return h;
}

Result<std::vector<std::string>> LibvirtHost::DomainNames() const {
  virDomainPtr* doms = nullptr;
  int n = virConnectListAllDomains(conn_.get(), &doms, 0);
  if (n < 0) return LibvirtError("listing domains on " + uri_);
  std::vector<std::string> names;
  for (int i = 0; i < n; ++i) {
    DomainPtr d(doms[i]);
    if (const char* name = virDomainGetName(d.get())) names.push_back(name);
  }
  std::free(doms);
  std::sort(names.begin(), names.end());
  return names;
}

Result<std::unique_ptr<Vm>> LibvirtHost::Lookup(const std::string& name) const {
  DomainPtr d(virDomainLookupByName(conn_.get(), name.c_str()));
  if (!d) return NotFound("no VM named '" + name + "' on " + uri_);
  return std::make_unique<Vm>(conn_.get(), std::move(d), name);
}

Result<std::string> LibvirtHost::DomainNameByUuid(
    const std::string& uuid) const {
  DomainPtr d(virDomainLookupByUUIDString(conn_.get(), uuid.c_str()));
  if (!d) return std::string();
  const char* name = virDomainGetName(d.get());
  return std::string(name ? name : "");
}

Result<std::string> LibvirtHost::DefineDomain(const std::string& xml) const {
  DomainPtr d(virDomainDefineXML(conn_.get(), xml.c_str()));
  if (!d) return LibvirtError("defining the domain on " + uri_);
  char uuid[VIR_UUID_STRING_BUFLEN];
  if (virDomainGetUUIDString(d.get(), uuid) < 0)
    return LibvirtError("UUID of the defined domain");
  return std::string(uuid);
}

Status LibvirtHost::StartDomain(const std::string& name) const {
  DomainPtr d(virDomainLookupByName(conn_.get(), name.c_str()));
  if (!d) return LibvirtError("looking up " + name);
  if (virDomainCreate(d.get()) < 0) return LibvirtError("starting " + name);
  return OkStatus();
}

Status LibvirtHost::RemoveDomain(const std::string& name) const {
  DomainPtr d(virDomainLookupByName(conn_.get(), name.c_str()));
  if (!d) return OkStatus();
  if (virDomainIsActive(d.get()) == 1 && virDomainDestroy(d.get()) < 0)
    return LibvirtError("stopping " + name);
  // Drivers without checkpoints or NVRAM refuse those flags as invalid.
  const unsigned optional =
      VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | VIR_DOMAIN_UNDEFINE_KEEP_NVRAM;
  const unsigned flags = VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                         VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA | optional;
  int rc = virDomainUndefineFlags(d.get(), flags);
  if (rc < 0 && virGetLastErrorCode() == VIR_ERR_INVALID_ARG)
    rc = virDomainUndefineFlags(d.get(), flags & ~optional);
  if (rc < 0) return LibvirtError("undefining " + name);
  return OkStatus();
}

Result<std::vector<std::pair<std::string, std::string>>>
LibvirtHost::NetworkXmls() const {
  virNetworkPtr* nets = nullptr;
  int n = virConnectListAllNetworks(conn_.get(), &nets, 0);
  if (n < 0) return LibvirtError("listing networks on " + uri_);
  std::vector<NetworkPtr> held;
  for (int i = 0; i < n; ++i) held.emplace_back(nets[i]);
  std::free(nets);
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& net : held) {
    const char* name = virNetworkGetName(net.get());
    char* xml = virNetworkGetXMLDesc(net.get(), VIR_NETWORK_XML_INACTIVE);
    if (!xml && virGetLastErrorCode() == VIR_ERR_INVALID_ARG)
      xml = virNetworkGetXMLDesc(net.get(), 0);  // a driver without it
    if (!name || !xml) return LibvirtError("XML of a network on " + uri_);
    out.emplace_back(name, Take(xml));
  }
  std::sort(out.begin(), out.end());
  return out;
}

Status LibvirtHost::CreateNetwork(const std::string& name,
                                  const std::string& xml) const {
  // Define would silently update a network of the same name and UUID.
  if (NetworkPtr existing{virNetworkLookupByName(conn_.get(), name.c_str())})
    return AlreadyExists("network " + name + " appeared on " + uri_ +
                         " during the restore; it is left as it is");
  NetworkPtr net(virNetworkDefineXML(conn_.get(), xml.c_str()));
  if (!net) return LibvirtError("defining network " + name);
  if (virNetworkIsActive(net.get()) != 1 && virNetworkCreate(net.get()) < 0)
    return LibvirtError("starting network " + name);
  if (virNetworkSetAutostart(net.get(), 1) < 0)
    return LibvirtError("marking network " + name + " autostart");
  return OkStatus();
}

Status LibvirtHost::StartNetwork(const std::string& name) const {
  NetworkPtr net(virNetworkLookupByName(conn_.get(), name.c_str()));
  if (!net) return NotFound("no network named " + name + " on " + uri_);
  if (virNetworkIsActive(net.get()) != 1 && virNetworkCreate(net.get()) < 0)
    return LibvirtError("starting network " + name);
  if (virNetworkSetAutostart(net.get(), 1) < 0)
    return LibvirtError("marking network " + name + " autostart");
  return OkStatus();
}

Status LibvirtHost::RemoveNetwork(const std::string& name) const {
  NetworkPtr net(virNetworkLookupByName(conn_.get(), name.c_str()));
  if (!net) return OkStatus();
  if (virNetworkIsActive(net.get()) == 1 && virNetworkDestroy(net.get()) < 0)
    return LibvirtError("stopping network " + name);
  if (virNetworkUndefine(net.get()) < 0)
    return LibvirtError("undefining network " + name);
  return OkStatus();
}

Result<std::string> LibvirtHost::QemuDacLabel() const {
  char* caps = virConnectGetCapabilities(conn_.get());
  if (!caps) return LibvirtError("capabilities of " + uri_);
  const std::string xml = Take(caps);
  std::string label = ParseHostDacLabel(xml, "kvm");
  if (label.empty()) label = ParseHostDacLabel(xml, "qemu");
  return label;
}

Result<std::string> FolderOfPool(const std::string& name, bool active,
                                 const Result<PoolInfo>& info) {
  if (!active)
    return FailedPrecondition("storage pool " + name +
                              " is not active; start it with 'virsh "
                              "pool-start " +
                              name + "'");
  if (!info.ok()) return info.status();
  const PoolInfo& pool = info.value();
  if (pool.type != "dir" && pool.type != "fs" && pool.type != "netfs")
    return InvalidArgument("storage pool " + name + " is of type '" +
                           pool.type +
                           "'; Haven restores into folder pools (dir, fs, "
                           "netfs) — use --storage-dir or such a pool");
  if (pool.path.empty() || pool.path[0] != '/')
    return InvalidArgument("storage pool " + name +
                           " has no absolute target path");
  return pool.path;
}

Result<std::string> LibvirtHost::PoolFolder(const std::string& pool) const {
  PoolPtr p(virStoragePoolLookupByName(conn_.get(), pool.c_str()));
  if (!p) return NotFound("no storage pool named '" + pool + "' on " + uri_);
  const bool active = virStoragePoolIsActive(p.get()) == 1;
  if (!active) return FolderOfPool(pool, false, PoolInfo{});
  char* xml = virStoragePoolGetXMLDesc(p.get(), 0);
  if (!xml) return LibvirtError("XML of storage pool " + pool);
  return FolderOfPool(pool, true, ParsePoolXml(Take(xml)));
}

Result<std::vector<LibvirtHost::NetworkState>> LibvirtHost::Networks() const {
  virNetworkPtr* nets = nullptr;
  int n = virConnectListAllNetworks(conn_.get(), &nets, 0);
  if (n < 0) return LibvirtError("listing networks on " + uri_);
  std::vector<NetworkPtr> held;
  for (int i = 0; i < n; ++i) held.emplace_back(nets[i]);
  std::free(nets);
  std::vector<NetworkState> out;
  for (const auto& net : held) {
    const char* name = virNetworkGetName(net.get());
    if (!name) continue;
    NetworkState st;
    st.name = name;
    int autostart = 0;
    st.active = virNetworkIsActive(net.get()) == 1;
    st.autostart =
        virNetworkGetAutostart(net.get(), &autostart) == 0 && autostart == 1;
    char* xml = virNetworkGetXMLDesc(net.get(), 0);
    st.info = xml ? ParseNetworkXml(Take(xml))
                  : Result<NetworkInfo>(LibvirtError("XML of network " +
                                                     st.name + " on " + uri_));
    out.push_back(std::move(st));
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

Result<std::vector<LibvirtHost::PoolState>> LibvirtHost::Pools() const {
  virStoragePoolPtr* pools = nullptr;
  int n = virConnectListAllStoragePools(conn_.get(), &pools, 0);
  if (n < 0) return LibvirtError("listing storage pools on " + uri_);
  std::vector<PoolPtr> held;
  for (int i = 0; i < n; ++i) held.emplace_back(pools[i]);
  std::free(pools);
  std::vector<PoolState> out;
  for (const auto& pool : held) {
    const char* name = virStoragePoolGetName(pool.get());
    if (!name) continue;
    PoolState st;
    st.name = name;
    st.active = virStoragePoolIsActive(pool.get()) == 1;
    char* xml = virStoragePoolGetXMLDesc(pool.get(), 0);
    st.info = xml ? ParsePoolXml(Take(xml))
                  : Result<PoolInfo>(LibvirtError("XML of storage pool " +
                                                  st.name + " on " + uri_));
    out.push_back(std::move(st));
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

Status LibvirtHost::RefreshPool(const std::string& pool) const {
  PoolPtr p(virStoragePoolLookupByName(conn_.get(), pool.c_str()));
  if (!p || virStoragePoolRefresh(p.get(), 0) < 0)
    return LibvirtError("refreshing storage pool " + pool);
  return OkStatus();
}

Result<bool> Vm::Active() const {
  int state = 0, reason = 0;
  if (virDomainGetState(dom_.get(), &state, &reason, 0) < 0)
    return LibvirtError("state of " + name_);
  return state != VIR_DOMAIN_SHUTOFF && state != VIR_DOMAIN_CRASHED &&
         state != VIR_DOMAIN_NOSTATE;
}

Result<std::string> Vm::Xml(bool inactive) const {
  unsigned flags = VIR_DOMAIN_XML_SECURE;
  if (inactive) flags |= VIR_DOMAIN_XML_INACTIVE;
  char* xml = virDomainGetXMLDesc(dom_.get(), flags);
  if (!xml) return LibvirtError("XML of " + name_);
  return Take(xml);
}

Result<uint64_t> Vm::DiskCapacity(const std::string& target) const {
  virDomainBlockInfo info;
  if (virDomainGetBlockInfo(dom_.get(), target.c_str(), &info, 0) < 0)
    return LibvirtError("size of disk " + target + " of " + name_);
  return static_cast<uint64_t>(info.capacity);
}

Result<std::vector<std::string>> Vm::HavenCheckpoints() const {
  virDomainCheckpointPtr* cps = nullptr;
  int n = virDomainListAllCheckpoints(dom_.get(), &cps, 0);
  if (n < 0) return LibvirtError("checkpoints of " + name_);
  std::vector<std::string> names;
  for (int i = 0; i < n; ++i) {
    CheckpointPtr c(cps[i]);
    std::string name = virDomainCheckpointGetName(c.get());
    if (name.rfind(kCheckpointPrefix, 0) == 0) names.push_back(name);
  }
  std::free(cps);
  std::sort(names.begin(), names.end());
  return names;
}

Result<std::vector<std::string>> Vm::CheckpointBitmaps(
    const std::string& checkpoint) const {
  CheckpointPtr c(
      virDomainCheckpointLookupByName(dom_.get(), checkpoint.c_str(), 0));
  if (!c)
    return NotFound("checkpoint " + checkpoint + " of " + name_ +
                    " does not exist");
  char* xml = virDomainCheckpointGetXMLDesc(c.get(), 0);
  if (!xml) return LibvirtError("XML of checkpoint " + checkpoint);
  return ParseCheckpointBitmapDisks(Take(xml));
}

Status Vm::DeleteCheckpoint(const std::string& checkpoint) const {
  CheckpointPtr c(
      virDomainCheckpointLookupByName(dom_.get(), checkpoint.c_str(), 0));
  if (!c) return OkStatus();  // already gone
  HAVEN_ASSIGN_OR_RETURN(bool active, Active());
  if (!active) {
    // libvirt 9 deletes only the metadata of a shut-off domain's checkpoint;
    // the bitmaps in its qcow2 disks are removed with qemu-img.
    char* cp_xml = virDomainCheckpointGetXMLDesc(c.get(), 0);
    if (!cp_xml) return LibvirtError("XML of checkpoint " + checkpoint);
    HAVEN_ASSIGN_OR_RETURN(auto disks,
                           ParseCheckpointBitmapDisks(Take(cp_xml)));
    HAVEN_ASSIGN_OR_RETURN(std::string xml, Xml(true));
    HAVEN_ASSIGN_OR_RETURN(DomainInfo info, ParseDomainXml(xml));
    for (const auto& d : info.disks) {
      if (std::find(disks.begin(), disks.end(), d.target) == disks.end() ||
          d.format != "qcow2")
        continue;
      auto path = DiskPath(d);
      if (!path.ok()) return path.status();
      HAVEN_RETURN_IF_ERROR(RemoveQcow2Bitmap(*path, checkpoint));
    }
    if (virDomainCheckpointDelete(
            c.get(), VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY) < 0)
      return LibvirtError("deleting checkpoint " + checkpoint + " of " + name_);
    return OkStatus();
  }
  // Right after a job ends QEMU may still be releasing the bitmap.
  for (int attempt = 0; attempt < 8; ++attempt) {
    if (virDomainCheckpointDelete(c.get(), 0) == 0) return OkStatus();
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  // A checkpoint whose bitmap is broken or gone cannot be deleted with its
  // bitmaps; drop its metadata so it is never used again.
  Status full =
      LibvirtError("deleting checkpoint " + checkpoint + " of " + name_);
  if (virDomainCheckpointDelete(
          c.get(), VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY) == 0)
    return OkStatus();
  return full;
}

Result<std::string> Vm::DiskPath(const DomainDisk& disk) const {
  if (disk.volume.empty()) return disk.path;
  PoolPtr pool(virStoragePoolLookupByName(conn_, disk.pool.c_str()));
  if (!pool) return LibvirtError("storage pool " + disk.pool);
  VolPtr vol(virStorageVolLookupByName(pool.get(), disk.volume.c_str()));
  if (!vol) return LibvirtError("volume " + disk.volume + " in " + disk.pool);
  char* path = virStorageVolGetPath(vol.get());
  if (!path) return LibvirtError("path of volume " + disk.volume);
  return Take(path);
}

Result<std::vector<ConfigFile>> Vm::CaptureConfig(
    const DomainInfo& info, bool active, const std::string& xml,
    const std::vector<ConfigFile>& host_facts,
    std::vector<std::string>& notes) const {
  std::vector<ConfigFile> files;
  files.push_back({"domain.xml", xml});
  if (active) {
    HAVEN_ASSIGN_OR_RETURN(std::string inactive_xml, Xml(true));
    files.push_back({"domain-inactive.xml", inactive_xml});
  } else {
    files.push_back({"domain-inactive.xml", xml});
  }
  for (const auto& net : info.networks) {
    NetworkPtr n(virNetworkLookupByName(conn_, net.c_str()));
    char* xml = n ? virNetworkGetXMLDesc(n.get(), 0) : nullptr;
    if (!xml) {
      notes.push_back("network " + net +
                      " not captured: " + LibvirtError("lookup").message());
      continue;
    }
    files.push_back({"networks/" + net + ".xml", Take(xml)});
  }
  // Pools: those named by volume disks and those holding file disks.
  std::vector<std::string> pools = info.pools;
  for (const auto& d : info.disks) {
    if (d.path.empty()) continue;
    VolPtr vol(virStorageVolLookupByPath(conn_, d.path.c_str()));
    if (!vol) continue;  // a file outside every pool
    PoolPtr p(virStoragePoolLookupByVolume(vol.get()));
    if (!p) continue;
    std::string name = virStoragePoolGetName(p.get());
    if (std::find(pools.begin(), pools.end(), name) == pools.end())
      pools.push_back(name);
  }
  virResetLastError();
  for (const auto& pool : pools) {
    PoolPtr p(virStoragePoolLookupByName(conn_, pool.c_str()));
    char* xml = p ? virStoragePoolGetXMLDesc(p.get(), 0) : nullptr;
    if (!xml) {
      notes.push_back("storage pool " + pool + " not captured");
      continue;
    }
    files.push_back({"pools/" + pool + ".xml", Take(xml)});
  }
  if (!info.nvram.empty()) {
    std::string base = info.nvram.substr(info.nvram.rfind('/') + 1);
    auto data = ReadFile(info.nvram, kMaxConfigFileBytes);
    if (data.ok())
      files.push_back(
          {"nvram/" + base, std::string(data->begin(), data->end())});
    else
      notes.push_back("NVRAM " + info.nvram + " not captured" +
                      (data.ok() ? "" : ": " + data.status().message()));
  }
  virDomainSnapshotPtr* snaps = nullptr;
  int n = virDomainListAllSnapshots(dom_.get(), &snaps, 0);
  for (int i = 0; i < n; ++i) {
    SnapshotPtr s(snaps[i]);
    std::string name = virDomainSnapshotGetName(s.get());
    char* xml = virDomainSnapshotGetXMLDesc(s.get(), VIR_DOMAIN_XML_SECURE);
    if (xml) files.push_back({"snapshots/" + name + ".xml", Take(xml)});
  }
  std::free(snaps);
  files.insert(files.end(), host_facts.begin(), host_facts.end());
  virResetLastError();
  return files;
}

Result<std::vector<ConfigFile>> LibvirtHost::HostFacts() const {
  std::vector<ConfigFile> files;
  nlohmann::ordered_json facts;
  unsigned long lib = 0, hv = 0;
  virConnectGetLibVersion(conn_.get(), &lib);
  virConnectGetVersion(conn_.get(), &hv);
  const char* type = virConnectGetType(conn_.get());
  facts["libvirt_version"] = Version(lib);
  facts["hypervisor"] = type ? type : "";
  facts["hypervisor_version"] = Version(hv);
  facts["hostname"] = Take(virConnectGetHostname(conn_.get()));
  std::string caps = Take(virConnectGetCapabilities(conn_.get()));
  facts["cpu_model"] = ParseHostCpuModel(caps);
  facts["uri"] = Take(virConnectGetURI(conn_.get()));
  files.push_back({"host/facts.json", facts.dump(2) + "\n"});
  if (!caps.empty()) files.push_back({"host/capabilities.xml", caps});
  virResetLastError();
  return files;
}

Result<std::vector<GuestFileSystem>> Vm::GuestFileSystems() const {
  virDomainFSInfoPtr* info = nullptr;
  const int n = virDomainGetFSInfo(dom_.get(), &info, 0);
  if (n < 0) {
    // No agent, or one that does not answer: a freeze would fail (or wait)
    // the same way; say so apart from an agent that lacks the command.
    const virErrorPtr e = virGetLastError();
    const bool no_agent = e && (e->code == VIR_ERR_ARGUMENT_UNSUPPORTED ||
                                e->code == VIR_ERR_AGENT_UNRESPONSIVE);
    Status s = LibvirtError("guest agent file system list");
    return no_agent ? FailedPrecondition(s.message()) : s;
  }
  std::vector<GuestFileSystem> out;
  for (int i = 0; i < n; ++i) {
    GuestFileSystem fs;
    if (info[i]->mountpoint) fs.mountpoint = info[i]->mountpoint;
    if (info[i]->fstype) fs.type = info[i]->fstype;
    if (info[i]->name) fs.device = info[i]->name;
    for (size_t d = 0; d < info[i]->ndevAlias; ++d)
      if (info[i]->devAlias[d]) fs.disks.push_back(info[i]->devAlias[d]);
    virDomainFSInfoFree(info[i]);
    out.push_back(std::move(fs));
  }
  std::free(info);
  return out;
}

Result<int> Vm::Freeze(const std::vector<std::string>& mountpoints) const {
  std::vector<const char*> points;
  for (const auto& m : mountpoints) points.push_back(m.c_str());
  const int frozen =
      virDomainFSFreeze(dom_.get(), points.empty() ? nullptr : points.data(),
                        static_cast<unsigned int>(points.size()), 0);
  if (frozen < 0) return LibvirtError("guest agent freeze");
  return frozen;
}

Status Vm::Thaw() const {
  if (virDomainFSThaw(dom_.get(), nullptr, 0, 0) < 0)
    return LibvirtError("guest agent thaw");
  return OkStatus();
}

Result<std::unique_ptr<PullBackup>> PullBackup::Begin(
    const Vm& vm, const std::vector<JobDisk>& disks,
    const std::vector<std::string>& all_targets, const std::string& checkpoint,
    const std::string& owner) {
  // libvirt runs one job per domain; a second backup job would wait 30 s
  // for the state lock and then fail. Say it at once.
  virDomainJobInfo running;
  if (virDomainGetJobInfo(vm.get(), &running) == 0 &&
      running.type != VIR_DOMAIN_JOB_NONE)
    return FailedPrecondition(
        "VM " + vm.name() +
        " already has a job running (another backup, a migration or a "
        "snapshot); try again when it ends");
  std::unique_ptr<PullBackup> job(new PullBackup(vm));
  HAVEN_RETURN_IF_ERROR(MakeDirs(kJobRoot, 0711));
  // QEMU runs as its own user: it must be able to pass through the parents
  // (search only; the job folder itself is its own).
  for (std::string p = kJobRoot; p.size() > 1; p = p.substr(0, p.rfind('/'))) {
    struct stat st;
    if (::stat(p.c_str(), &st) == 0 && st.st_uid == 0 &&
        !(st.st_mode & S_IXOTH))
      ::chmod(p.c_str(), (st.st_mode & 07777) | S_IXOTH);
  }
  std::string tmpl = std::string(kJobRoot) + "/job-XXXXXX";
  if (!::mkdtemp(tmpl.data()))
    return ErrnoStatus("creating a job folder in " + std::string(kJobRoot),
                       errno);
  job->dir_ = tmpl;
  job->socket_ = job->dir_ + "/nbd.sock";
  // Held until the job ends: a job whose lock is free outlived its owner
  // (AbortLeftover). Not inherited by hooks or qemu-nbd.
  job->lock_fd_ = ::open((job->dir_ + "/" + kOwnerLock).c_str(),
                         O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (job->lock_fd_ < 0 || ::flock(job->lock_fd_, LOCK_EX | LOCK_NB) != 0)
    return ErrnoStatus("locking the job folder " + job->dir_, errno);
  unsigned uid = 0, gid = 0;
  if (std::sscanf(owner.c_str(), "+%u:+%u", &uid, &gid) == 2 &&
      ::chown(job->dir_.c_str(), uid, gid) != 0)
    return ErrnoStatus("chown " + job->dir_, errno);

  std::string xml =
      "<domainbackup mode='pull'>\n  <server transport='unix' "
      "socket='" +
      XmlEscape(job->socket_) + "'/>\n  <disks>\n";
  for (const auto& target : all_targets) {
    const JobDisk* d = nullptr;
    for (const auto& j : disks)
      if (j.target == target) d = &j;
    if (!d) {
      xml += "    <disk name='" + XmlEscape(target) + "' backup='no'/>\n";
      continue;
    }
    xml += "    <disk name='" + XmlEscape(target) +
           "' backup='yes' type='file' exportname='" + XmlEscape(target) + "'";
    if (d->incremental_from.empty())
      xml += " backupmode='full'";
    else
      xml += " backupmode='incremental' incremental='" +
             XmlEscape(d->incremental_from) + "' exportbitmap='haven-" +
             XmlEscape(target) + "'";
    // Haven makes the scratch file and passes REUSE_EXTERNAL, so that
    // libvirt never deletes it: libvirt 9.0 deletes the scratch files it
    // made when the job ends, before the last disk's block job gives its
    // cgroup access and security label back, and logs "unable to stat
    // ...scratch" errors for that disk after every backup.
    virDomainBlockInfo bi;
    if (virDomainGetBlockInfo(vm.get(), target.c_str(), &bi, 0) < 0)
      return LibvirtError("reading the size of " + target + " of " + vm.name());
    std::string scratch = job->dir_ + "/" + target + ".scratch";
    job->scratch_.push_back(scratch);
    HAVEN_RETURN_IF_ERROR(CreateScratch(scratch, bi.capacity));
    xml += ">\n      <driver type='qcow2'/>\n      <scratch file='" +
           XmlEscape(scratch) + "'/>\n    </disk>\n";
  }
  xml += "  </disks>\n</domainbackup>\n";
  std::string cp_xml;
  if (!checkpoint.empty()) {
    cp_xml = "<domaincheckpoint>\n  <name>" + XmlEscape(checkpoint) +
             "</name>\n  <description>Haven backup</description>\n  <disks>\n";
    for (const auto& target : all_targets) {
      bool bitmap = false;
      for (const auto& j : disks)
        if (j.target == target) bitmap = j.bitmap;
      cp_xml += "    <disk name='" + XmlEscape(target) + "' checkpoint='" +
                (bitmap ? "bitmap" : "no") + "'/>\n";
    }
    cp_xml += "  </disks>\n</domaincheckpoint>\n";
  }
  if (virDomainBackupBegin(vm.get(), xml.c_str(),
                           cp_xml.empty() ? nullptr : cp_xml.c_str(),
                           VIR_DOMAIN_BACKUP_BEGIN_REUSE_EXTERNAL) < 0)
    return LibvirtError("starting the backup job of " + vm.name());
  job->started_ = true;
  job->checkpoint_ = checkpoint;
  job->checkpoint_created_ = !checkpoint.empty();
  return job;
}

Result<std::string> PullBackup::AbortLeftover(const Vm& vm) {
  virDomainJobInfo running;
  if (virDomainGetJobInfo(vm.get(), &running) != 0) {
    virResetLastError();
    return std::string();
  }
  if (running.type == VIR_DOMAIN_JOB_NONE) return std::string();
  char* raw = virDomainBackupGetXMLDesc(vm.get(), 0);
  if (!raw) {  // not a backup job
    virResetLastError();
    return std::string();
  }
  std::string desc(raw);
  std::free(raw);
  // libvirt writes <server transport='unix' socket='/var/lib/haven/jobs/
  // job-XXXXXX/nbd.sock'/>; anything else is not a Haven job.
  const std::string key = "socket='";
  size_t at = desc.find(key);
  if (at == std::string::npos) return std::string();
  at += key.size();
  size_t end = desc.find('\'', at);
  if (end == std::string::npos) return std::string();
  std::string socket = desc.substr(at, end - at);
  const std::string prefix = std::string(kJobRoot) + "/job-";
  const std::string suffix = "/nbd.sock";
  if (socket.size() != prefix.size() + 6 + suffix.size() ||
      socket.compare(0, prefix.size(), prefix) != 0 ||
      socket.compare(prefix.size() + 6, suffix.size(), suffix) != 0)
    return std::string();
  std::string dir = socket.substr(0, prefix.size() + 6);
  for (char c : dir.substr(prefix.size()))
    if (!std::isalnum(static_cast<unsigned char>(c))) return std::string();
  int fd = ::open((dir + "/" + kOwnerLock).c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return std::string();  // no lock: not ours to judge
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);  // its owner lives
    return std::string();
  }
  std::unique_ptr<PullBackup> old(new PullBackup(vm));
  old->dir_ = dir;
  old->socket_ = socket;
  old->lock_fd_ = fd;
  old->started_ = true;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.path().extension() == ".scratch")
      old->scratch_.push_back(e.path().string());
  HAVEN_RETURN_IF_ERROR(old->End());
  return "aborted the backup job of " + vm.name() +
         " that a Haven process began and died with (" + dir + ")";
}

NbdSpec PullBackup::SpecFor(const JobDisk& disk) const {
  NbdSpec spec;
  spec.description = disk.target + " of " + vm_.name();
  spec.socket = socket_;
  spec.export_name = disk.target;
  if (!disk.incremental_from.empty())
    spec.dirty_bitmap = "haven-" + disk.target;
  return spec;
}

// virDomainAbortJob only starts the end of a pull backup: libvirt then
// stops the NBD server and restores the scratch files' security labels and
// cgroup access as QEMU reports the block jobs gone. Removing a scratch file
// before that makes libvirtd log "unable to stat ... scratch", "Unable to
// restore security label" and "Unable to tear down cgroup access". The
// domain shows no job before the last disk's access is given back (about
// 20 ms earlier here), so wait for both: no job, then each scratch file
// owned by this process's user again (libvirt's DAC driver gives it back;
// with no relabelling it never changed). At most `timeout` seconds for the
// job and 5 more for the files; a domain that is gone has no job and gives
// nothing back.
void PullBackup::WaitForJobEnd(double timeout) {
  const auto deadline =
      std::chrono::steady_clock::now() +
      std::chrono::milliseconds(static_cast<int64_t>(timeout * 1000));
  while (std::chrono::steady_clock::now() < deadline) {
    virDomainJobInfo info;
    if (virDomainGetJobInfo(vm_.get(), &info) < 0) {
      virResetLastError();
      return;
    }
    if (info.type == VIR_DOMAIN_JOB_NONE) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (virDomainIsActive(vm_.get()) != 1) {
    virResetLastError();
    return;
  }
  const auto given_back_by =
      std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (const auto& f : scratch_) {
    struct stat st;
    while (::stat(f.c_str(), &st) == 0 && st.st_uid != ::geteuid() &&
           std::chrono::steady_clock::now() < given_back_by)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

Status PullBackup::End() {
  Status s;
  if (started_ && !ended_) {
    if (virDomainAbortJob(vm_.get()) < 0)
      s = LibvirtError("ending the backup job of " + vm_.name());
    else
      WaitForJobEnd(60);
  }
  ended_ = true;
  RemoveFiles();
  return s;
}

void PullBackup::Cleanup() {
  if (started_ && !ended_) {
    // Fails if the VM is gone: nothing to end.
    if (virDomainAbortJob(vm_.get()) == 0)
      WaitForJobEnd(60);
    else
      virResetLastError();
    ended_ = true;
  }
  if (checkpoint_created_) {
    if (!vm_.DeleteCheckpoint(checkpoint_).ok())
      // The domain may be gone; its metadata went with it.
      virResetLastError();
    checkpoint_created_ = false;
  }
  RemoveFiles();
}

void PullBackup::RemoveFiles() {
  for (const auto& f : scratch_) ::unlink(f.c_str());
  if (!socket_.empty()) ::unlink(socket_.c_str());
  if (lock_fd_ >= 0) {
    ::unlink((dir_ + "/" + kOwnerLock).c_str());
    ::close(lock_fd_);
    lock_fd_ = -1;
  }
  if (!dir_.empty()) ::rmdir(dir_.c_str());
}

void PullBackup::Discard() { Cleanup(); }

PullBackup::~PullBackup() {
  if (!ended_) Cleanup();
}

}  // namespace haven::snapshot
