// restore/vm_restore: planning and carrying out the restore of a `haven
// backup vm` recovery point onto a libvirt host.
//
// The host is libvirt's in-process test driver (test:///default): the real
// libvirt API over a fake hypervisor, no daemon. It starts with a running
// domain "test" and a network "default" (bridge virbr0). Every connection to
// test:///default in one process shares that state, and it is reset when the
// last connection closes: each test holds one connection, so each starts
// from the driver's defaults (SetUp checks it).
//
// The test driver (libvirt 9.0) refuses two flags Haven passes, which real
// drivers (network, qemu) accept: VIR_NETWORK_XML_INACTIVE and
// VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | KEEP_NVRAM. LibvirtHost retries
// without them, which these tests exercise.
//
// The recovery points are real: a temporary repository, a disk "vda"
// captured from a file with agent::CaptureDisk and the domain, network and
// NVRAM files stored with agent::StoreConfigFiles, as `haven backup vm`
// stores them.
#include "restore/vm_restore.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "agent/image_backup.h"
#include "base/process.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "repository/latest_point.h"
#include "repository/manifest.h"
#include "repository/repository.h"
#include "restore/host_restore.h"
#include "restore/restore_plan_json.h"
#include "snapshot/disk_source.h"
#include "snapshot/domain_xml.h"
#include "snapshot/image_source.h"
#include "snapshot/libvirt_host.h"
#include "tests/unit/test_util.h"

namespace haven {
namespace {

using ::haven::testing_util::CloneFreshRepository;
using ::haven::testing_util::IsOk;
using ::haven::testing_util::kTestPassphrase;
using ::haven::testing_util::PathExists;
using ::haven::testing_util::RandomData;
using ::haven::testing_util::ReadWholeFile;
using ::haven::testing_util::StatusIs;
using ::haven::testing_util::TempDir;
using ::haven::testing_util::WriteOptions;
using ::haven::testing_util::WriteWholeFile;
using repository::Manifest;
using repository::Repository;
using restore::PlanContext;
using restore::VmPlan;
using restore::VmRestoreOptions;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::Pair;
using ::testing::SizeIs;

constexpr char kHostUri[] = "test:///default";
constexpr char kUuid[] = "6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b";
constexpr char kMac[] = "52:54:00:12:34:56";
constexpr char kNetUuid[] = "0b7f3d2e-1c4a-4d5e-9f60-718293a4b5c6";
// The test driver's network "default".
constexpr char kDefaultNetUuid[] = "dd8fe884-6c02-601e-7551-cca97df1c5df";

// The inactive XML of the backed-up VM, as libvirt writes it: a qcow2 disk
// vda (backed up), a CD-ROM (skipped), an interface on network netx, UEFI
// with NVRAM. Type 'test' and arch i686 so that the test driver defines it.
std::string DomainXml(const std::string& extra_disk = "") {
  // kUuid and kMac, written out.
  std::string xml = R"(<domain type='test'>
  <name>web1</name>
  <uuid>6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b</uuid>
  <memory unit='KiB'>262144</memory>
  <vcpu placement='static'>1</vcpu>
  <os>
    <type arch='i686'>hvm</type>
    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>
    <nvram>/var/lib/libvirt/qemu/nvram/web1_VARS.fd</nvram>
    <boot dev='hd'/>
  </os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/var/lib/libvirt/images/web1.qcow2'/>
      <backingStore/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='/isos/haven-no-such-installer.iso'/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>EXTRA_DISK
    <interface type='network'>
      <mac address='52:54:00:12:34:56'/>
      <source network='netx'/>
      <model type='virtio'/>
    </interface>
  </devices>
</domain>
)";
  xml.replace(xml.find("EXTRA_DISK"), 10, extra_disk);
  return xml;
}

std::string NetworkXml(const std::string& uuid = kNetUuid,
                       const std::string& bridge = "hvnetx0") {
  return "<network>\n  <name>netx</name>\n  <uuid>" + uuid +
         "</uuid>\n  <forward mode='nat'/>\n  <bridge name='" + bridge +
         "' stp='on' delay='0'/>\n  <mac address='52:54:00:aa:bb:cc'/>\n"
         "  <ip address='192.168.150.1' netmask='255.255.255.0'/>\n"
         "</network>\n";
}

// A small domain for the host: name, UUID and one interface's MAC.
std::string HostDomainXml(const std::string& name, const std::string& uuid,
                          const std::string& mac) {
  return "<domain type='test'><name>" + name + "</name><uuid>" + uuid +
         "</uuid><memory unit='KiB'>131072</memory><os><type arch='i686'>hvm"
         "</type></os><devices><interface type='network'><mac address='" +
         mac +
         "'/><source network='default'/></interface></devices>"
         "</domain>";
}

const snapshot::DomainDisk* FindDisk(const snapshot::DomainInfo& info,
                                     const std::string& target) {
  for (const auto& d : info.disks)
    if (d.target == target) return &d;
  return nullptr;
}

std::vector<std::string> NetworkNames(const snapshot::LibvirtHost& host) {
  std::vector<std::string> names;
  auto nets = host.NetworkXmls();
  EXPECT_THAT(nets, IsOk());
  if (nets.ok())
    for (const auto& [name, xml] : *nets) names.push_back(name);
  return names;
}

// What a recovery point holds.
struct PointSpec {
  std::string kind = "vm";
  std::string domain_file = "domain-inactive.xml";
  std::string domain_xml = DomainXml();
  std::string network_xml = NetworkXml();  // "": not captured
  bool nvram = true;
  std::string time = "2026-11-22T20:00:00Z";
  std::string agent_id;  // non-empty: committed by that host agent
};

class VmRestoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(tmp_.path().empty());
    repo_dir_ = tmp_.Sub("repo");
    ASSERT_THAT(CloneFreshRepository(repo_dir_), IsOk());
    auto r = Repository::Open(repo_dir_, kTestPassphrase, WriteOptions());
    ASSERT_THAT(r, IsOk());
    repo_ = std::move(r).value();

    auto h = snapshot::LibvirtHost::Connect(kHostUri);
    ASSERT_THAT(h, IsOk());
    host_ = std::move(h).value();
    // A fresh test driver: nothing left over from another test.
    auto names = host_->DomainNames();
    ASSERT_THAT(names, IsOk());
    ASSERT_THAT(*names, ElementsAre("test"));
    ASSERT_THAT(NetworkNames(*host_), ElementsAre("default"));

    // The disk: data, a run of zeros, data, and a size that is not a whole
    // number of chunks (but of sectors: qcow2 rounds up to 512 bytes).
    disk_data_ = RandomData(1 * 1024 * 1024 + 25 * 512, 7);
    std::fill(disk_data_.begin() + 200000, disk_data_.begin() + 600000, 0);
    source_disk_ = tmp_.Sub("source-vda.raw");
    WriteWholeFile(source_disk_, disk_data_);
    nvram_data_ = RandomData(128 * 1024, 8);

    dir_ = tmp_.Sub("images");
    options_.storage_dir = dir_;
  }

  // Commits a recovery point of VM web1 and returns it as loaded back.
  void MakePoint(const PointSpec& spec, Manifest* out) {
    agent::LocalPointSink sink(*repo_);
    auto src = snapshot::ImageSource::Open(source_disk_);
    ASSERT_THAT(src, IsOk());
    agent::CaptureOptions co;
    co.threads = 2;
    agent::DiskCapture capture;
    auto disk = agent::CaptureDisk(sink, **src, nullptr, co, capture);
    ASSERT_THAT(disk, IsOk());
    disk->name = "vda";
    disk->source = "/var/lib/libvirt/images/web1.qcow2";
    disk->capture = "full: no checkpoint";

    Manifest m;
    m.name = "web1";
    m.kind = spec.kind;
    m.time = spec.time;
    m.hostname = "old-host";
    m.tool = "haven 0.1.0";
    m.consistency = "crash-consistent";
    m.consistency_reason = "the guest agent did not answer";
    if (spec.kind == "vm") m.vm_uuid = kUuid;
    m.agent_id = spec.agent_id;
    m.disks.push_back(*disk);
    std::vector<snapshot::ConfigFile> files;
    files.push_back({spec.domain_file, spec.domain_xml});
    if (!spec.network_xml.empty())
      files.push_back({"networks/netx.xml", spec.network_xml});
    if (spec.nvram)
      files.push_back({"nvram/web1_VARS.fd",
                       std::string(nvram_data_.begin(), nvram_data_.end())});
    ASSERT_THAT(agent::StoreConfigFiles(sink, files, m), IsOk());
    ASSERT_THAT(m.notes, IsEmpty());
    ASSERT_THAT(sink.Flush(), IsOk());
    ASSERT_THAT(repo_->CommitSnapshot(m), IsOk());
    auto loaded = repo_->LoadSnapshot(m.id);
    ASSERT_THAT(loaded, IsOk());
    *out = std::move(loaded).value();
  }

  Result<VmPlan> Plan(const Manifest& m, const VmRestoreOptions& options,
                      PlanContext& context) {
    return restore::PlanVmRestore(*repo_, m, *host_, options, context);
  }
  Result<VmPlan> Plan(const Manifest& m, const VmRestoreOptions& options) {
    PlanContext context;
    return Plan(m, options, context);
  }

  void Define(const std::string& name, const std::string& uuid,
              const std::string& mac) {
    ASSERT_THAT(host_->DefineDomain(HostDomainXml(name, uuid, mac)), IsOk());
  }

  void WriteJournal(const std::string& name, const std::string& snapshot_id,
                    const std::vector<std::string>& files) {
    ASSERT_THAT(MakeDirs(dir_, 0755), IsOk());
    nlohmann::json j = {
        {"snapshot", snapshot_id}, {"name", name}, {"files", files}};
    std::string text = j.dump(2);
    WriteWholeFile(
        dir_ + "/.haven-restore-" + name + ".json",
        ByteSpan(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  }

  // Files in dir_ whose names contain `part`.
  std::vector<std::string> FilesWith(const std::string& part) {
    std::vector<std::string> out;
    if (!PathExists(dir_)) return out;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      std::string n = e.path().filename().string();
      if (n.find(part) != std::string::npos) out.push_back(n);
    }
    return out;
  }

  TempDir tmp_;
  std::string repo_dir_, source_disk_, dir_;
  std::unique_ptr<Repository> repo_;
  std::unique_ptr<snapshot::LibvirtHost> host_;
  Bytes disk_data_, nvram_data_;
  VmRestoreOptions options_;
};

