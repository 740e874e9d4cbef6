#include "restore/vm_restore.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/file.h"
#include "base/time.h"
#include "restore/image_restore.h"
#include "restore/instant_restore.h"
#include "restore/restore_journal.h"
#include "restore/storage_preflight.h"

namespace haven::restore {
namespace {

constexpr char kStaging[] = ".haven-restore";
constexpr size_t kMaxXmlBytes = 16 << 20;

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

std::string Extension(const std::string& format) {
  return format == "raw" ? "img" : format;
}

// A plain, absolute folder path without control characters.
Status CheckFolder(const std::string& dir, const char* what) {
  if (dir.empty() || dir[0] != '/')
    return InvalidArgument(std::string(what) + " '" + dir +
                           "' is not an absolute path");
  for (unsigned char c : dir)
    if (c < 0x20 || c == 0x7f)
      return InvalidArgument(std::string(what) +
                             " has a control character in its path");
  return OkStatus();
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Test hook: HAVEN_FAULT_RESTORE_KILL=PHASE kills the process (SIGKILL, as
// kill -9 would) right after that phase: disk, network, place, define,
// start. Used by the integration test of resumed restores.
void MaybeKill(const char* phase) {
  const char* want = std::getenv("HAVEN_FAULT_RESTORE_KILL");
  if (want && std::string(want) == phase) ::raise(SIGKILL);
}

std::string HostName() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "";
  return name;
}

// Reads every domain's MACs once per restore.
Status LoadHostMacs(const snapshot::LibvirtHost& host, PlanContext& context) {
  if (context.host_macs) return OkStatus();
  HAVEN_ASSIGN_OR_RETURN(auto names, host.DomainNames());
  context.host_macs.emplace();
  for (const auto& other : names) {
    auto vm = host.Lookup(other);
    if (!vm.ok()) continue;
    auto other_xml = (*vm)->Xml(true);
    if (!other_xml.ok()) continue;
    auto oi = snapshot::ParseDomainXml(*other_xml);
    if (!oi.ok()) continue;
    for (const auto& iface : oi->interfaces)
      if (!iface.mac.empty())
        context.host_macs->emplace(Lower(iface.mac), other);
  }
  return OkStatus();
}

// A point a host agent committed (manifest agent_id): the agent wrote its
// XML, and defining it here must not hand the VM this host's devices, files
// or programs. One conflict per problem found in the XML the plan defines
// and in the networks it creates, checked as they will be defined.
Result<std::vector<std::string>> AgentXmlConflicts(const VmPlan& plan) {
  std::vector<std::string> out;
  const std::string& agent = plan.snapshot.agent_id;
  if (agent.empty()) return out;
  std::set<std::string> restored;
  for (const PlannedDisk& d : plan.disks) restored.insert(d.path);
  HAVEN_ASSIGN_OR_RETURN(auto domain,
                         snapshot::UntrustedDomainProblems(plan.xml, restored));
  for (const std::string& p : domain)
    out.push_back("the VM's XML, committed by agent " + agent + ", " + p +
                  "; restore its disks with `haven restore image` instead");
  for (const PlannedNetwork& n : plan.networks) {
    if (n.action != "create") continue;
    HAVEN_ASSIGN_OR_RETURN(auto net, snapshot::UntrustedNetworkProblems(n.xml));
    for (const std::string& p : net)
      out.push_back("network " + n.from + " in the point, committed by agent " +
                    agent + ", " + p +
                    "; map it to a network of this host with --network-map " +
                    n.from + "=NETWORK instead");
  }
  return out;
}

}  // namespace

Result<VmPlan> PlanVmRestore(const repository::PointReader& repo,
                             const repository::Manifest& snapshot,
                             const snapshot::LibvirtHost& host,
                             const VmRestoreOptions& options,
                             PlanContext& context) {
  const std::string short_id = snapshot.id.substr(0, 8);
  if (snapshot.kind != "vm")
    return InvalidArgument("snapshot " + short_id + " (" + snapshot.name +
                           ") is not a VM backup; restore its disks with "
                           "'haven restore image'");
  if (options.verify_ids && !repo.CanComputeIds()) return VerifyIdsRefused();
  VmPlan plan;
  plan.snapshot = snapshot;
  auto xml =
      ReadConfigFile(repo, snapshot, "domain-inactive.xml", kMaxXmlBytes);
  if (!xml.ok() && xml.status().code() == Code::kNotFound)
    xml = ReadConfigFile(repo, snapshot, "domain.xml", kMaxXmlBytes);
  if (!xml.ok()) return xml.status();
  auto parsed = snapshot::ParseDomainXml(*xml);
  if (!parsed.ok())
    return parsed.status().WithContext("the domain XML in snapshot " +
                                       short_id);
  const snapshot::DomainInfo& info = *parsed;
  // A host agent's point: its XML may name this host's files and devices.
  const bool from_agent = !snapshot.agent_id.empty();
  plan.source_name = info.name;
  plan.name = options.name.empty() ? info.name : options.name;

  // Where the files go.
  if (!options.pool.empty() && !options.storage_dir.empty())
    return InvalidArgument("give --storage-dir or --pool, not both");
  if (!options.pool.empty()) {
    HAVEN_ASSIGN_OR_RETURN(plan.dir, host.PoolFolder(options.pool));
  } else {
    plan.dir =
        options.storage_dir.empty() ? kDefaultStorageDir : options.storage_dir;
  }
  HAVEN_RETURN_IF_ERROR(CheckFolder(plan.dir, "storage folder"));
  while (plan.dir.size() > 1 && plan.dir.back() == '/') plan.dir.pop_back();
  if (plan.name.find('/') != std::string::npos || plan.name.empty() ||
      plan.name[0] == '.')
    return InvalidArgument("VM name '" + plan.name +
                           "' cannot be used in a file name");
  plan.journal = plan.dir + "/.haven-restore-" + plan.name + ".json";
  const RestoreJournal journal = LoadRestoreJournal(plan.journal, snapshot.id);
  const std::set<std::string>& ours_files = journal.files;

  // The identity. A new one is derived from the point, the name and this
  // host, so the dry run and the run (and a re-run) agree on it.
  snapshot::DomainRewrite rewrite;
  rewrite.name = options.name;
  rewrite.new_identity = options.new_identity;
  rewrite.restored_from = snapshot.id;
  rewrite.untrusted = from_agent;
  if (options.new_identity) {
    rewrite.identity_seed = "haven new identity\n" + snapshot.id + "\n" +
                            plan.name + "\n" + HostName() + "\n" + host.uri();
    HAVEN_RETURN_IF_ERROR(LoadHostMacs(host, context));
    for (const auto& [mac, owner] : *context.host_macs)
      rewrite.avoid_macs.insert(mac);
    rewrite.avoid_macs.insert(context.new_macs.begin(), context.new_macs.end());
  }

  // The domain of the same name: one this restore defined (its UUID and
  // metadata say so) is finished or left alone, any other is a conflict.
  auto same_name = host.Lookup(plan.name);
  std::string existing_uuid, existing_from;
  if (same_name.ok()) {
    auto existing_xml = (*same_name)->Xml(true);
    if (existing_xml.ok())
      if (auto ei = snapshot::ParseDomainXml(*existing_xml); ei.ok()) {
        existing_uuid = ei->uuid;
        existing_from = ei->restored_from;
      }
  }

  // Disks.
  struct Claim {
    std::string path, what;
  };
  std::vector<Claim> claims;
  for (const auto& d : info.disks) {
    if (!d.skip_reason.empty()) {
      // An agent's skipped disks lose their sources in the rewrite (below).
      if (from_agent) continue;
      if ((d.type == "file" || d.type == "block") && !d.path.empty() &&
          !Exists(d.path))
        plan.warnings.push_back("disk " + d.target + " (" + d.skip_reason +
                                ") was not backed up and " + d.path +
                                " is not on this host");
      continue;
    }
    const repository::DiskManifest* dm = snapshot.FindDisk(d.target);
    if (!dm || dm->name != d.target)
      return DataLoss("snapshot " + short_id + " has no data for disk " +
                      d.target + " that its domain XML names");
    PlannedDisk pd;
    pd.target = d.target;
    pd.size = dm->size;
    HAVEN_ASSIGN_OR_RETURN(pd.data_bytes, DiskDataBytes(repo, *dm));
    pd.format = options.format;
    if (pd.format.empty())
      pd.format = d.format == "raw" || d.type == "block" ? "raw" : "qcow2";
    pd.path = plan.dir + "/" + plan.name + "-" + d.target + "." +
              Extension(pd.format);
    if (!dm->lost.empty())
      plan.warnings.push_back(
          "disk " + d.target + ": " + std::to_string(dm->LostBytes()) +
          " bytes were lost before 'haven repair snapshots' and are "
          "restored as zeros");
    rewrite.disks.push_back({pd.target, pd.path, pd.format});
    claims.push_back({pd.path, "disk file"});
    plan.disks.push_back(pd);
  }
  if (plan.disks.empty())
    plan.warnings.push_back("the VM has no disk with data to restore");

  // NVRAM.
  if (!info.nvram.empty()) {
    std::string base = info.nvram.substr(info.nvram.rfind('/') + 1);
    if (snapshot.FindConfig("nvram/" + base))
      plan.nvram_config = "nvram/" + base;
    // Always a path of this VM's own: a renamed copy must never share the
    // original's variables file.
    std::string path = plan.dir + "/" + plan.name + "_VARS.fd";
    claims.push_back({path, "NVRAM file"});
    rewrite.nvram_path = path;
    if (plan.nvram_config.empty())
      plan.warnings.push_back("the recovery point holds no NVRAM (" +
                              info.nvram + "); libvirt creates " + path +
                              " from its template variables");
    else
      plan.nvram_path = path;
  }

  // Networks: what the host has, what this restore creates, what is mapped.
  HAVEN_ASSIGN_OR_RETURN(auto host_nets, host.NetworkXmls());
  std::set<std::string> bridges_in_use, uuids_in_use;
  std::set<std::string> net_names;
  for (const auto& [name, net_xml] : host_nets) {
    net_names.insert(name);
    auto ni = snapshot::ParseNetworkXml(net_xml);
    if (!ni.ok()) continue;
    if (!ni->bridge.empty()) bridges_in_use.insert(ni->bridge);
    if (!ni->uuid.empty()) uuids_in_use.insert(Lower(ni->uuid));
  }
  std::set<std::string> seen;
  for (const auto& iface : info.interfaces) {
    if (iface.type != "network" && iface.type != "bridge") continue;
    if (!seen.insert(iface.type + ":" + iface.source).second) continue;
    PlannedNetwork pn;
    pn.from = iface.source;
    auto mapped = options.network_map.find(iface.source);
    pn.name =
        mapped == options.network_map.end() ? iface.source : mapped->second;
    if (pn.name != iface.source) rewrite.network_map[iface.source] = pn.name;
    if (iface.type == "bridge") {
      pn.action = "bridge";
      if (!Exists("/sys/class/net/" + pn.name) &&
          pn.name.find('/') == std::string::npos)
        plan.warnings.push_back("bridge " + pn.name +
                                " does not exist on this host; the VM will "
                                "not start until it does (or map it with "
                                "--network-map " +
                                iface.source + "=BRIDGE)");
      plan.networks.push_back(pn);
      continue;
    }
    if (auto by = context.networks.find(pn.name);
        by != context.networks.end()) {
      pn.action = "restore";
      pn.by = by->second;
      plan.networks.push_back(pn);
      continue;
    }
    if (net_names.count(pn.name)) {
      pn.action = journal.networks.count(pn.name) ? "resume"
                  : pn.name == pn.from            ? "exists"
                                                  : "mapped";
      plan.networks.push_back(pn);
      continue;
    }
    pn.action = "missing";
    if (pn.name != pn.from) {
      plan.conflicts.push_back("network " + pn.name + " (mapped from " +
                               pn.from + ") does not exist on " + host.uri());
      plan.networks.push_back(pn);
      continue;
    }
    if (!options.create_networks) {
      plan.conflicts.push_back(
          "network " + pn.from + " is not on " + host.uri() +
          " and creating it from the recovery point was not asked for; map "
          "it to an existing network, or let the restore create it");
      plan.networks.push_back(pn);
      continue;
    }
    auto captured = ReadConfigFile(
        repo, snapshot, "networks/" + pn.from + ".xml", kMaxXmlBytes);
    if (!captured.ok()) {
      if (captured.status().code() != Code::kNotFound) return captured.status();
      plan.conflicts.push_back(
          "network " + pn.from +
          " is not on this host and the recovery point has no definition "
          "of it; map it with --network-map " +
          pn.from + "=NETWORK");
      plan.networks.push_back(pn);
      continue;
    }
    auto ni = snapshot::ParseNetworkXml(*captured);
    if (!ni.ok())
      return ni.status().WithContext("network " + pn.from + " in snapshot " +
                                     short_id);
    if (ni->name != pn.from)
      return DataLoss("networks/" + pn.from + ".xml in snapshot " + short_id +
                      " defines a network named " + ni->name);
    snapshot::NetworkRewrite nr;
    if (!ni->uuid.empty() && uuids_in_use.count(Lower(ni->uuid))) {
      nr.drop_uuid = true;
      plan.warnings.push_back("network " + pn.from +
                              ": its UUID is used by "
                              "another network here; it gets a new one");
    }
    if (!ni->bridge.empty() && (bridges_in_use.count(ni->bridge) ||
                                Exists("/sys/class/net/" + ni->bridge))) {
      nr.drop_bridge_name = true;
      nr.drop_mac = true;
      plan.warnings.push_back("network " + pn.from + ": bridge " + ni->bridge +
                              " is taken here; libvirt picks another");
    }
    HAVEN_ASSIGN_OR_RETURN(pn.xml, snapshot::RewriteNetworkXml(*captured, nr));
    pn.action = "create";
    plan.networks.push_back(pn);
  }

  // Things the new host must provide.
  auto check_host_file = [&](const std::string& xpath_path, const char* what) {
    if (!xpath_path.empty() && xpath_path[0] == '/' && !Exists(xpath_path))
      plan.warnings.push_back(std::string(what) + " " + xpath_path +
                              " is not on this host");
  };
  if (!from_agent) check_host_file(info.emulator, "emulator");
  check_host_file(info.loader, "firmware");

  auto rewritten = snapshot::RewriteDomainXml(*xml, rewrite);
  if (!rewritten.ok())
    return rewritten.status().WithContext("rewriting the domain XML");
  plan.xml = rewritten->xml;
  if (from_agent) {
    const std::string why =
        ": a point from an agent may not name this host's files";
    if (!info.emulator.empty())
      plan.warnings.push_back("the VM's <emulator> " + info.emulator +
                              " is left out: libvirt runs the host's own");
    for (const std::string& t : rewritten->emptied_disks)
      plan.warnings.push_back("drive " + t +
                              " (removable media) was not backed up and is "
                              "restored empty" +
                              why);
    for (const std::string& t : rewritten->removed_disks)
      plan.warnings.push_back("disk " + t +
                              " was not backed up and is left out of the "
                              "restored VM" +
                              why);
  }
  plan.macs = rewritten->macs;
  plan.new_uuid = options.new_identity;
  plan.uuid = options.new_identity ? rewritten->uuid : info.uuid;

  HAVEN_ASSIGN_OR_RETURN(auto agent_conflicts, AgentXmlConflicts(plan));
  plan.conflicts.insert(plan.conflicts.end(), agent_conflicts.begin(),
                        agent_conflicts.end());

  // Is the domain of that name one this restore made?
  const bool ours = same_name.ok() && existing_uuid == plan.uuid &&
                    existing_from == snapshot.id;
  if (ours && !journal.snapshot.empty()) {
    plan.state = "finish";
  } else if (ours && !options.replace) {
    plan.state = "done";
  } else if (same_name.ok()) {
    if (options.replace) {
      plan.replace_domain = plan.name;
      plan.warnings.push_back("domain " + plan.name +
                              " exists and will be replaced (stopped and "
                              "undefined; its disk files are left alone "
                              "unless overwritten here)");
    } else {
      plan.conflicts.push_back("domain " + plan.name + " already exists on " +
                               host.uri() +
                               " (pass --replace to replace it, or --name "
                               "NEW --new-identity to restore beside it)");
    }
  }
  if (context.names.count(plan.name))
    plan.conflicts.push_back("two VMs of this restore are named " + plan.name);
  {
    HAVEN_ASSIGN_OR_RETURN(std::string holder,
                           host.DomainNameByUuid(plan.uuid));
    if (!holder.empty() && holder != plan.name)
      plan.conflicts.push_back(
          "domain " + holder + " on " + host.uri() + " has UUID " + plan.uuid +
          (options.new_identity ? ""
                                : " of the backed-up VM; pass "
                                  "--new-identity"));
  }

  // Files: what is there, what an interrupted run left.
  if (plan.state == "restore") {
    for (const Claim& c : claims) {
      if (context.paths.count(c.path)) {
        plan.conflicts.push_back(c.what + " " + c.path +
                                 " is also written by another VM of this "
                                 "restore");
        continue;
      }
      const bool exists = Exists(c.path);
      const bool stray =
          Exists(c.path + kStaging) && !ours_files.count(c.path + kStaging);
      if ((exists && !ours_files.count(c.path)) || stray) {
        if (!options.replace)
          plan.conflicts.push_back(
              c.what + " " + (stray ? c.path + kStaging : c.path) +
              " already exists (pass --replace to overwrite it, or choose "
              "--storage-dir)");
        else
          plan.warnings.push_back(c.what + " " + c.path +
                                  " will be overwritten");
      }
    }
  }
  for (PlannedDisk& d : plan.disks) {
    d.exists = Exists(d.path);
    if (plan.state != "restore") {
      d.resume = "placed";
      continue;
    }
    const RestoreJournal::Disk* jd = journal.FindDisk(d.path, d.format);
    if (!jd || !jd->staged) continue;
    if (Exists(d.path + kStaging))
      d.resume = "staged";
    else if (d.exists)
      d.resume = "placed";  // moved into place before the interruption
  }
  if (plan.state != "restore") {
    plan.warnings.push_back(
        plan.state == "finish"
            ? "domain " + plan.name +
                  " was defined by an interrupted run of this restore; its "
                  "last steps are finished"
            : "domain " + plan.name +
                  " was restored from this point before; "
                  "it is left as it is");
  }

  // Preflight of the storage folder.
  const StorageCheck storage = CheckStorageFolder(plan.dir);
  plan.create_dirs = storage.create;
  plan.space_free = storage.free_bytes;
  if (plan.state == "restore") {
    for (const auto& p : storage.problems) plan.conflicts.push_back(p);
    for (const PlannedDisk& d : plan.disks) {
      if (!d.resume.empty()) continue;
      // qcow2 metadata and the file system's own: a little over the data.
      plan.space_needed += d.data_bytes + d.data_bytes / 100 + (1 << 20);
      plan.space_full += d.size + d.size / 100 + (1 << 20);
    }
    if (!plan.nvram_path.empty()) {
      const auto* nv = snapshot.FindConfig(plan.nvram_config);
      plan.space_needed += nv ? nv->size : 0;
      plan.space_full += nv ? nv->size : 0;
    }
    if (storage.problems.empty() && storage.device != 0) {
      uint64_t& claimed = context.space_claimed[storage.device];
      const uint64_t left =
          storage.free_bytes > claimed ? storage.free_bytes - claimed : 0;
      if (plan.space_needed > left)
        plan.conflicts.push_back(
            "not enough free space in " + storage.existing +
            ": the disks need " + HumanBytes(plan.space_needed) + " (" +
            HumanBytes(plan.space_full) + " at full size)" +
            (claimed
                 ? ", the VMs before it in this restore " + HumanBytes(claimed)
                 : std::string()) +
            ", and " + HumanBytes(storage.free_bytes) +
            " are free; free space or choose another --storage-dir");
      else if (plan.space_full > left)
        plan.warnings.push_back(
            "the disks' data (" + HumanBytes(plan.space_needed) + ") fits in " +
            storage.existing + ", but at full size they need " +
            HumanBytes(plan.space_full) + " and " + HumanBytes(left) +
            " are free: the file system can fill up as the VM writes");
      claimed += plan.space_needed;
    }
    if (!context.qemu_label) {
      auto label = host.QemuDacLabel();
      context.qemu_label = label.ok() ? *label : "";
    }
    if (std::string p = QemuAccessProblem(plan.dir, *context.qemu_label);
        !p.empty())
      plan.conflicts.push_back(p);
  }

  // MAC addresses other domains here already use.
  if (!options.new_identity && !info.interfaces.empty() &&
      plan.state == "restore") {
    HAVEN_RETURN_IF_ERROR(LoadHostMacs(host, context));
    for (const auto& iface : info.interfaces) {
      if (iface.mac.empty()) continue;
      auto [first, last] = context.host_macs->equal_range(Lower(iface.mac));
      for (auto it = first; it != last; ++it)
        if (it->second != plan.name)
          plan.warnings.push_back("MAC " + iface.mac + " is also used by " +
                                  it->second +
                                  " (use --new-identity for new MACs)");
    }
  }

  if (options.instant) HAVEN_RETURN_IF_ERROR(PlanInstant(plan));

  context.names.insert(plan.name);
  for (const Claim& c : claims) context.paths.insert(c.path);
  for (const auto& [was, now] : plan.macs) context.new_macs.insert(Lower(now));
  for (const auto& n : plan.networks)
    if (n.action == "create") context.networks.emplace(n.name, plan.name);
  return plan;
}

Result<VmRestoreResult> ExecuteVmRestore(const repository::PointReader& repo,
                                         const snapshot::LibvirtHost& host,
                                         const VmPlan& plan,
                                         const VmRestoreOptions& options) {
  if (!plan.conflicts.empty())
    return FailedPrecondition("the restore of " + plan.name + " has " +
                              std::to_string(plan.conflicts.size()) +
                              " problem(s): " + plan.conflicts.front());
  if (options.verify_ids && !repo.CanComputeIds()) return VerifyIdsRefused();
  double start = MonotonicSeconds();
  auto log = [&](const std::string& line) {
    if (options.log) options.log(line);
  };
  VmRestoreResult result;
  result.uuid = plan.uuid;
  result.disks.resize(plan.disks.size());
  auto start_vm = [&] {
    if (!options.start) return;
    auto vm = host.Lookup(plan.name);
    if (vm.ok()) {
      auto active = (*vm)->Active();
      if (active.ok() && *active) {
        result.started = true;
        return;
      }
    }
    log("starting " + plan.name);
    Status s = host.StartDomain(plan.name);
    if (s.ok())
      result.started = true;
    else
      result.start_error = s.message();
    MaybeKill("start");
  };
  if (plan.state == "done") {
    log(plan.name + " was restored from this point before; left as it is");
    result.defined = true;
    result.already = true;
    start_vm();
    result.seconds = MonotonicSeconds() - start;
    return result;
  }
  if (plan.state == "finish") {
    log("finishing the interrupted restore of " + plan.name);
    result.defined = true;
    start_vm();
    ::unlink(plan.journal.c_str());
    result.seconds = MonotonicSeconds() - start;
    return result;
  }
  // A stored plan is read back: what it defines is checked again.
  HAVEN_ASSIGN_OR_RETURN(auto agent_conflicts, AgentXmlConflicts(plan));
  if (!agent_conflicts.empty())
    return FailedPrecondition("the restore of " + plan.name + " has " +
                              std::to_string(agent_conflicts.size()) +
                              " problem(s): " + agent_conflicts.front());
  // The host may have changed since the plan was made (an API plan is
  // executed later): what the plan counted on must still hold.
  auto changed = [&](const std::string& what) {
    return FailedPrecondition(what + " since the restore of " + plan.name +
                              " was planned; nothing was changed: plan it "
                              "again");
  };
  if (plan.replace_domain.empty() && host.Lookup(plan.name).ok())
    return changed("a domain named " + plan.name + " appeared on " +
                   host.uri());
  for (const auto& d : plan.disks)
    if (d.resume.empty() && !d.exists && Exists(d.path))
      return changed("the disk file " + d.path + " appeared");
  if (plan.create_dirs.empty() && !Exists(plan.dir))
    return changed("the storage folder " + plan.dir + " disappeared");
  if (!options.pool.empty()) {
    auto folder = host.PoolFolder(options.pool);
    if (folder.ok())
      while (folder->size() > 1 && folder->back() == '/') folder->pop_back();
    if (!folder.ok() || *folder != plan.dir)
      return changed("the storage pool " + options.pool + " " +
                     (folder.ok()
                          ? "moved to " + *folder
                          : "is gone (" + folder.status().message() + ")"));
  }
  {
    HAVEN_ASSIGN_OR_RETURN(auto nets, host.NetworkXmls());
    std::set<std::string> have;
    for (const auto& [name, net_xml] : nets) have.insert(name);
    for (const auto& n : plan.networks) {
      const bool host_has = have.count(n.name) > 0;
      if ((n.action == "exists" || n.action == "mapped" ||
           n.action == "resume") &&
          !host_has)
        return changed("the network " + n.name + " disappeared from " +
                       host.uri());
      if (n.action == "create" && host_has)
        return changed("a network named " + n.name + " appeared on " +
                       host.uri());
    }
  }
  for (const auto& d : plan.create_dirs) log("creating folder " + d);
  HAVEN_RETURN_IF_ERROR(MakeDirs(plan.dir, 0755));

  // Networks the host lacks (and those an interrupted run made).
  auto make_networks = [&](const std::function<void()>& undo) -> Status {
    for (const auto& n : plan.networks) {
      if (n.action == "resume") {
        HAVEN_RETURN_IF_ERROR(host.StartNetwork(n.name));
        continue;
      }
      if (n.action != "create") continue;
      log("creating network " + n.name + " from its captured definition");
      Status s = host.CreateNetwork(n.name, n.xml);
      if (!s.ok()) {
        undo();
        return s;
      }
      result.networks_created.push_back(n.name);
      MaybeKill("network");
    }
    return OkStatus();
  };

  if (!plan.instant_dir.empty()) {
    // Instant recovery: nothing is written; the VM runs on overlays over
    // the point's disks, served from the repository.
    if (!options.instant)
      return FailedPrecondition("the plan of " + plan.name +
                                " is an instant restore; say where the "
                                "point is served from");
    if (plan.instant_xml.empty())
      return FailedPrecondition("the instant plan of " + plan.name +
                                " has no domain XML");
    HAVEN_ASSIGN_OR_RETURN(std::string label, host.QemuDacLabel());
    HAVEN_RETURN_IF_ERROR(
        StartInstantExport(plan, *options.instant, label, options.log));
    auto undo = [&] { StopInstantExport(plan.instant_dir); };
    HAVEN_RETURN_IF_ERROR(make_networks(undo));
    if (!plan.replace_domain.empty()) {
      log("removing the existing domain " + plan.replace_domain);
      Status s = host.RemoveDomain(plan.replace_domain);
      if (!s.ok()) {
        undo();
        return s;
      }
    }
    log("defining domain " + plan.name + " on the overlays");
    auto uuid = host.DefineDomain(plan.instant_xml);
    if (!uuid.ok()) {
      undo();
      return uuid.status();
    }
    result.uuid = *uuid;
    result.defined = true;
    log("starting " + plan.name);
    Status s = host.StartDomain(plan.name);
    if (!s.ok()) {
      // A VM that does not start is no instant recovery: nothing stays.
      (void)host.RemoveDomain(plan.name);
      undo();
      return s.WithContext("the instant VM was removed again");
    }
    result.started = true;
    result.seconds = MonotonicSeconds() - start;
    return result;
  }

  // 1. The journal: every file and network this restore may leave behind.
  RestoreJournal journal;
  journal.snapshot = plan.snapshot.id;
  journal.name = plan.name;
  journal.uuid = plan.uuid;
  std::vector<std::string> finals;
  for (const auto& d : plan.disks) {
    finals.push_back(d.path);
    journal.disks.push_back({d.path, d.format, !d.resume.empty()});
  }
  if (!plan.nvram_path.empty()) finals.push_back(plan.nvram_path);
  for (const auto& f : finals) {
    journal.files.insert(f);
    journal.files.insert(f + kStaging);
  }
  for (const auto& n : plan.networks)
    if (n.action == "create" || n.action == "resume")
      journal.networks.insert(n.name);
  HAVEN_RETURN_IF_ERROR(SaveRestoreJournal(plan.journal, journal));

  std::vector<std::string> staged;
  auto discard = [&] {
    for (const auto& f : staged) ::unlink(f.c_str());
    ::unlink(plan.journal.c_str());
  };

  // 2. Disks and NVRAM, beside their final paths.
  int delay = 0;
  if (const char* d = std::getenv("HAVEN_FAULT_RESTORE_DELAY"))
    delay = std::atoi(d);
  for (size_t i = 0; i < plan.disks.size(); ++i) {
    const PlannedDisk& d = plan.disks[i];
    const std::string staging = d.path + kStaging;
    if (!d.resume.empty()) {
      log("disk " + d.target + ": " +
          (d.resume == "staged" ? staging : d.path) +
          " was written completely by the interrupted run; not written again");
      continue;
    }
    log("writing disk " + d.target + " (" + std::to_string(i + 1) + " of " +
        std::to_string(plan.disks.size()) + ") to " + d.path + " as " +
        d.format);
    ImageRestoreOptions opt;
    opt.disk = d.target;
    opt.format = d.format;
    opt.overwrite = true;  // the staging file: ours (journal) by the plan
    opt.verify_ids = options.verify_ids;
    opt.cancel = options.cancel;
    if (options.progress)
      opt.progress = options.progress(plan.name + " " + d.target);
    auto st = RestoreImage(repo, plan.snapshot, staging, opt);
    if (!st.ok()) {
      discard();
      return st.status().WithContext("disk " + d.target);
    }
    staged.push_back(staging);
    result.disks[i] = {st->data_bytes, st->duration_seconds};
    journal.disks[i].staged = true;
    HAVEN_RETURN_IF_ERROR(SaveRestoreJournal(plan.journal, journal));
    MaybeKill("disk");
    if (delay > 0) std::this_thread::sleep_for(std::chrono::seconds(delay));
  }
  if (!plan.nvram_path.empty()) {
    ImageRestoreOptions opt;
    opt.disk = plan.nvram_config;
    opt.config = true;
    opt.overwrite = true;
    std::string staging = plan.nvram_path + kStaging;
    auto st = RestoreImage(repo, plan.snapshot, staging, opt);
    if (!st.ok()) {
      discard();
      return st.status().WithContext("NVRAM");
    }
    staged.push_back(staging);
  }

  // 3. Networks the host lacks (and those an interrupted run made).
  HAVEN_RETURN_IF_ERROR(make_networks(discard));

  // 4. Into place; the old domain out; the new one defined.
  // From here on the journal stays until the end: a re-run recognises the
  // files already moved and the domain defined.
  for (size_t i = 0; i < finals.size(); ++i) {
    const std::string& f = finals[i];
    if (i < plan.disks.size() && plan.disks[i].resume == "placed") continue;
    if (::rename((f + kStaging).c_str(), f.c_str()) != 0)
      return ErrnoStatus("moving " + f + kStaging + " into place", errno);
    MaybeKill("place");
  }
  HAVEN_RETURN_IF_ERROR(FsyncDir(plan.dir));
  journal.placed = true;
  HAVEN_RETURN_IF_ERROR(SaveRestoreJournal(plan.journal, journal));
  // If libvirt refuses, the files go back out of place and are removed:
  // nothing is left that looks like a restored VM.
  auto roll_back = [&](const Status& why) {
    for (const auto& f : finals) {
      ::rename(f.c_str(), (f + kStaging).c_str());
      ::unlink((f + kStaging).c_str());
    }
    discard();
    return why;
  };
  if (!plan.replace_domain.empty()) {
    log("removing the existing domain " + plan.replace_domain);
    Status s = host.RemoveDomain(plan.replace_domain);
    if (!s.ok()) return roll_back(s);
  }
  log("defining domain " + plan.name);
  auto uuid = host.DefineDomain(plan.xml);
  if (!uuid.ok()) return roll_back(uuid.status());
  result.uuid = *uuid;
  result.defined = true;
  MaybeKill("define");
  if (!options.pool.empty()) {
    Status s = host.RefreshPool(options.pool);
    if (!s.ok()) log("warning: " + s.message());
  }
  start_vm();
  ::unlink(plan.journal.c_str());
  result.seconds = MonotonicSeconds() - start;
  return result;
}

}  // namespace haven::restore