// ------------------------------------------------------------------ plan

TEST_F(VmRestoreTest, PlanOntoAHostThatNeverSawTheVm) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  PlanContext context;
  options_.storage_dir = dir_ + "//";  // trailing slashes are dropped
  auto plan = Plan(m, options_, context);
  ASSERT_THAT(plan, IsOk());

  EXPECT_THAT(plan->conflicts, IsEmpty());
  EXPECT_EQ(plan->snapshot.id, m.id);
  EXPECT_EQ(plan->source_name, "web1");
  EXPECT_EQ(plan->name, "web1");
  EXPECT_EQ(plan->uuid, kUuid);
  EXPECT_EQ(plan->dir, dir_);
  EXPECT_EQ(plan->journal, dir_ + "/.haven-restore-web1.json");
  EXPECT_TRUE(plan->replace_domain.empty());
  EXPECT_THAT(plan->macs, IsEmpty());

  ASSERT_THAT(plan->disks, SizeIs(1));  // the CD-ROM is not restored
  const restore::PlannedDisk& d = plan->disks[0];
  EXPECT_EQ(d.target, "vda");
  EXPECT_EQ(d.path, dir_ + "/web1-vda.qcow2");
  EXPECT_EQ(d.format, "qcow2");  // the original's
  EXPECT_EQ(d.size, disk_data_.size());
  EXPECT_FALSE(d.exists);
  EXPECT_THAT(plan->warnings,
              Contains(AllOf(HasSubstr("disk hdc"),
                             HasSubstr("/isos/haven-no-such-installer.iso"))));

  EXPECT_EQ(plan->nvram_config, "nvram/web1_VARS.fd");
  EXPECT_EQ(plan->nvram_path, dir_ + "/web1_VARS.fd");

  ASSERT_THAT(plan->networks, SizeIs(1));
  const restore::PlannedNetwork& n = plan->networks[0];
  EXPECT_EQ(n.name, "netx");
  EXPECT_EQ(n.from, "netx");
  EXPECT_EQ(n.action, "create");
  auto net = snapshot::ParseNetworkXml(n.xml);
  ASSERT_THAT(net, IsOk());
  EXPECT_EQ(net->name, "netx");
  EXPECT_EQ(net->uuid, kNetUuid);  // no clash: kept
  EXPECT_EQ(net->bridge, "hvnetx0");

  // The XML to define: the new paths, everything else as captured.
  auto info = snapshot::ParseDomainXml(plan->xml);
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->name, "web1");
  EXPECT_EQ(info->uuid, kUuid);
  const snapshot::DomainDisk* vda = FindDisk(*info, "vda");
  ASSERT_NE(vda, nullptr);
  EXPECT_EQ(vda->type, "file");
  EXPECT_EQ(vda->path, dir_ + "/web1-vda.qcow2");
  EXPECT_EQ(vda->format, "qcow2");
  EXPECT_EQ(info->nvram, dir_ + "/web1_VARS.fd");
  ASSERT_THAT(info->interfaces, SizeIs(1));
  EXPECT_EQ(info->interfaces[0].source, "netx");
  EXPECT_EQ(info->interfaces[0].mac, kMac);

  // What later plans of the same restore must not take again.
  EXPECT_THAT(context.names, ElementsAre("web1"));
  EXPECT_TRUE(context.paths.count(dir_ + "/web1-vda.qcow2"));
  EXPECT_TRUE(context.paths.count(dir_ + "/web1_VARS.fd"));
  EXPECT_THAT(context.networks, ElementsAre(Pair("netx", "web1")));

  // Planning changes nothing.
  EXPECT_FALSE(PathExists(dir_));
  EXPECT_THAT(NetworkNames(*host_), ElementsAre("default"));
  EXPECT_THAT(host_->Lookup("web1"),
              StatusIs(Code::kNotFound, HasSubstr("web1")));
}

TEST_F(VmRestoreTest, PlanWithNewNameAndFormat) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  options_.name = "web1-copy";
  options_.format = "raw";
  auto plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  EXPECT_EQ(plan->source_name, "web1");
  EXPECT_EQ(plan->name, "web1-copy");
  ASSERT_THAT(plan->disks, SizeIs(1));
  EXPECT_EQ(plan->disks[0].path, dir_ + "/web1-copy-vda.img");
  EXPECT_EQ(plan->disks[0].format, "raw");
  EXPECT_EQ(plan->nvram_path, dir_ + "/web1-copy_VARS.fd");
  EXPECT_EQ(plan->journal, dir_ + "/.haven-restore-web1-copy.json");
  auto info = snapshot::ParseDomainXml(plan->xml);
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->name, "web1-copy");
  const snapshot::DomainDisk* vda = FindDisk(*info, "vda");
  ASSERT_NE(vda, nullptr);
  EXPECT_EQ(vda->path, dir_ + "/web1-copy-vda.img");
  EXPECT_EQ(vda->format, "raw");
}

TEST_F(VmRestoreTest, RawDiskDefaultsToRaw) {
  PointSpec spec;
  spec.domain_xml = DomainXml();
  auto at = spec.domain_xml.find("type='qcow2'");
  ASSERT_NE(at, std::string::npos);
  spec.domain_xml.replace(at, 12, "type='raw'");
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint(spec, &m));
  auto plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  ASSERT_THAT(plan->disks, SizeIs(1));
  EXPECT_EQ(plan->disks[0].format, "raw");
  EXPECT_EQ(plan->disks[0].path, dir_ + "/web1-vda.img");
}

TEST_F(VmRestoreTest, FallsBackToTheLiveDomainXml) {
  PointSpec spec;
  spec.domain_file = "domain.xml";
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint(spec, &m));
  auto plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  EXPECT_EQ(plan->source_name, "web1");
  EXPECT_THAT(plan->conflicts, IsEmpty());
}

TEST_F(VmRestoreTest, RefusesAnImagePoint) {
  PointSpec spec;
  spec.kind = "image";
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint(spec, &m));
  EXPECT_THAT(
      Plan(m, options_),
      StatusIs(Code::kInvalidArgument,
               AllOf(HasSubstr(m.id.substr(0, 8)), HasSubstr("not a VM backup"),
                     HasSubstr("'haven restore image'"))));
}

TEST_F(VmRestoreTest, RefusesAPointWithoutDataForADiskItsXmlNames) {
  PointSpec spec;
  spec.domain_xml = DomainXml(R"(
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/web1-data.qcow2'/>
      <target dev='vdb' bus='virtio'/>
    </disk>)");
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint(spec, &m));
  EXPECT_THAT(Plan(m, options_),
              StatusIs(Code::kDataLoss, HasSubstr("no data for disk vdb")));
}

TEST_F(VmRestoreTest, RefusesBadFoldersAndNames) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  VmRestoreOptions o = options_;
  o.storage_dir = "images";
  EXPECT_THAT(Plan(m, o), StatusIs(Code::kInvalidArgument,
                                   HasSubstr("is not an absolute path")));
  o.storage_dir = dir_ + "\nx";
  EXPECT_THAT(Plan(m, o),
              StatusIs(Code::kInvalidArgument, HasSubstr("control character")));
  o = options_;
  o.pool = "default";
  EXPECT_THAT(Plan(m, o),
              StatusIs(Code::kInvalidArgument, HasSubstr("not both")));
  for (const char* name : {"a/b", ".hidden"}) {
    o = options_;
    o.name = name;
    EXPECT_THAT(Plan(m, o),
                StatusIs(Code::kInvalidArgument,
                         HasSubstr("cannot be used in a file name")))
        << name;
  }
}

// --------------------------------------------------------------- networks

TEST_F(VmRestoreTest, NetworkMappedToAnExistingOne) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  options_.network_map["netx"] = "default";
  PlanContext context;
  auto plan = Plan(m, options_, context);
  ASSERT_THAT(plan, IsOk());
  EXPECT_THAT(plan->conflicts, IsEmpty());
  ASSERT_THAT(plan->networks, SizeIs(1));
  EXPECT_EQ(plan->networks[0].name, "default");
  EXPECT_EQ(plan->networks[0].from, "netx");
  EXPECT_EQ(plan->networks[0].action, "mapped");
  EXPECT_TRUE(plan->networks[0].xml.empty());
  EXPECT_THAT(context.networks, IsEmpty());  // nothing to create
  auto info = snapshot::ParseDomainXml(plan->xml);
  ASSERT_THAT(info, IsOk());
  ASSERT_THAT(info->interfaces, SizeIs(1));
  EXPECT_EQ(info->interfaces[0].source, "default");
  EXPECT_EQ(info->interfaces[0].mac, kMac);
}

TEST_F(VmRestoreTest, NetworkMappedToAMissingOneConflicts) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  options_.network_map["netx"] = "nosuchnet";
  PlanContext context;
  auto plan = Plan(m, options_, context);
  ASSERT_THAT(plan, IsOk());
  EXPECT_THAT(plan->conflicts, ElementsAre(AllOf(HasSubstr("network nosuchnet"),
                                                 HasSubstr("mapped from netx"),
                                                 HasSubstr("does not exist"))));
  ASSERT_THAT(plan->networks, SizeIs(1));
  EXPECT_NE(plan->networks[0].action, "create");
  EXPECT_THAT(context.networks, IsEmpty());
}

TEST_F(VmRestoreTest, NetworkAlreadyOnTheHost) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  ASSERT_THAT(host_->CreateNetwork("netx", NetworkXml()), IsOk());
  PlanContext context;
  auto plan = Plan(m, options_, context);
  ASSERT_THAT(plan, IsOk());
  EXPECT_THAT(plan->conflicts, IsEmpty());
  ASSERT_THAT(plan->networks, SizeIs(1));
  EXPECT_EQ(plan->networks[0].action, "exists");
  EXPECT_TRUE(plan->networks[0].xml.empty());
  EXPECT_THAT(context.networks, IsEmpty());
}

TEST_F(VmRestoreTest, MissingNetworkNotCapturedConflicts) {
  PointSpec spec;
  spec.network_xml = "";
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint(spec, &m));
  auto plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  EXPECT_THAT(
      plan->conflicts,
      ElementsAre(AllOf(HasSubstr("network netx"), HasSubstr("no definition"),
                        HasSubstr("--network-map netx="))));
  // Mapping it away resolves it.
  options_.network_map["netx"] = "default";
  auto mapped = Plan(m, options_);
  ASSERT_THAT(mapped, IsOk());
  EXPECT_THAT(mapped->conflicts, IsEmpty());
}

TEST_F(VmRestoreTest, CapturedNetworkClashingUuidAndBridgeAreDropped) {
  // The captured netx has the UUID (in upper case) and bridge of the host's
  // network "default".
  std::string upper = kDefaultNetUuid;
  std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
  PointSpec spec;
  spec.network_xml = NetworkXml(upper, "virbr0");
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint(spec, &m));
  auto plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  EXPECT_THAT(plan->conflicts, IsEmpty());
  EXPECT_THAT(plan->warnings,
              Contains(AllOf(HasSubstr("network netx"), HasSubstr("UUID"))));
  EXPECT_THAT(plan->warnings, Contains(AllOf(HasSubstr("network netx"),
                                             HasSubstr("bridge virbr0"))));
  ASSERT_THAT(plan->networks, SizeIs(1));
  EXPECT_EQ(plan->networks[0].action, "create");
  auto net = snapshot::ParseNetworkXml(plan->networks[0].xml);
  ASSERT_THAT(net, IsOk());
  EXPECT_EQ(net->name, "netx");
  EXPECT_EQ(net->uuid, "");
  EXPECT_EQ(net->bridge, "");
  EXPECT_EQ(net->mac, "");
  EXPECT_THAT(plan->networks[0].xml, HasSubstr("192.168.150.1"));  // kept
}

// ---------------------------------------------------------------- domains

TEST_F(VmRestoreTest, SameNamedDomainConflictsUnlessReplaced) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  ASSERT_NO_FATAL_FAILURE(Define("web1", "11111111-2222-4333-8444-555555555555",
                                 "52:54:00:00:00:01"));

  auto plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  EXPECT_THAT(plan->conflicts,
              ElementsAre(AllOf(HasSubstr("domain web1 already exists"),
                                HasSubstr(kHostUri))));
  EXPECT_TRUE(plan->replace_domain.empty());

  options_.replace = true;
  auto replace = Plan(m, options_);
  ASSERT_THAT(replace, IsOk());
  EXPECT_THAT(replace->conflicts, IsEmpty());
  EXPECT_EQ(replace->replace_domain, "web1");
  EXPECT_THAT(replace->warnings,
              Contains(AllOf(HasSubstr("domain web1"), HasSubstr("replaced"))));
}

TEST_F(VmRestoreTest, SameUuidUnderTheSameNameIsNoUuidConflict) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  // The original VM itself is still defined here.
  ASSERT_NO_FATAL_FAILURE(Define("web1", kUuid, kMac));
  auto plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  EXPECT_THAT(plan->conflicts,
              ElementsAre(HasSubstr("domain web1 already exists")));
  options_.replace = true;
  auto replace = Plan(m, options_);
  ASSERT_THAT(replace, IsOk());
  EXPECT_THAT(replace->conflicts, IsEmpty());
  EXPECT_EQ(replace->uuid, kUuid);
}

TEST_F(VmRestoreTest, SameUuidUnderAnotherNameConflictsEvenWithReplace) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  ASSERT_NO_FATAL_FAILURE(Define("other", kUuid, kMac));

  auto uuid_conflict =
      ElementsAre(AllOf(HasSubstr("domain other"), HasSubstr(kUuid),
                        HasSubstr("--new-identity")));
  auto plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  EXPECT_THAT(plan->conflicts, uuid_conflict);
  // "other" also uses the VM's MAC.
  EXPECT_THAT(plan->warnings,
              Contains(AllOf(HasSubstr(std::string("MAC ") + kMac),
                             HasSubstr("other"))));

  options_.replace = true;
  auto replace = Plan(m, options_);
  ASSERT_THAT(replace, IsOk());
  EXPECT_THAT(replace->conflicts, uuid_conflict);
  EXPECT_TRUE(replace->replace_domain.empty());  // web1 is not on the host

  options_.replace = false;
  options_.new_identity = true;
  auto fresh = Plan(m, options_);
  ASSERT_THAT(fresh, IsOk());
  EXPECT_THAT(fresh->conflicts, IsEmpty());
  EXPECT_TRUE(fresh->new_uuid);
  ASSERT_EQ(fresh->uuid.size(), 36u);
  EXPECT_NE(fresh->uuid, kUuid);
  EXPECT_THAT(fresh->warnings, Not(Contains(HasSubstr("MAC"))));
  ASSERT_THAT(fresh->macs, SizeIs(1));
  EXPECT_EQ(fresh->macs[0].first, kMac);
  EXPECT_NE(fresh->macs[0].second, kMac);
  EXPECT_THAT(fresh->macs[0].second, ::testing::StartsWith("52:54:00:"));
  // The new UUID and the new MAC in place of the old.
  EXPECT_THAT(fresh->xml, HasSubstr("<uuid>" + fresh->uuid + "</uuid>"));
  EXPECT_THAT(fresh->xml, Not(HasSubstr(kUuid)));
  EXPECT_THAT(fresh->xml, Not(HasSubstr(kMac)));
  EXPECT_THAT(fresh->xml, HasSubstr(fresh->macs[0].second));
}

// ------------------------------------------------------------------ files

TEST_F(VmRestoreTest, ExistingDiskFileConflictsUnlessReplaced) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  ASSERT_THAT(MakeDirs(dir_, 0755), IsOk());
  const std::string path = dir_ + "/web1-vda.qcow2";
  WriteWholeFile(path, RandomData(100, 1));

  auto plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  EXPECT_THAT(plan->conflicts, ElementsAre(AllOf(HasSubstr("disk file " + path),
                                                 HasSubstr("already exists"))));
  ASSERT_THAT(plan->disks, SizeIs(1));
  EXPECT_TRUE(plan->disks[0].exists);

  options_.replace = true;
  auto replace = Plan(m, options_);
  ASSERT_THAT(replace, IsOk());
  EXPECT_THAT(replace->conflicts, IsEmpty());
  EXPECT_THAT(replace->warnings,
              Contains(AllOf(HasSubstr(path), HasSubstr("overwritten"))));
}

TEST_F(VmRestoreTest, ExistingNvramAndStagingFilesConflict) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  ASSERT_THAT(MakeDirs(dir_, 0755), IsOk());
  // A staging file left by someone else, and an NVRAM file.
  WriteWholeFile(dir_ + "/web1-vda.qcow2.haven-restore", RandomData(10, 1));
  WriteWholeFile(dir_ + "/web1_VARS.fd", RandomData(10, 2));
  auto plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  EXPECT_THAT(
      plan->conflicts,
      ::testing::UnorderedElementsAre(
          HasSubstr(dir_ + "/web1-vda.qcow2.haven-restore already exists"),
          HasSubstr("NVRAM file " + dir_ + "/web1_VARS.fd")));
  EXPECT_FALSE(plan->disks[0].exists);  // the final path is free
}

TEST_F(VmRestoreTest, FilesOfAnInterruptedRestoreOfTheSamePointAreOurs) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  const std::string disk = dir_ + "/web1-vda.qcow2";
  const std::string nvram = dir_ + "/web1_VARS.fd";
  ASSERT_NO_FATAL_FAILURE(WriteJournal(
      "web1", m.id,
      {disk, disk + ".haven-restore", nvram, nvram + ".haven-restore"}));
  WriteWholeFile(disk, RandomData(100, 1));
  WriteWholeFile(disk + ".haven-restore", RandomData(100, 2));
  WriteWholeFile(nvram + ".haven-restore", RandomData(100, 3));

  auto plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  EXPECT_THAT(plan->conflicts, IsEmpty());
  ASSERT_THAT(plan->disks, SizeIs(1));
  EXPECT_TRUE(plan->disks[0].exists);
}

TEST_F(VmRestoreTest, JournalOfAnotherPointDoesNotMakeFilesOurs) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  const std::string disk = dir_ + "/web1-vda.qcow2";
  ASSERT_NO_FATAL_FAILURE(WriteJournal("web1",
                                       "0123456789abcdef0123456789abcdef",
                                       {disk, disk + ".haven-restore"}));
  WriteWholeFile(disk, RandomData(100, 1));
  auto plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  EXPECT_THAT(plan->conflicts, ElementsAre(AllOf(HasSubstr("disk file " + disk),
                                                 HasSubstr("already exists"))));

  // Nor does a journal that is not JSON.
  std::string junk = "{not json";
  WriteWholeFile(
      dir_ + "/.haven-restore-web1.json",
      ByteSpan(reinterpret_cast<const uint8_t*>(junk.data()), junk.size()));
  auto again = Plan(m, options_);
  ASSERT_THAT(again, IsOk());
  EXPECT_THAT(again->conflicts, SizeIs(1));
}

// ------------------------------------------------------------ PlanContext

TEST_F(VmRestoreTest, TwoPlansOfOneRestoreWithTheSameName) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  PlanContext context;
  auto first = Plan(m, options_, context);
  ASSERT_THAT(first, IsOk());
  EXPECT_THAT(first->conflicts, IsEmpty());
  ASSERT_THAT(first->networks, SizeIs(1));
  EXPECT_EQ(first->networks[0].action, "create");

  auto second = Plan(m, options_, context);
  ASSERT_THAT(second, IsOk());
  EXPECT_THAT(second->conflicts,
              Contains(HasSubstr("two VMs of this restore are named web1")));
  EXPECT_THAT(second->conflicts,
              Contains(AllOf(HasSubstr(dir_ + "/web1-vda.qcow2"),
                             HasSubstr("also written by another VM"))));
  EXPECT_THAT(second->conflicts,
              Contains(AllOf(HasSubstr(dir_ + "/web1_VARS.fd"),
                             HasSubstr("also written by another VM"))));
  ASSERT_THAT(second->networks, SizeIs(1));
  EXPECT_EQ(second->networks[0].action, "restore");  // the first creates it
  EXPECT_EQ(second->networks[0].by, "web1");
}

TEST_F(VmRestoreTest, SecondVmBesideTheFirstReusesTheCreatedNetwork) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  PlanContext context;
  auto first = Plan(m, options_, context);
  ASSERT_THAT(first, IsOk());
  VmRestoreOptions o = options_;
  o.name = "web2";
  o.new_identity = true;
  auto second = Plan(m, o, context);
  ASSERT_THAT(second, IsOk());
  EXPECT_THAT(second->conflicts, IsEmpty());
  ASSERT_THAT(second->networks, SizeIs(1));
  // Not "exists on this host": the plan says who creates it.
  EXPECT_EQ(second->networks[0].action, "restore");
  EXPECT_EQ(second->networks[0].by, "web1");
  EXPECT_TRUE(second->networks[0].xml.empty());
  EXPECT_THAT(context.names, ElementsAre("web1", "web2"));
  EXPECT_THAT(context.networks, ElementsAre(Pair("netx", "web1")));
}

// ---------------------------------------------------------------- execute

TEST_F(VmRestoreTest, ExecuteDefinesTheVmWithItsDisksAndNetwork) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  options_.format = "raw";  // no qemu-img needed
  std::vector<std::string> log;
  options_.log = [&](const std::string& line) { log.push_back(line); };
  auto plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  ASSERT_THAT(plan->conflicts, IsEmpty());
  const std::string disk = dir_ + "/web1-vda.img";
  ASSERT_EQ(plan->disks[0].path, disk);

  auto result = restore::ExecuteVmRestore(*repo_, *host_, *plan, options_);
  ASSERT_THAT(result, IsOk());
  EXPECT_TRUE(result->defined);
  EXPECT_FALSE(result->started);
  EXPECT_EQ(result->uuid, kUuid);
  EXPECT_THAT(result->networks_created, ElementsAre("netx"));
  ASSERT_THAT(result->disks, SizeIs(1));
  EXPECT_GT(result->disks[0].data_bytes, 0u);
  EXPECT_THAT(log, Contains(HasSubstr("defining domain web1")));

  // The domain, as libvirt has it.
  auto vm = host_->Lookup("web1");
  ASSERT_THAT(vm, IsOk());
  EXPECT_THAT((*vm)->Active(), IsOk());
  EXPECT_FALSE(*(*vm)->Active());
  auto xml = (*vm)->Xml(true);
  ASSERT_THAT(xml, IsOk());
  auto info = snapshot::ParseDomainXml(*xml);
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->uuid, kUuid);
  const snapshot::DomainDisk* vda = FindDisk(*info, "vda");
  ASSERT_NE(vda, nullptr);
  EXPECT_EQ(vda->path, disk);
  EXPECT_EQ(vda->format, "raw");
  EXPECT_EQ(info->nvram, dir_ + "/web1_VARS.fd");
  ASSERT_THAT(info->interfaces, SizeIs(1));
  EXPECT_EQ(info->interfaces[0].source, "netx");
  EXPECT_EQ(info->interfaces[0].mac, kMac);

  // The network, defined from its captured XML.
  auto nets = host_->NetworkXmls();
  ASSERT_THAT(nets, IsOk());
  ASSERT_THAT(*nets, SizeIs(2));
  EXPECT_EQ((*nets)[1].first, "netx");
  auto net = snapshot::ParseNetworkXml((*nets)[1].second);
  ASSERT_THAT(net, IsOk());
  EXPECT_EQ(net->uuid, kNetUuid);
  EXPECT_EQ(net->bridge, "hvnetx0");

  // The files: byte for byte, and nothing else left behind.
  Bytes restored = ReadWholeFile(disk);
  ASSERT_EQ(restored.size(), disk_data_.size());
  EXPECT_TRUE(restored == disk_data_)
      << "restored disk differs from the source";
  Bytes nvram = ReadWholeFile(dir_ + "/web1_VARS.fd");
  EXPECT_TRUE(nvram == nvram_data_) << "restored NVRAM differs";
  EXPECT_FALSE(PathExists(plan->journal));
  EXPECT_THAT(FilesWith(".haven-"), IsEmpty());
  EXPECT_THAT(FilesWith(""),
              ::testing::UnorderedElementsAre("web1-vda.img", "web1_VARS.fd"));

  // A second plan of the same point recognises the VM it restored (UUID
  // and metadata): nothing to do, no conflict.
  auto again = Plan(m, options_);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->state, "done");
  EXPECT_THAT(again->conflicts, IsEmpty());
  EXPECT_THAT(again->warnings,
              Contains(HasSubstr("restored from this point before")));
  ASSERT_THAT(again->networks, SizeIs(1));
  EXPECT_EQ(again->networks[0].action, "exists");
  auto left = restore::ExecuteVmRestore(*repo_, *host_, *again, options_);
  ASSERT_THAT(left, IsOk());
  EXPECT_TRUE(left->already);
  EXPECT_EQ(left->uuid, kUuid);
  EXPECT_TRUE(ReadWholeFile(disk) == disk_data_);
  // With --replace it is restored again, over itself.
  options_.replace = true;
  auto over = Plan(m, options_);
  ASSERT_THAT(over, IsOk());
  EXPECT_EQ(over->state, "restore");
  EXPECT_EQ(over->replace_domain, "web1");
  EXPECT_THAT(over->conflicts, IsEmpty());
  // A domain of that name the restore did not make is a conflict.
  options_.replace = false;
  ASSERT_THAT(host_->RemoveDomain("web1"), IsOk());
  ASSERT_NO_FATAL_FAILURE(Define("web1", kUuid, "52:54:00:00:00:01"));
  auto foreign = Plan(m, options_);
  ASSERT_THAT(foreign, IsOk());
  EXPECT_EQ(foreign->state, "restore");
  EXPECT_THAT(foreign->conflicts,
              Contains(HasSubstr("domain web1 already exists")));
  EXPECT_THAT(foreign->conflicts, Contains(HasSubstr("disk file " + disk)));
}

TEST_F(VmRestoreTest, TheDryRunsPlanIsTheRunsPlan) {
  // The CLI plans once for --dry-run and again for the run: both plans
  // must be the same value, the generated identity included.
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  ASSERT_NO_FATAL_FAILURE(Define("web1", kUuid, kMac));
  options_.name = "web1-copy";
  options_.new_identity = true;
  auto dry = Plan(m, options_);
  auto run = Plan(m, options_);
  ASSERT_THAT(dry, IsOk());
  ASSERT_THAT(run, IsOk());
  EXPECT_EQ(dry->uuid, run->uuid);
  EXPECT_EQ(dry->macs, run->macs);
  EXPECT_EQ(dry->xml, run->xml);
  EXPECT_EQ(dry->space_needed, run->space_needed);
  ASSERT_EQ(dry->disks.size(), run->disks.size());
  EXPECT_EQ(dry->disks[0].path, run->disks[0].path);
  EXPECT_EQ(dry->disks[0].data_bytes, run->disks[0].data_bytes);
  // The disk needs its data, not its holes (400,000 zero bytes).
  EXPECT_LT(dry->disks[0].data_bytes, disk_data_.size());
  EXPECT_GT(dry->disks[0].data_bytes, 0u);
  // The MAC in use by web1 is never handed out; another name, another
  // identity.
  ASSERT_THAT(dry->macs, SizeIs(1));
  EXPECT_NE(dry->macs[0].second, kMac);
  options_.name = "web1-other";
  auto other = Plan(m, options_);
  ASSERT_THAT(other, IsOk());
  EXPECT_NE(other->uuid, dry->uuid);

  auto result = restore::ExecuteVmRestore(*repo_, *host_, *run, options_);
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(result->uuid, dry->uuid);
  auto info =
      snapshot::ParseDomainXml(*(*host_->Lookup("web1-copy"))->Xml(true));
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->uuid, dry->uuid);
  EXPECT_EQ(info->interfaces[0].mac, dry->macs[0].second);
  EXPECT_EQ(info->restored_from, m.id);
}

TEST_F(VmRestoreTest, ARunKilledAfterItsDiskIsFinishedWithoutRewritingIt) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  options_.format = "raw";
  auto plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  ASSERT_THAT(plan->conflicts, IsEmpty());
  EXPECT_EQ(plan->create_dirs, std::vector<std::string>{dir_});
  std::fflush(nullptr);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::setenv("HAVEN_FAULT_RESTORE_KILL", "disk", 1);
    (void)restore::ExecuteVmRestore(*repo_, *host_, *plan, options_);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  const std::string staged = dir_ + "/web1-vda.img.haven-restore";
  ASSERT_TRUE(PathExists(staged));
  ASSERT_TRUE(PathExists(plan->journal));
  struct stat before;
  ASSERT_EQ(::stat(staged.c_str(), &before), 0);

  // The same restore again: its own files are no conflict, the complete
  // staged disk is used as it is.
  auto again = Plan(m, options_);
  ASSERT_THAT(again, IsOk());
  EXPECT_THAT(again->conflicts, IsEmpty());
  ASSERT_THAT(again->disks, SizeIs(1));
  EXPECT_EQ(again->disks[0].resume, "staged");
  EXPECT_EQ(again->space_needed, nvram_data_.size());  // the disk is done
  auto result = restore::ExecuteVmRestore(*repo_, *host_, *again, options_);
  ASSERT_THAT(result, IsOk());
  EXPECT_TRUE(result->defined);
  EXPECT_EQ(result->disks[0].data_bytes, 0u);  // not written again
  struct stat after;
  ASSERT_EQ(::stat((dir_ + "/web1-vda.img").c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino);
  EXPECT_TRUE(ReadWholeFile(dir_ + "/web1-vda.img") == disk_data_);
  EXPECT_FALSE(PathExists(plan->journal));
  EXPECT_THAT(FilesWith(".haven-"), IsEmpty());

  // A staged file of another point is not taken for ours.
  ASSERT_THAT(host_->RemoveDomain("web1"), IsOk());
  ASSERT_EQ(::rename((dir_ + "/web1-vda.img").c_str(), staged.c_str()), 0);
  ::unlink((dir_ + "/web1_VARS.fd").c_str());
  auto stray = Plan(m, options_);
  ASSERT_THAT(stray, IsOk());
  EXPECT_THAT(stray->conflicts,
              Contains(HasSubstr(staged + " already exists")));
}

TEST_F(VmRestoreTest, ExecuteRefusesAPlanTheHostNoLongerMatches) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  options_.format = "raw";
  auto plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  ASSERT_THAT(plan->conflicts, IsEmpty());
  // A file appears at a planned path after the plan: it is not overwritten.
  ASSERT_THAT(MakeDirs(dir_, 0755), IsOk());
  const std::string disk = dir_ + "/web1-vda.img";
  WriteWholeFile(disk, Bytes{'m', 'i', 'n', 'e'});
  EXPECT_THAT(
      restore::ExecuteVmRestore(*repo_, *host_, *plan, options_),
      StatusIs(Code::kFailedPrecondition, AllOf(HasSubstr(disk + " appeared"),
                                                HasSubstr("plan it again"))));
  EXPECT_TRUE(ReadWholeFile(disk) == (Bytes{'m', 'i', 'n', 'e'}));
  ::unlink(disk.c_str());
  // A domain of that name appears: refused, the domain left alone.
  ASSERT_NO_FATAL_FAILURE(Define("web1", "11111111-2222-4333-8444-555555555555",
                                 "52:54:00:00:00:01"));
  EXPECT_THAT(restore::ExecuteVmRestore(*repo_, *host_, *plan, options_),
              StatusIs(Code::kFailedPrecondition,
                       HasSubstr("a domain named web1 appeared")));
  EXPECT_EQ(*host_->DomainNameByUuid("11111111-2222-4333-8444-555555555555"),
            "web1");
  EXPECT_THAT(FilesWith(""), IsEmpty());
}

TEST_F(VmRestoreTest, ExecuteWithNewIdentityAndStart) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  ASSERT_NO_FATAL_FAILURE(Define("web1", kUuid, kMac));  // the original
  options_.format = "raw";
  options_.name = "web1-test";
  options_.new_identity = true;
  options_.start = true;
  options_.network_map["netx"] = "default";
  auto plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  ASSERT_THAT(plan->conflicts, IsEmpty());
  auto result = restore::ExecuteVmRestore(*repo_, *host_, *plan, options_);
  ASSERT_THAT(result, IsOk());
  EXPECT_TRUE(result->defined);
  EXPECT_TRUE(result->started) << result->start_error;
  EXPECT_THAT(result->networks_created, IsEmpty());
  EXPECT_THAT(NetworkNames(*host_), ElementsAre("default"));
  EXPECT_EQ(result->uuid.size(), 36u);
  EXPECT_NE(result->uuid, kUuid);

  auto vm = host_->Lookup("web1-test");
  ASSERT_THAT(vm, IsOk());
  auto active = (*vm)->Active();
  ASSERT_THAT(active, IsOk());
  EXPECT_TRUE(*active);
  auto xml = (*vm)->Xml(true);
  ASSERT_THAT(xml, IsOk());
  auto info = snapshot::ParseDomainXml(*xml);
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->uuid, result->uuid);
  ASSERT_THAT(info->interfaces, SizeIs(1));
  EXPECT_EQ(info->interfaces[0].source, "default");
  EXPECT_EQ(info->interfaces[0].mac, plan->macs[0].second);
  EXPECT_NE(info->interfaces[0].mac, kMac);
  // The original is untouched.
  auto original = host_->DomainNameByUuid(kUuid);
  ASSERT_THAT(original, IsOk());
  EXPECT_EQ(*original, "web1");
  Bytes restored = ReadWholeFile(dir_ + "/web1-test-vda.img");
  EXPECT_TRUE(restored == disk_data_);
}

TEST_F(VmRestoreTest, ExecuteCompletesAnInterruptedRestore) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  options_.format = "raw";
  const std::string disk = dir_ + "/web1-vda.img";
  const std::string nvram = dir_ + "/web1_VARS.fd";
  // What a restore killed in step 2 leaves: the journal, a staging file.
  ASSERT_NO_FATAL_FAILURE(WriteJournal(
      "web1", m.id,
      {disk, disk + ".haven-restore", nvram, nvram + ".haven-restore"}));
  WriteWholeFile(disk + ".haven-restore", RandomData(4096, 5));
  WriteWholeFile(disk + ".haven-restore.haven-partial", RandomData(4096, 6));
  auto plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  ASSERT_THAT(plan->conflicts, IsEmpty());
  auto result = restore::ExecuteVmRestore(*repo_, *host_, *plan, options_);
  ASSERT_THAT(result, IsOk());
  EXPECT_TRUE(result->defined);
  Bytes restored = ReadWholeFile(disk);
  EXPECT_TRUE(restored == disk_data_) << "the stale staging file survived";
  EXPECT_FALSE(PathExists(plan->journal));
  EXPECT_THAT(FilesWith(".haven-"), IsEmpty());
}

TEST_F(VmRestoreTest, ExecuteQcow2) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  auto plan = Plan(m, options_);  // qcow2, as the original
  ASSERT_THAT(plan, IsOk());
  ASSERT_THAT(plan->conflicts, IsEmpty());
  const std::string disk = dir_ + "/web1-vda.qcow2";
  ASSERT_EQ(plan->disks[0].path, disk);
  auto result = restore::ExecuteVmRestore(*repo_, *host_, *plan, options_);
  ASSERT_THAT(result, IsOk());
  EXPECT_TRUE(result->defined);
  auto info = RunProcess({"qemu-img", "info", "--output=json", disk}, {}, 120,
                         /*capture=*/true);
  ASSERT_THAT(info, IsOk());
  ASSERT_EQ(info->exit_code, 0) << info->output;
  auto j = nlohmann::json::parse(info->output, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << info->output;
  EXPECT_EQ(j.value("format", ""), "qcow2");
  EXPECT_EQ(j.value("virtual-size", uint64_t{0}), disk_data_.size());
  // Content only (without -s, allocation may differ: zeros become holes).
  auto cmp = RunProcess(
      {"qemu-img", "compare", "-f", "qcow2", "-F", "raw", disk, source_disk_},
      {}, 120, /*capture=*/true);
  ASSERT_THAT(cmp, IsOk());
  EXPECT_TRUE(cmp->exited);
  EXPECT_EQ(cmp->exit_code, 0) << cmp->output;
  EXPECT_FALSE(PathExists(plan->journal));
  EXPECT_THAT(FilesWith(".haven-"), IsEmpty());
}

TEST_F(VmRestoreTest, ExecuteReplacesTheSameNamedDomainAndFiles) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  const std::string other_uuid = "11111111-2222-4333-8444-555555555555";
  ASSERT_NO_FATAL_FAILURE(Define("web1", other_uuid, "52:54:00:00:00:01"));
  ASSERT_THAT(MakeDirs(dir_, 0755), IsOk());
  const std::string disk = dir_ + "/web1-vda.img";
  WriteWholeFile(disk, RandomData(5000, 9));  // an older disk of web1
  options_.format = "raw";
  options_.replace = true;
  std::vector<std::string> log;
  options_.log = [&](const std::string& line) { log.push_back(line); };
  auto plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  ASSERT_THAT(plan->conflicts, IsEmpty());
  ASSERT_EQ(plan->replace_domain, "web1");
  auto result = restore::ExecuteVmRestore(*repo_, *host_, *plan, options_);
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(result->uuid, kUuid);
  EXPECT_THAT(log, Contains(HasSubstr("removing the existing domain web1")));
  auto holder = host_->DomainNameByUuid(other_uuid);
  ASSERT_THAT(holder, IsOk());
  EXPECT_EQ(*holder, "") << "the replaced domain is still defined";
  auto now = host_->DomainNameByUuid(kUuid);
  ASSERT_THAT(now, IsOk());
  EXPECT_EQ(*now, "web1");
  Bytes restored = ReadWholeFile(disk);
  EXPECT_TRUE(restored == disk_data_) << "the old disk file was not replaced";
  EXPECT_THAT(FilesWith(".haven-"), IsEmpty());
}

TEST_F(VmRestoreTest, ExecuteThatFailsBeforeMovingFilesRemovesThem) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  options_.format = "raw";
  auto plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  ASSERT_THAT(plan->conflicts, IsEmpty());
  ASSERT_EQ(plan->networks[0].action, "create");
  // Between plan and execute, someone defines another netx: it is left
  // alone (libvirt would take a define of the same name and UUID as an
  // update). The run sees it before writing anything (had it appeared
  // later, CreateNetwork's AlreadyExists would remove the staged files).
  ASSERT_THAT(host_->CreateNetwork(
                  "netx", NetworkXml("22222222-3333-4444-8555-666666666666",
                                     "hvother0")),
              IsOk());
  auto result = restore::ExecuteVmRestore(*repo_, *host_, *plan, options_);
  EXPECT_THAT(result, StatusIs(Code::kFailedPrecondition,
                               HasSubstr("network named netx appeared")));
  EXPECT_THAT(FilesWith(""), IsEmpty());  // disks, NVRAM, journal: gone
  EXPECT_THAT(host_->Lookup("web1"),
              StatusIs(Code::kNotFound, HasSubstr("web1")));
}

TEST_F(VmRestoreTest, ExecuteRefusesAPlanWithConflicts) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  ASSERT_NO_FATAL_FAILURE(Define("web1", "11111111-2222-4333-8444-555555555555",
                                 "52:54:00:00:00:01"));
  options_.format = "raw";
  auto plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  ASSERT_THAT(plan->conflicts, SizeIs(1));
  EXPECT_THAT(restore::ExecuteVmRestore(*repo_, *host_, *plan, options_),
              StatusIs(Code::kFailedPrecondition,
                       AllOf(HasSubstr("1 problem"),
                             HasSubstr("domain web1 already exists"))));
  // Nothing was written or created.
  EXPECT_FALSE(PathExists(dir_));
  EXPECT_THAT(NetworkNames(*host_), ElementsAre("default"));
  auto uuid = host_->DomainNameByUuid(kUuid);
  ASSERT_THAT(uuid, IsOk());
  EXPECT_EQ(*uuid, "");
}

// When libvirt refuses the definition (here: a domain with the VM's UUID
// appeared between plan and execute), the files already moved into place
// are taken out again and removed, with the journal.
TEST_F(VmRestoreTest, FailedDefineRemovesTheFilesItWrote) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  options_.format = "raw";
  auto plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  ASSERT_THAT(plan->conflicts, IsEmpty());
  // The race: another domain takes the UUID after the plan was made.
  ASSERT_NO_FATAL_FAILURE(Define("intruder", kUuid, "52:54:00:00:00:02"));
  auto result = restore::ExecuteVmRestore(*repo_, *host_, *plan, options_);
  EXPECT_THAT(result,
              StatusIs(Code::kUnavailable, HasSubstr("defining the domain")));
  EXPECT_FALSE(PathExists(dir_ + "/web1-vda.img"));
  EXPECT_FALSE(PathExists(dir_ + "/web1_VARS.fd"));
  EXPECT_THAT(FilesWith(".haven-"), IsEmpty());
}

// A recovery point without NVRAM, restored under a new name beside the
// original: the copy gets an NVRAM path of its own (libvirt fills it from
// the template), never the original VM's variable store.
TEST_F(VmRestoreTest, RenamedCopyWithoutNvramGetsItsOwnPath) {
  PointSpec spec;
  spec.nvram = false;
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint(spec, &m));
  options_.name = "web1-copy";
  options_.new_identity = true;
  auto plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  EXPECT_EQ(plan->nvram_path, "");
  EXPECT_THAT(plan->warnings, Contains(HasSubstr("holds no NVRAM")));
  EXPECT_THAT(plan->xml,
              Not(HasSubstr("/var/lib/libvirt/qemu/nvram/web1_VARS.fd")))
      << "web1-copy would share web1's NVRAM file";
  EXPECT_THAT(plan->xml, HasSubstr(dir_ + "/web1-copy_VARS.fd"));
}

// ------------------------------------------------------- ReadConfigFile

TEST_F(VmRestoreTest, ReadConfigFile) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  auto xml = restore::ReadConfigFile(*repo_, m, "domain-inactive.xml", 1 << 20);
  ASSERT_THAT(xml, IsOk());
  EXPECT_EQ(*xml, DomainXml());
  auto nvram =
      restore::ReadConfigFile(*repo_, m, "nvram/web1_VARS.fd", 1 << 20);
  ASSERT_THAT(nvram, IsOk());
  EXPECT_TRUE(Bytes(nvram->begin(), nvram->end()) == nvram_data_);
  // Exactly at the limit is allowed.
  auto exact = restore::ReadConfigFile(*repo_, m, "nvram/web1_VARS.fd",
                                       nvram_data_.size());
  EXPECT_THAT(exact, IsOk());

  EXPECT_THAT(restore::ReadConfigFile(*repo_, m, "networks/other.xml", 1 << 20),
              StatusIs(Code::kNotFound,
                       AllOf(HasSubstr(m.id.substr(0, 8)),
                             HasSubstr("holds no networks/other.xml"))));
  // A disk is not a config file.
  EXPECT_THAT(restore::ReadConfigFile(*repo_, m, "vda", 1 << 30),
              StatusIs(Code::kNotFound, HasSubstr("holds no vda")));
  EXPECT_THAT(restore::ReadConfigFile(*repo_, m, "nvram/web1_VARS.fd",
                                      nvram_data_.size() - 1),
              StatusIs(Code::kDataLoss,
                       AllOf(HasSubstr("nvram/web1_VARS.fd"),
                             HasSubstr("claims " +
                                       std::to_string(nvram_data_.size())))));
}

// ------------------------------------------------------------ host restore

TEST(ChooseLatestPointsTest, LatestPerNameByTimeVmPointsOnly) {
  auto point = [](std::string id, std::string name, std::string time,
                  std::string kind = "vm") {
    Manifest m;
    m.id = std::move(id);
    m.name = std::move(name);
    m.time = std::move(time);
    m.kind = std::move(kind);
    return m;
  };
  // Not in time order: the list order must not decide.
  auto latest = repository::ChooseLatestPoints(
      {point("a2", "a", "2026-01-02T00:00:00Z"),
       point("a1", "a", "2026-01-01T00:00:00Z"),
       point("a3", "a", "2026-01-02T00:00:00.5Z"),
       point("img", "a", "2026-02-01T00:00:00Z", "image"),
       point("b1", "b", "2026-01-01T00:00:00Z"),
       point("b2", "b", "2026-01-01T00:00:00Z")},
      "vm");
  ASSERT_THAT(latest, SizeIs(2));
  EXPECT_EQ(latest[0].id, "a3");
  EXPECT_EQ(latest[1].id, "b2");  // equal times: the later in the list
}

TEST_F(VmRestoreTest, PlanHostRestoreChoosesTheLatestPointOfEachVm) {
  Manifest newer, older, image;
  PointSpec spec;
  spec.time = "2026-11-23T20:00:00Z";
  ASSERT_NO_FATAL_FAILURE(MakePoint(spec, &newer));
  spec.time = "2026-11-21T20:00:00Z";  // committed last, but older
  ASSERT_NO_FATAL_FAILURE(MakePoint(spec, &older));
  spec.kind = "image";
  spec.time = "2026-11-24T20:00:00Z";
  ASSERT_NO_FATAL_FAILURE(MakePoint(spec, &image));
  restore::HostRestoreRequest req;
  req.all = true;
  req.vm = options_;
  auto plan = restore::PlanHostRestore(*repo_, *host_, req);
  ASSERT_THAT(plan, IsOk());
  ASSERT_THAT(plan->vms, SizeIs(1));
  EXPECT_EQ(plan->vms[0].snapshot.id, newer.id);
  EXPECT_EQ(plan->conflicts(), 0u);

  restore::HostRestoreRequest neither;
  EXPECT_THAT(restore::PlanHostRestore(*repo_, *host_, neither),
              StatusIs(Code::kInvalidArgument, HasSubstr("--all")));
  restore::HostRestoreRequest named;
  named.points = {"web1:latest", "ffffffff"};
  EXPECT_THAT(restore::PlanHostRestore(*repo_, *host_, named),
              StatusIs(Code::kNotFound, HasSubstr("ffffffff")));
}

TEST_F(VmRestoreTest, PlanHostRestoreWithoutVmPointsIsNotFound) {
  Manifest image;
  PointSpec spec;
  spec.kind = "image";
  ASSERT_NO_FATAL_FAILURE(MakePoint(spec, &image));
  restore::HostRestoreRequest req;
  req.all = true;
  EXPECT_THAT(restore::PlanHostRestore(*repo_, *host_, req),
              StatusIs(Code::kNotFound, HasSubstr("no VM backups")));
}

TEST_F(VmRestoreTest, RestoreHostDryRunCancelAndRunReportPerVm) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  options_.format = "raw";
  restore::HostRestoreRequest req;
  req.points = {m.id};
  req.vm = options_;
  auto plan = restore::PlanHostRestore(*repo_, *host_, req);
  ASSERT_THAT(plan, IsOk());

  req.dry_run = true;
  auto dry = restore::RestoreHost(*repo_, *host_, *plan, req);
  ASSERT_THAT(dry.vms, SizeIs(1));
  EXPECT_EQ(dry.vms[0].outcome, Outcome::kSkipped);
  EXPECT_EQ(dry.succeeded, 0);
  EXPECT_THAT(host_->Lookup("web1"),
              StatusIs(Code::kNotFound, HasSubstr("web1")));

  req.dry_run = false;
  restore::HostRestoreRequest cancelled = req;
  cancelled.cancel = CancelToken();
  cancelled.cancel.Cancel();
  auto c = restore::RestoreHost(*repo_, *host_, *plan, cancelled);
  ASSERT_THAT(c.vms, SizeIs(1));
  EXPECT_EQ(c.vms[0].outcome, Outcome::kCancelled);
  EXPECT_THAT(c.vms[0].status,
              StatusIs(Code::kCancelled, HasSubstr("restore of web1")));
  EXPECT_EQ(c.cancelled, 1);
  EXPECT_THAT(host_->Lookup("web1"),
              StatusIs(Code::kNotFound, HasSubstr("web1")));
  EXPECT_THAT(FilesWith(""), IsEmpty());

  auto r = restore::RestoreHost(*repo_, *host_, *plan, req);
  ASSERT_THAT(r.vms, SizeIs(1));
  EXPECT_EQ(r.vms[0].outcome, Outcome::kOk);
  EXPECT_EQ(r.succeeded, 1);
  EXPECT_EQ(r.failed, 0);
  EXPECT_THAT(host_->Lookup("web1"), IsOk());

  // The JSON a front end reads: the old fields, plus outcome and code.
  auto j = nlohmann::json::parse(restore::HostRestoreResultJson(r).dump());
  EXPECT_EQ(j["dry_run"], false);
  EXPECT_EQ(j["succeeded"], 1);
  EXPECT_EQ(j["failed"], 0);
  EXPECT_EQ(j["cancelled"], 0);
  EXPECT_TRUE(j["seconds"].is_number());
  const auto& v = j["vms"][0];
  EXPECT_EQ(v["name"], "web1");
  EXPECT_EQ(v["snapshot"], m.id);
  EXPECT_EQ(v["ok"], true);
  EXPECT_EQ(v["defined"], true);
  EXPECT_EQ(v["error"], "");
  EXPECT_EQ(v["uuid"], kUuid);
  EXPECT_EQ(v["outcome"], "ok");
  EXPECT_EQ(v["code"], "ok");
  EXPECT_EQ(v["disks"][0]["target"], "vda");
  EXPECT_GT(v["disks"][0]["data_bytes"].get<uint64_t>(), 0u);
  EXPECT_TRUE(v.contains("seconds"));

  // Planned again (the same command run twice), the restored VM is left
  // alone and reported as restored.
  auto again = restore::PlanHostRestore(*repo_, *host_, req);
  ASSERT_THAT(again, IsOk());
  auto rerun = restore::RestoreHost(*repo_, *host_, *again, req);
  EXPECT_EQ(rerun.conflicts, 0u);
  EXPECT_EQ(rerun.succeeded, 1);
  EXPECT_EQ(rerun.vms[0].outcome, Outcome::kOk);
  EXPECT_TRUE(rerun.vms[0].result.already);
  EXPECT_EQ(restore::HostRestoreResultJson(rerun)["vms"][0]["already"], true);

  // A domain of the same name that the restore did not make refuses the
  // whole run.
  ASSERT_THAT(host_->RemoveDomain("web1"), IsOk());
  ASSERT_NO_FATAL_FAILURE(Define("web1", "11111111-2222-4333-8444-555555555555",
                                 "52:54:00:00:00:01"));
  auto foreign = restore::PlanHostRestore(*repo_, *host_, req);
  ASSERT_THAT(foreign, IsOk());
  auto refused = restore::RestoreHost(*repo_, *host_, *foreign, req);
  EXPECT_GT(refused.conflicts, 0u);
  EXPECT_EQ(refused.failed, 1);
  EXPECT_EQ(refused.vms[0].outcome, Outcome::kFailed);
  EXPECT_THAT(refused.vms[0].status,
              StatusIs(Code::kFailedPrecondition, HasSubstr("conflict")));
}

// ------------------------------------------------------------ stored plans
// havend stores a plan as JSON and runs it later: what is read back is the
// plan the caller saw, and its run defines exactly that VM.
TEST_F(VmRestoreTest, AStoredPlanRunsAsItWasShown) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  ASSERT_NO_FATAL_FAILURE(Define("web1", kUuid, kMac));
  options_.name = "web1-stored";
  options_.new_identity = true;
  options_.format = "raw";
  auto plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  ASSERT_THAT(plan->conflicts, IsEmpty());
  const std::string text = restore::VmPlanJson(*plan).dump();
  const std::string options_text =
      restore::VmRestoreOptionsJson(options_).dump();

  auto back = restore::VmPlanFromJson(nlohmann::json::parse(text), *repo_);
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->snapshot.id, m.id);
  EXPECT_EQ(back->name, "web1-stored");
  EXPECT_EQ(back->uuid, plan->uuid);
  EXPECT_EQ(back->macs, plan->macs);
  EXPECT_EQ(back->xml, plan->xml);
  EXPECT_EQ(back->journal, plan->journal);
  EXPECT_EQ(back->nvram_path, plan->nvram_path);
  EXPECT_EQ(back->nvram_config, plan->nvram_config);
  ASSERT_EQ(back->disks.size(), 1u);
  EXPECT_EQ(back->disks[0].path, plan->disks[0].path);
  EXPECT_EQ(back->disks[0].format, "raw");
  ASSERT_EQ(back->networks.size(), plan->networks.size());
  EXPECT_EQ(back->networks[0].action, "create");
  EXPECT_EQ(back->networks[0].xml, plan->networks[0].xml);
  EXPECT_EQ(restore::VmPlanJson(*back).dump(), text);
  auto opts =
      restore::VmRestoreOptionsFromJson(nlohmann::json::parse(options_text));
  ASSERT_THAT(opts, IsOk());
  EXPECT_EQ(opts->name, "web1-stored");
  EXPECT_TRUE(opts->new_identity);
  EXPECT_EQ(opts->format, "raw");
  EXPECT_EQ(opts->storage_dir, dir_);

  auto result = restore::ExecuteVmRestore(*repo_, *host_, *back, *opts);
  ASSERT_THAT(result, IsOk());
  auto info =
      snapshot::ParseDomainXml(*(*host_->Lookup("web1-stored"))->Xml(true));
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->uuid, plan->uuid);
  EXPECT_EQ(info->interfaces[0].mac, plan->macs[0].second);
  EXPECT_TRUE(ReadWholeFile(dir_ + "/web1-stored-vda.img") == disk_data_);
}

TEST_F(VmRestoreTest, AStoredPlanIsCheckedWhenReadBack) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  auto plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  nlohmann::json j = restore::VmPlanJson(*plan);
  j["disks"][0]["size"] = "big";
  EXPECT_THAT(restore::VmPlanFromJson(j, *repo_),
              StatusIs(Code::kInvalidArgument,
                       HasSubstr("plan.disks[0].size must be")));
  j = restore::VmPlanJson(*plan);
  j["state"] = "whatever";
  EXPECT_THAT(restore::VmPlanFromJson(j, *repo_),
              StatusIs(Code::kInvalidArgument, HasSubstr("plan.state")));
  // The point was forgotten after the plan was made.
  j = restore::VmPlanJson(*plan);
  ASSERT_THAT(repo_->DeleteSnapshot(m.id), IsOk());
  EXPECT_THAT(restore::VmPlanFromJson(j, *repo_),
              StatusIs(Code::kNotFound,
                       AllOf(HasSubstr(m.id.substr(0, 8)),
                             HasSubstr("no longer in the repository"))));
  EXPECT_THAT(restore::VmRestoreOptionsFromJson({{"start", "yes"}}),
              StatusIs(Code::kInvalidArgument, HasSubstr("options.")));
}

TEST_F(VmRestoreTest, ExecuteRefusesAPlanWhoseNetworksOrFolderChanged) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  auto plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  ASSERT_THAT(plan->conflicts, IsEmpty());
  ASSERT_EQ(plan->networks[0].action, "create");
  // The network the plan creates appeared meanwhile.
  ASSERT_THAT(host_->CreateNetwork("netx", NetworkXml()), IsOk());
  EXPECT_THAT(restore::ExecuteVmRestore(*repo_, *host_, *plan, options_),
              StatusIs(Code::kFailedPrecondition,
                       AllOf(HasSubstr("a network named netx appeared"),
                             HasSubstr("plan it again"))));
  EXPECT_FALSE(host_->Lookup("web1").ok());
  // Planned onto the existing network, which then goes away.
  auto on_existing = Plan(m, options_);
  ASSERT_THAT(on_existing, IsOk());
  ASSERT_EQ(on_existing->networks[0].action, "exists");
  {
    virConnectPtr conn = virConnectOpen(kHostUri);
    ASSERT_NE(conn, nullptr);
    virNetworkPtr net = virNetworkLookupByName(conn, "netx");
    ASSERT_NE(net, nullptr);
    virNetworkDestroy(net);
    ASSERT_EQ(virNetworkUndefine(net), 0);
    virNetworkFree(net);
    virConnectClose(conn);
  }
  EXPECT_THAT(restore::ExecuteVmRestore(*repo_, *host_, *on_existing, options_),
              StatusIs(Code::kFailedPrecondition,
                       HasSubstr("the network netx disappeared")));
  // The storage folder the plan found is gone.
  ASSERT_THAT(MakeDirs(dir_, 0755), IsOk());
  auto in_folder = Plan(m, options_);
  ASSERT_THAT(in_folder, IsOk());
  ASSERT_THAT(in_folder->create_dirs, IsEmpty());
  ASSERT_EQ(::rmdir(dir_.c_str()), 0);
  EXPECT_THAT(
      restore::ExecuteVmRestore(*repo_, *host_, *in_folder, options_),
      StatusIs(Code::kFailedPrecondition,
               HasSubstr("the storage folder " + dir_ + " disappeared")));
  EXPECT_FALSE(host_->Lookup("web1").ok());
}

TEST_F(VmRestoreTest, NotCreatingNetworksMakesAMissingOneAConflict) {
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint({}, &m));
  options_.create_networks = false;
  auto plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  ASSERT_THAT(plan->networks, SizeIs(1));
  EXPECT_EQ(plan->networks[0].action, "missing");
  EXPECT_THAT(plan->conflicts, Contains(HasSubstr("network netx is not on " +
                                                  std::string(kHostUri))));
  options_.network_map["netx"] = "default";
  plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  EXPECT_THAT(plan->conflicts, IsEmpty());
}

// ------------------------------------------------------ a host agent's point
// A hostile host agent writes the XML of the points it commits. What would
// reach the target host is a conflict naming it for an agent's point, and
// restored as before for a point of the appliance's own host.

constexpr char kAgentId[] = "3fa1c0de-agent";

// DomainXml() with `text` inserted before `anchor` (its first occurrence).
std::string DomainXmlWith(const std::string& anchor, const std::string& text) {
  std::string xml = DomainXml();
  auto at = xml.find(anchor);
  EXPECT_NE(at, std::string::npos) << anchor;
  if (at == std::string::npos) return xml;
  xml.insert(at, text);
  return xml;
}

struct HostileCase {
  const char* anchor;  // where in DomainXml() the element goes
  const char* element;
  const char* conflict;  // what the conflict names
};

TEST_F(VmRestoreTest, AnAgentsXmlThatReachesTheHostConflicts) {
  const std::vector<HostileCase> cases = {
      {"</domain>",
       "<qemu:commandline xmlns:qemu='http://libvirt.org/schemas/domain/qemu/"
       "1.0'><qemu:arg value='-device'/></qemu:commandline>",
       "<qemu:commandline>"},
      {"</domain>",
       "<qemu:capabilities xmlns:qemu='http://libvirt.org/schemas/domain/"
       "qemu/1.0'><qemu:add capability='blockdev'/></qemu:capabilities>",
       "<qemu:capabilities>"},
      {"</devices>",
       "<hostdev mode='subsystem' type='pci' managed='yes'><source><address "
       "domain='0x0000' bus='0x00' slot='0x1f' function='0x2'/></source>"
       "</hostdev>",
       "<hostdev>"},
      {"</devices>",
       "<filesystem type='mount' accessmode='passthrough'><source dir='/'/>"
       "<target dir='host'/></filesystem>",
       "<filesystem>"},
      {"</devices>", "<redirdev bus='usb' type='spicevmc'/>", "<redirdev>"},
      {"</devices>",
       "<shmem name='shared'><model type='ivshmem-plain'/><size "
       "unit='M'>4</size></shmem>",
       "<shmem>"},
      {"</domain>", "<seclabel type='none'/>", "<seclabel type='none'>"},
      {"</domain>", "<seclabel type='dynamic' model='dac' relabel='no'/>",
       "<seclabel relabel='no' model='dac'>"},
      {"</domain>",
       "<seclabel type='static' model='dac' relabel='yes'><label>+0:+0</label>"
       "</seclabel>",
       "<seclabel type='static' model='dac'>"},
      {"</devices>",
       "<serial type='file'><source path='/var/lib/haven/keys'/><target "
       "port='0'/></serial>",
       "<serial type='file'> on '/var/lib/haven/keys'"},
      {"</devices>",
       "<console type='dev'><source path='/dev/sda'/><target type='serial' "
       "port='0'/></console>",
       "<console type='dev'> on '/dev/sda'"},
      {"</devices>",
       "<channel type='unix'><source mode='connect' path='/run/havend.sock'/>"
       "<target type='virtio' name='x.0'/></channel>",
       "<channel type='unix'> on '/run/havend.sock'"},
      {"</devices>",
       "<parallel type='pipe'><source path='/tmp/p'/><target port='0'/>"
       "</parallel>",
       "<parallel type='pipe'>"},
      {"</devices>",
       "<serial type='pty'><log file='/etc/cron.d/x' append='on'/><target "
       "port='1'/></serial>",
       "<serial><log file='/etc/cron.d/x'>"},
      {"<boot dev='hd'/>", "<kernel>/etc/shadow</kernel>",
       "<kernel> '/etc/shadow'"},
      {"</devices>",
       "<interface type='ethernet'><script path='/tmp/x.sh'/></interface>",
       "<interface><script> '/tmp/x.sh'"},
  };
  for (const HostileCase& c : cases) {
    SCOPED_TRACE(c.element);
    PointSpec spec;
    spec.domain_xml = DomainXmlWith(c.anchor, c.element);
    spec.agent_id = kAgentId;
    Manifest agents;
    ASSERT_NO_FATAL_FAILURE(MakePoint(spec, &agents));
    auto plan = Plan(agents, options_);
    ASSERT_THAT(plan, IsOk());
    EXPECT_THAT(
        plan->conflicts,
        Contains(
            AllOf(HasSubstr(std::string("the VM's XML, committed by agent ") +
                            kAgentId + ", asks for " + c.conflict),
                  HasSubstr("a point from an agent may not"),
                  HasSubstr("restore its disks with `haven restore image`"))));
    // What the plan shows is what a run refuses.
    EXPECT_THAT(restore::ExecuteVmRestore(*repo_, *host_, *plan, options_),
                StatusIs(Code::kFailedPrecondition, HasSubstr("problem(s)")));

    // The appliance's own host: restored as before, the element kept.
    spec.agent_id.clear();
    Manifest own;
    ASSERT_NO_FATAL_FAILURE(MakePoint(spec, &own));
    auto own_plan = Plan(own, options_);
    ASSERT_THAT(own_plan, IsOk());
    EXPECT_THAT(own_plan->conflicts, IsEmpty());
  }
}

TEST_F(VmRestoreTest, AnAgentsTypicalVmIsRestoredWithoutItsEmulator) {
  PointSpec spec;
  spec.domain_xml = DomainXmlWith("</devices>", R"(
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <channel type='unix'>
      <source mode='bind'/>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <serial type='pty'>
      <target type='isa-serial' port='0'/>
    </serial>
    <console type='pty'>
      <target type='serial' port='0'/>
    </console>
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
  )");
  spec.agent_id = kAgentId;
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint(spec, &m));
  auto plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  EXPECT_THAT(plan->conflicts, IsEmpty());
  EXPECT_THAT(plan->warnings,
              Contains(HasSubstr("<emulator> /usr/bin/qemu-system-x86_64 is "
                                 "left out")));
  // The CD-ROM with a host source: an empty drive, not a conflict.
  EXPECT_THAT(plan->warnings, Contains(AllOf(HasSubstr("drive hdc"),
                                             HasSubstr("restored empty"))));
  EXPECT_THAT(plan->xml, Not(HasSubstr("emulator")));
  EXPECT_THAT(plan->xml, Not(HasSubstr("haven-no-such-installer.iso")));
  auto info = snapshot::ParseDomainXml(plan->xml);
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->emulator, "");
  const snapshot::DomainDisk* hdc = FindDisk(*info, "hdc");
  ASSERT_NE(hdc, nullptr);
  EXPECT_EQ(hdc->device, "cdrom");
  EXPECT_EQ(hdc->path, "");
  const snapshot::DomainDisk* vda = FindDisk(*info, "vda");
  ASSERT_NE(vda, nullptr);
  EXPECT_EQ(vda->path, dir_ + "/web1-vda.qcow2");

  auto result = restore::ExecuteVmRestore(*repo_, *host_, *plan, options_);
  ASSERT_THAT(result, IsOk());
  EXPECT_TRUE(result->defined);
  auto vm = host_->Lookup("web1");
  ASSERT_THAT(vm, IsOk());
}

TEST_F(VmRestoreTest, AnAgentsDiskThatIsNotRestoredIsLeftOut) {
  const std::string hostile_disk = R"(
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw'/>
      <source dev='/dev/sda'/>
      <target dev='vdb' bus='virtio'/>
      <readonly/>
    </disk>
    <disk type='block' device='floppy'>
      <source dev='/dev/sdb'/>
      <target dev='fda' bus='fdc'/>
    </disk>)";
  PointSpec spec;
  spec.domain_xml = DomainXml(hostile_disk);
  spec.agent_id = kAgentId;
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint(spec, &m));
  auto plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  EXPECT_THAT(plan->conflicts, IsEmpty());
  EXPECT_THAT(plan->warnings,
              Contains(AllOf(HasSubstr("disk vdb"), HasSubstr("left out"))));
  EXPECT_THAT(plan->warnings, Contains(AllOf(HasSubstr("drive fda"),
                                             HasSubstr("restored empty"))));
  EXPECT_THAT(plan->xml, Not(HasSubstr("/dev/sd")));
  auto info = snapshot::ParseDomainXml(plan->xml);
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(FindDisk(*info, "vdb"), nullptr);
  ASSERT_NE(FindDisk(*info, "fda"), nullptr);
  EXPECT_EQ(FindDisk(*info, "fda")->type, "file");

  // The appliance's own host: today's behaviour, the disks kept as they were.
  spec.agent_id.clear();
  Manifest own;
  ASSERT_NO_FATAL_FAILURE(MakePoint(spec, &own));
  auto own_plan = Plan(own, options_);
  ASSERT_THAT(own_plan, IsOk());
  EXPECT_THAT(own_plan->conflicts, IsEmpty());
  auto own_info = snapshot::ParseDomainXml(own_plan->xml);
  ASSERT_THAT(own_info, IsOk());
  ASSERT_NE(FindDisk(*own_info, "vdb"), nullptr);
  EXPECT_EQ(FindDisk(*own_info, "vdb")->path, "/dev/sda");
  EXPECT_EQ(FindDisk(*own_info, "fda")->path, "/dev/sdb");
}

TEST_F(VmRestoreTest, AnAgentsNetworkOnAHostInterfaceConflicts) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"<forward mode='bridge'/>", "<forward mode='bridge'>"},
      {"<forward mode='passthrough'><interface dev='eth0'/></forward>",
       "<forward><interface dev='eth0'>"},
      {"<forward mode='hostdev' managed='yes'><pf dev='eth1'/></forward>",
       "<forward mode='hostdev'>"},
      {"<forward mode='nat' dev='eth0'/>", "<forward dev='eth0'>"},
  };
  for (const auto& [forward, named] : cases) {
    SCOPED_TRACE(forward);
    PointSpec spec;
    spec.network_xml = NetworkXml();
    auto at = spec.network_xml.find("<forward mode='nat'/>");
    ASSERT_NE(at, std::string::npos);
    spec.network_xml.replace(at, 21, forward);
    spec.agent_id = kAgentId;
    Manifest agents;
    ASSERT_NO_FATAL_FAILURE(MakePoint(spec, &agents));
    auto plan = Plan(agents, options_);
    ASSERT_THAT(plan, IsOk());
    EXPECT_THAT(plan->conflicts,
                Contains(AllOf(HasSubstr(std::string("network netx in the "
                                                     "point, committed by "
                                                     "agent ") +
                                         kAgentId + ", asks for " + named),
                               HasSubstr("--network-map netx=NETWORK"))));

    spec.agent_id.clear();
    Manifest own;
    ASSERT_NO_FATAL_FAILURE(MakePoint(spec, &own));
    auto own_plan = Plan(own, options_);
    ASSERT_THAT(own_plan, IsOk());
    EXPECT_THAT(own_plan->conflicts, IsEmpty());
  }
  // A NAT network from an agent (NetworkXml()) is created as before.
  PointSpec nat;
  nat.agent_id = kAgentId;
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(MakePoint(nat, &m));
  auto plan = Plan(m, options_);
  ASSERT_THAT(plan, IsOk());
  EXPECT_THAT(plan->conflicts, IsEmpty());
  ASSERT_THAT(plan->networks, SizeIs(1));
  EXPECT_EQ(plan->networks[0].action, "create");
}

}  // namespace
}  // namespace haven
