// Tests for the rewriting half of snapshot/domain_xml.h: a captured domain
// XML made definable on another libvirt host (RewriteDomainXml), captured
// network XML (ParseNetworkXml, RewriteNetworkXml) and pool XML. The input
// comes from a backup repository and is untrusted.
#include <chrono>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "snapshot/domain_xml.h"
#include "tests/unit/test_util.h"

namespace haven::snapshot {
namespace {

using ::haven::testing_util::IsOk;
using ::haven::testing_util::StatusIs;
using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;

constexpr char kUuid[] = "6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b";

// Roughly what `virsh dumpxml --inactive --security-info` prints for a UEFI
// VM with a qcow2 overlay, an LVM disk, a pool volume and a CD-ROM. (Its
// rewrites validate against libvirt 9's domain.rng and define on
// test:///default once type='kvm' is type='test'.)
const char kInactive[] =
    R"(<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>web-01</name>
  <uuid>6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b</uuid>
  <genid>43dc0cf8-809b-4adb-9bea-a9abb5f3d90d</genid>
  <metadata>
    <libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0">
      <libosinfo:os id="http://debian.org/debian/12"/>
    </libosinfo:libosinfo>
  </metadata>
  <memory unit='KiB'>2097152</memory>
  <currentMemory unit='KiB'>2097152</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <sysinfo type='smbios'>
    <system>
      <entry name='manufacturer'>Haven Labs</entry>
      <entry name='uuid'>6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b</entry>
      <entry name='serial'>SN-0001</entry>
    </system>
  </sysinfo>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <loader readonly='yes' secure='no' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>
    <nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>/var/lib/libvirt/qemu/nvram/web-01_VARS.fd</nvram>
    <boot dev='hd'/>
    <smbios mode='sysinfo'/>
  </os>
  <features>
    <acpi/>
    <apic/>
  </features>
  <cpu mode='host-passthrough' check='none' migratable='on'/>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' discard='unmap'/>
      <source file='/var/lib/libvirt/images/web-01.qcow2'>
        <seclabel model='dac' relabel='no'/>
      </source>
      <backingStore type='file'>
        <format type='qcow2'/>
        <source file='/var/lib/libvirt/images/debian12-base.qcow2'/>
        <backingStore/>
      </backingStore>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>
    </disk>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw' cache='none' io='native'/>
      <source dev='/dev/vg0/web-01-data'/>
      <target dev='vdb' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x05' slot='0x00' function='0x0'/>
    </disk>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source pool='fast-pool' volume='web-01-logs.qcow2'/>
      <target dev='vdc' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x06' slot='0x00' function='0x0'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='/var/lib/libvirt/images/debian-12.iso'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
      <address type='drive' controller='0' bus='0' target='0' unit='0'/>
    </disk>
    <controller type='sata' index='0'/>
    <interface type='network'>
      <mac address='52:54:00:12:34:56'/>
      <source network='default'/>
      <model type='virtio'/>
      <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
    </interface>
    <interface type='network'>
      <mac address='52:54:00:12:34:57'/>
      <source network='backend'/>
      <model type='virtio'/>
    </interface>
    <interface type='bridge'>
      <mac address='52:54:00:12:34:58'/>
      <source bridge='br0'/>
      <model type='e1000e'/>
    </interface>
    <console type='pty'/>
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>
  </devices>
  <seclabel type='dynamic' model='dac' relabel='yes'/>
  <qemu:commandline>
    <qemu:arg value='-fw_cfg'/>
    <qemu:arg value='name=opt/haven/marker,string=1'/>
  </qemu:commandline>
</domain>
)";

std::string Minimal(const std::string& devices, const std::string& extra = "") {
  return std::string("<domain type='kvm'><name>vm1</name><uuid>") + kUuid +
         "</uuid>" + extra + "<devices>" + devices + "</devices></domain>";
}

const DomainDisk* Find(const DomainInfo& info, const std::string& target) {
  for (const auto& d : info.disks)
    if (d.target == target) return &d;
  return nullptr;
}

// One-field rewrites (designated initializers would leave the others
// unnamed, which -Wmissing-field-initializers refuses).
DomainRewrite Disks(std::vector<DiskRewrite> disks) {
  DomainRewrite rw;
  rw.disks = std::move(disks);
  return rw;
}
DomainRewrite Name(std::string name) {
  DomainRewrite rw;
  rw.name = std::move(name);
  return rw;
}
DomainRewrite NewIdentity() {
  DomainRewrite rw;
  rw.new_identity = true;
  return rw;
}
DomainRewrite NamedWithDisk(std::string name, DiskRewrite disk) {
  DomainRewrite rw = Name(std::move(name));
  rw.disks = {std::move(disk)};
  return rw;
}
DomainRewrite Nvram(std::string path) {
  DomainRewrite rw;
  rw.nvram_path = std::move(path);
  return rw;
}
DomainRewrite Networks(std::map<std::string, std::string> map) {
  DomainRewrite rw;
  rw.network_map = std::move(map);
  return rw;
}

size_t Count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos;
       at = s.find(what, at + 1))
    ++n;
  return n;
}

// --------------------------------------------------------------- domain

TEST(DomainRewriteTest, EmptyRewriteKeepsTheDomain) {
  auto out = RewriteDomainXml(kInactive, DomainRewrite{});
  ASSERT_THAT(out, IsOk());
  EXPECT_THAT(out->macs, IsEmpty());
  // Like libvirt's own XML: no declaration, the document itself.
  EXPECT_THAT(out->xml, StartsWith("<domain"));
  auto before = ParseDomainXml(kInactive);
  auto after = ParseDomainXml(out->xml);
  ASSERT_THAT(before, IsOk());
  ASSERT_THAT(after, IsOk());
  EXPECT_EQ(after->name, before->name);
  EXPECT_EQ(after->uuid, before->uuid);
  EXPECT_EQ(after->nvram, before->nvram);
  EXPECT_EQ(after->emulator, "/usr/bin/qemu-system-x86_64");
  EXPECT_EQ(after->loader, "/usr/share/OVMF/OVMF_CODE_4M.fd");
  ASSERT_EQ(after->disks.size(), before->disks.size());
  for (size_t i = 0; i < after->disks.size(); ++i) {
    EXPECT_EQ(after->disks[i].target, before->disks[i].target);
    EXPECT_EQ(after->disks[i].path, before->disks[i].path);
    EXPECT_EQ(after->disks[i].format, before->disks[i].format);
    EXPECT_EQ(after->disks[i].backing_format, before->disks[i].backing_format);
  }
  EXPECT_THAT(after->networks, ElementsAre("default", "backend"));
  EXPECT_THAT(after->pools, ElementsAre("fast-pool"));
  // Namespaced parts survive with their namespace.
  EXPECT_THAT(out->xml,
              HasSubstr("xmlns:qemu=\"http://libvirt.org/schemas/domain/qemu/"
                        "1.0\""));
  EXPECT_THAT(out->xml, HasSubstr("<qemu:arg value=\"-fw_cfg\"/>"));
  EXPECT_THAT(out->xml, HasSubstr("<libosinfo:os "
                                  "id=\"http://debian.org/debian/12\"/>"));
}

TEST(DomainRewriteTest, DisksBecomeFlatFiles) {
  DomainRewrite rw;
  rw.disks = {{"vda", "/restore/web-01-vda.raw", "raw"},
              {"vdb", "/restore/web-01-vdb.qcow2", "qcow2"},
              {"vdc", "/restore/web-01-vdc.raw", "raw"}};
  auto out = RewriteDomainXml(kInactive, rw);
  ASSERT_THAT(out, IsOk());
  auto info = ParseDomainXml(out->xml);
  ASSERT_THAT(info, IsOk());
  ASSERT_EQ(info->disks.size(), 4u);
  for (const DiskRewrite& want : rw.disks) {
    SCOPED_TRACE(want.target);
    const DomainDisk* d = Find(*info, want.target);
    ASSERT_NE(d, nullptr);
    EXPECT_EQ(d->type, "file");
    EXPECT_EQ(d->device, "disk");
    EXPECT_EQ(d->path, want.path);
    EXPECT_EQ(d->format, want.format);
    EXPECT_EQ(d->backing_format, "");
    EXPECT_EQ(d->pool, "");
    EXPECT_EQ(d->volume, "");
    EXPECT_EQ(d->skip_reason, "");
  }
  EXPECT_THAT(info->pools, IsEmpty());
  // The old storage is gone: overlay chain, LVM device, pool volume.
  EXPECT_THAT(out->xml, Not(HasSubstr("backingStore")));
  EXPECT_THAT(out->xml, Not(HasSubstr("debian12-base")));
  EXPECT_THAT(out->xml, Not(HasSubstr("/dev/vg0")));
  EXPECT_THAT(out->xml, Not(HasSubstr("fast-pool")));
  EXPECT_THAT(out->xml, Not(HasSubstr("web-01.qcow2")));
  // Other driver attributes, the source's seclabel and addresses stay.
  EXPECT_THAT(out->xml, HasSubstr("discard=\"unmap\""));
  EXPECT_THAT(out->xml, HasSubstr("cache=\"none\" io=\"native\""));
  EXPECT_THAT(out->xml, HasSubstr("<seclabel model=\"dac\" relabel=\"no\"/>"));
  EXPECT_THAT(out->xml, HasSubstr("bus=\"0x05\""));
  // The CD-ROM is untouched.
  const DomainDisk* cdrom = Find(*info, "sda");
  ASSERT_NE(cdrom, nullptr);
  EXPECT_EQ(cdrom->device, "cdrom");
  EXPECT_EQ(cdrom->path, "/var/lib/libvirt/images/debian-12.iso");
  EXPECT_EQ(cdrom->format, "raw");
  EXPECT_TRUE(cdrom->readonly);
  // Everything else too.
  EXPECT_EQ(info->name, "web-01");
  EXPECT_EQ(info->uuid, kUuid);
  EXPECT_THAT(info->networks, ElementsAre("default", "backend"));
  EXPECT_THAT(out->xml, HasSubstr("<qemu:commandline>"));
  EXPECT_THAT(out->xml, HasSubstr("<entry name=\"uuid\">"));
}

// Instant recovery: the disk is a qcow2 overlay over an NBD export.
TEST(DomainRewriteTest, NbdBackedOverlay) {
  DomainRewrite rw;
  rw.disks = {{"vda", "/r/.haven-instant-w/vda.qcow2", "qcow2",
               "/r/.haven-instant-w/nbd.sock", "vda"}};
  auto out = RewriteDomainXml(kInactive, rw);
  ASSERT_THAT(out, IsOk());
  auto info = ParseDomainXml(out->xml);
  ASSERT_THAT(info, IsOk());
  const DomainDisk* d = Find(*info, "vda");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->path, "/r/.haven-instant-w/vda.qcow2");
  EXPECT_EQ(d->format, "qcow2");
  EXPECT_EQ(d->backing_format, "raw");
  EXPECT_THAT(out->xml, HasSubstr("<backingStore type=\"network\">"));
  EXPECT_THAT(out->xml, HasSubstr("protocol=\"nbd\" name=\"vda\""));
  EXPECT_THAT(out->xml, HasSubstr("transport=\"unix\" "
                                  "socket=\"/r/.haven-instant-w/nbd.sock\""));
  // Only a qcow2 overlay, a plausible export name and an absolute socket.
  rw.disks[0].format = "raw";
  EXPECT_THAT(RewriteDomainXml(kInactive, rw),
              StatusIs(Code::kInvalidArgument, ::testing::_));
  rw.disks[0].format = "qcow2";
  rw.disks[0].nbd_export = "vd\na";
  EXPECT_THAT(RewriteDomainXml(kInactive, rw),
              StatusIs(Code::kInvalidArgument, ::testing::_));
  rw.disks[0].nbd_export = "vda";
  rw.disks[0].nbd_socket = "relative.sock";
  EXPECT_THAT(RewriteDomainXml(kInactive, rw),
              StatusIs(Code::kInvalidArgument, ::testing::_));
}

// Verified restores: one serial port into a file, a screen to capture.
TEST(DomainRewriteTest, SerialToFileReplacesEveryConsole) {
  DomainRewrite rw;
  rw.serial_file = "/v/console.log";
  auto out = RewriteDomainXml(kInactive, rw);
  ASSERT_THAT(out, IsOk());
  size_t serials = 0;
  for (size_t at = 0; (at = out->xml.find("<serial", at)) != std::string::npos;
       ++at)
    ++serials;
  EXPECT_EQ(serials, 1u);
  EXPECT_THAT(out->xml, Not(HasSubstr("<console")));
  EXPECT_THAT(out->xml, HasSubstr("<serial type=\"file\">"));
  EXPECT_THAT(out->xml, HasSubstr("<source path=\"/v/console.log\"/>"));
  EXPECT_THAT(out->xml, HasSubstr("<video"));
  rw.serial_file = "console.log";
  EXPECT_THAT(RewriteDomainXml(kInactive, rw),
              StatusIs(Code::kInvalidArgument, ::testing::_));
}

TEST(DomainRewriteTest, MissingDriverAndSourceAreCreated) {
  auto out = RewriteDomainXml(
      Minimal("<disk type='block' device='disk'><target dev='vda'/></disk>"),
      Disks({{"vda", "/restore/a.qcow2", "qcow2"}}));
  ASSERT_THAT(out, IsOk());
  EXPECT_THAT(out->xml, HasSubstr("<driver name=\"qemu\" type=\"qcow2\"/>"));
  EXPECT_THAT(out->xml, HasSubstr("<source file=\"/restore/a.qcow2\"/>"));
  auto info = ParseDomainXml(out->xml);
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->disks[0].type, "file");
  EXPECT_EQ(info->disks[0].path, "/restore/a.qcow2");
}

// A network disk's hosts and credentials, a slice of the old storage, its
// encryption: none of them describes the restored plain image.
TEST(DomainRewriteTest, OldStorageDetailsAreDropped) {
  const std::string disks =
      "<disk type='network' device='disk'><driver name='qemu' type='raw'/>"
      "<source protocol='rbd' name='pool/img' index='3'>"
      "<host name='ceph-mon1' port='6789'/>"
      "<auth username='admin'><secret type='ceph' usage='client'/></auth>"
      "<seclabel model='selinux' relabel='no'/></source>"
      "<target dev='vda' bus='virtio'/></disk>"
      "<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
      "<source file='/a.img' startupPolicy='optional' fdgroup='x'>"
      "<slices><slice type='storage' offset='512' size='1048576'/></slices>"
      "<encryption format='luks'><secret type='passphrase' "
      "uuid='0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f'/></encryption>"
      "</source><target dev='vdb' bus='virtio'/></disk>";
  DomainRewrite rw;
  rw.disks = {{"vda", "/r/vda.raw", "raw"}, {"vdb", "/r/vdb.raw", "raw"}};
  auto out = RewriteDomainXml(Minimal(disks), rw);
  ASSERT_THAT(out, IsOk());
  for (const char* gone : {"rbd", "ceph-mon1", "auth", "protocol", "index",
                           "slices", "encryption", "fdgroup", "/a.img"})
    EXPECT_THAT(out->xml, Not(HasSubstr(gone))) << gone;
  EXPECT_THAT(out->xml, HasSubstr("<seclabel model=\"selinux\""));
  EXPECT_THAT(out->xml, HasSubstr("startupPolicy=\"optional\""));
  auto info = ParseDomainXml(out->xml);
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(Find(*info, "vda")->path, "/r/vda.raw");
  EXPECT_EQ(Find(*info, "vda")->skip_reason, "");
  EXPECT_EQ(Find(*info, "vdb")->path, "/r/vdb.raw");
}

TEST(DomainRewriteTest, RenamesTheDomain) {
  for (const std::string& name :
       {std::string("web-01-restored"), std::string("caf\xc3\xa9 vm"),
        std::string(64, 'n'), std::string("a&b<c>")}) {
    SCOPED_TRACE(name);
    auto out = RewriteDomainXml(kInactive, Name(name));
    ASSERT_THAT(out, IsOk());
    auto info = ParseDomainXml(out->xml);
    ASSERT_THAT(info, IsOk());
    EXPECT_EQ(info->name, name);
    EXPECT_EQ(info->uuid, kUuid);
  }
}

TEST(DomainRewriteTest, MapsNetworksAndBridges) {
  DomainRewrite rw;
  rw.network_map = {
      {"default", "prod-net"}, {"br0", "br-restore"}, {"unused", "other"}};
  auto out = RewriteDomainXml(kInactive, rw);
  ASSERT_THAT(out, IsOk());
  auto info = ParseDomainXml(out->xml);
  ASSERT_THAT(info, IsOk());
  EXPECT_THAT(info->networks, ElementsAre("prod-net", "backend"));
  ASSERT_EQ(info->interfaces.size(), 3u);
  EXPECT_EQ(info->interfaces[0].source, "prod-net");
  EXPECT_EQ(info->interfaces[1].source, "backend");
  EXPECT_EQ(info->interfaces[2].type, "bridge");
  EXPECT_EQ(info->interfaces[2].source, "br-restore");
  // MACs are kept without new_identity.
  EXPECT_EQ(info->interfaces[0].mac, "52:54:00:12:34:56");
  EXPECT_THAT(out->macs, IsEmpty());
}

TEST(DomainRewriteTest, NetworkMapAppliesOnceAndDropsThePort) {
  // a->b and b->c: what was on a goes to b, not on to c. A live XML's port
  // and bridge of the old network do not follow.
  const std::string ifaces =
      "<interface type='network'><source network='a' portid="
      "'8e1b1a9c-2f4b-4d0e-9a77-5b0a5f0c9d11' bridge='virbr0'/></interface>"
      "<interface type='network'><source network='b'/></interface>"
      "<interface type='bridge'><source bridge='a'/></interface>";
  DomainRewrite rw;
  rw.network_map = {{"a", "b"}, {"b", "c"}};
  auto out = RewriteDomainXml(Minimal(ifaces), rw);
  ASSERT_THAT(out, IsOk());
  auto info = ParseDomainXml(out->xml);
  ASSERT_THAT(info, IsOk());
  ASSERT_EQ(info->interfaces.size(), 3u);
  EXPECT_EQ(info->interfaces[0].source, "b");
  EXPECT_EQ(info->interfaces[1].source, "c");
  EXPECT_EQ(info->interfaces[2].source, "b");  // the bridge named 'a'
  EXPECT_THAT(out->xml, Not(HasSubstr("portid")));
  EXPECT_THAT(out->xml, Not(HasSubstr("virbr0")));
}

TEST(DomainRewriteTest, NewIdentity) {
  auto out = RewriteDomainXml(kInactive, NewIdentity());
  ASSERT_THAT(out, IsOk());
  EXPECT_THAT(out->xml, HasSubstr("<uuid>" + out->uuid + "</uuid>"));
  ASSERT_EQ(out->uuid.size(), 36u);
  EXPECT_EQ(out->uuid[14], '4');  // version 4
  EXPECT_NE(out->uuid, kUuid);
  EXPECT_THAT(out->xml, Not(HasSubstr(kUuid)));  // sysinfo entry too
  EXPECT_THAT(out->xml, Not(HasSubstr("name=\"uuid\"")));
  EXPECT_THAT(out->xml, HasSubstr("<entry name=\"serial\">SN-0001</entry>"));
  EXPECT_THAT(out->xml, HasSubstr("<genid/>"));  // libvirt makes a new one

  const std::vector<std::string> old = {
      "52:54:00:12:34:56", "52:54:00:12:34:57", "52:54:00:12:34:58"};
  ASSERT_EQ(out->macs.size(), 3u);
  std::set<std::string> fresh;
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(out->macs[i].first, old[i]);
    EXPECT_THAT(out->macs[i].second, StartsWith("52:54:00:"));
    EXPECT_EQ(out->macs[i].second.size(), 17u);
    fresh.insert(out->macs[i].second);
  }
  EXPECT_EQ(fresh.size(), 3u);
  for (const auto& o : old) EXPECT_EQ(fresh.count(o), 0u);

  auto info = ParseDomainXml(out->xml);
  ASSERT_THAT(info, IsOk());
  ASSERT_EQ(info->interfaces.size(), 3u);
  for (size_t i = 0; i < 3; ++i)
    EXPECT_EQ(info->interfaces[i].mac, out->macs[i].second);
  EXPECT_EQ(info->uuid, out->uuid);
  // Nothing else changes.
  EXPECT_EQ(info->name, "web-01");
  EXPECT_THAT(info->networks, ElementsAre("default", "backend"));
  EXPECT_EQ(Find(*info, "vda")->path, "/var/lib/libvirt/images/web-01.qcow2");
  EXPECT_THAT(out->xml, HasSubstr("<qemu:commandline>"));
}

TEST(DomainRewriteTest, NewIdentityGivesEveryInterfaceADistinctMac) {
  // One without a MAC gets one; the old ones, in any spelling libvirt
  // reads, are never handed out again.
  std::string ifaces =
      "<interface type='user'><model type='virtio'/></interface>";
  const int n = 3000;
  for (int i = 0; i < n; ++i) {
    char mac[32];
    std::snprintf(mac, sizeof mac, "52:54:0:%X:%x:%02x", (i >> 12) & 0xf,
                  (i >> 8) & 0xf, i & 0xff);
    ifaces += std::string("<interface type='network'><mac address='") + mac +
              "'/><source network='default'/></interface>";
  }
  auto out = RewriteDomainXml(Minimal(ifaces), NewIdentity());
  ASSERT_THAT(out, IsOk());
  ASSERT_EQ(out->macs.size(), static_cast<size_t>(n + 1));
  EXPECT_EQ(out->macs[0].first, "");
  std::set<std::string> seen;
  for (const auto& [was, now] : out->macs) {
    ASSERT_TRUE(seen.insert(now).second) << now << " twice";
    const int low = std::stoi(now.substr(12, 2), nullptr, 16) << 8 |
                    std::stoi(now.substr(15, 2), nullptr, 16);
    const int mid = std::stoi(now.substr(9, 2), nullptr, 16);
    EXPECT_FALSE(mid == 0 && low < n) << now << " was an old MAC";
  }
  auto info = ParseDomainXml(out->xml);
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->interfaces[0].mac, out->macs[0].second);
}

TEST(DomainRewriteTest, NewIdentityFromASeedIsTheSameEveryTime) {
  // A dry run and the run after it plan separately: the same seed must
  // give the same UUID and MACs, another seed others.
  DomainRewrite rw = NewIdentity();
  rw.identity_seed = "snapshot-1/web-02/host-a";
  auto a = RewriteDomainXml(kInactive, rw);
  auto b = RewriteDomainXml(kInactive, rw);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(a->uuid, b->uuid);
  EXPECT_EQ(a->macs, b->macs);
  EXPECT_EQ(a->xml, b->xml);
  rw.identity_seed = "snapshot-1/web-03/host-a";
  auto c = RewriteDomainXml(kInactive, rw);
  ASSERT_THAT(c, IsOk());
  EXPECT_NE(c->uuid, a->uuid);
  EXPECT_NE(c->macs, a->macs);
  // MACs other domains use are never handed out.
  rw.identity_seed = "snapshot-1/web-02/host-a";
  for (const auto& [was, now] : a->macs) rw.avoid_macs.insert(now);
  auto d = RewriteDomainXml(kInactive, rw);
  ASSERT_THAT(d, IsOk());
  for (const auto& [was, now] : d->macs)
    EXPECT_EQ(rw.avoid_macs.count(now), 0u) << now;
}

TEST(DomainRewriteTest, RestoreMetadataNamesThePoint) {
  DomainRewrite rw;
  rw.restored_from = "0123abcd";
  auto out = RewriteDomainXml(kInactive, rw);
  ASSERT_THAT(out, IsOk());
  auto info = ParseDomainXml(out->xml);
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->restored_from, "0123abcd");
  EXPECT_THAT(out->xml, HasSubstr(kRestoreMetadataNs));
  // A second rewrite (a point of a restored VM, restored again) replaces it.
  rw.restored_from = "4567ef01";
  auto again = RewriteDomainXml(out->xml, rw);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(Count(again->xml, kRestoreMetadataNs), 1u);
  EXPECT_EQ(ParseDomainXml(again->xml)->restored_from, "4567ef01");
  // Not set: none read.
  EXPECT_EQ(ParseDomainXml(kInactive)->restored_from, "");
}

TEST(DomainRewriteTest, HostDacLabel) {
  const std::string caps =
      "<capabilities><host><secmodel><model>none</model></secmodel>"
      "<secmodel><model>dac</model><doi>0</doi>"
      "<baselabel type='kvm'>+64055:+994</baselabel>"
      "<baselabel type='qemu'>+64055:+64055</baselabel></secmodel>"
      "</host></capabilities>";
  EXPECT_EQ(ParseHostDacLabel(caps, "kvm"), "+64055:+994");
  EXPECT_EQ(ParseHostDacLabel(caps, "qemu"), "+64055:+64055");
  EXPECT_EQ(ParseHostDacLabel(caps, "xen"), "");
  EXPECT_EQ(ParseHostDacLabel("<capabilities/>", "kvm"), "");
  EXPECT_EQ(ParseHostDacLabel("not xml", "kvm"), "");
}

TEST(DomainRewriteTest, NvramPath) {
  auto out = RewriteDomainXml(kInactive, Nvram("/restore/web-02_VARS.fd"));
  ASSERT_THAT(out, IsOk());
  auto info = ParseDomainXml(out->xml);
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->nvram, "/restore/web-02_VARS.fd");
  EXPECT_THAT(out->xml,
              HasSubstr("template=\"/usr/share/OVMF/OVMF_VARS_4M.fd\""));

  // The newer form, with a <source>.
  auto newer = RewriteDomainXml(
      Minimal("",
              "<os><nvram type='file'><source file='/old/VARS.fd'/>"
              "</nvram></os>"),
      Nvram("/new/VARS.fd"));
  ASSERT_THAT(newer, IsOk());
  auto newer_info = ParseDomainXml(newer->xml);
  ASSERT_THAT(newer_info, IsOk());
  EXPECT_EQ(newer_info->nvram, "/new/VARS.fd");
  EXPECT_THAT(newer->xml, Not(HasSubstr("/old/")));
}

TEST(DomainRewriteTest, ValuesAreWrittenLiterally) {
  // XML specials in a path or name are text, never markup or entities.
  const std::string path = "/restore/a&amp;b <c> 'd' \"e\" &x;.raw";
  auto out =
      RewriteDomainXml(kInactive, NamedWithDisk("n&lt;", {"vda", path, "raw"}));
  ASSERT_THAT(out, IsOk());
  auto info = ParseDomainXml(out->xml);
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->name, "n&lt;");
  EXPECT_EQ(Find(*info, "vda")->path, path);
}

TEST(DomainRewriteTest, UnknownTargetIsNotFound) {
  DomainRewrite rw;
  rw.disks = {{"vda", "/r/a.raw", "raw"}, {"vdz", "/r/z.raw", "raw"}};
  EXPECT_THAT(RewriteDomainXml(kInactive, rw),
              StatusIs(Code::kNotFound,
                       AllOf(HasSubstr("web-01"), HasSubstr("'vdz'"))));
  rw.disks = {{"vda", "/r/a.raw", "raw"}, {"vda", "/r/b.raw", "raw"}};
  EXPECT_THAT(RewriteDomainXml(kInactive, rw),
              StatusIs(Code::kInvalidArgument,
                       AllOf(HasSubstr("'vda'"), HasSubstr("twice"))));
}

TEST(DomainRewriteTest, BadNamesAreRefused) {
  for (const std::string& name :
       {std::string(65, 'a'), std::string("a/b"), std::string(".hidden"),
        std::string("a\nb"), std::string("a\tb"), std::string("a\x7f"),
        std::string("a\0b", 3), std::string("\xff\xfe")}) {
    EXPECT_THAT(RewriteDomainXml(kInactive, Name(name)),
                StatusIs(Code::kInvalidArgument, HasSubstr("new domain name")))
        << name;
  }
}

TEST(DomainRewriteTest, BadPathsAndFormatsAreRefused) {
  for (const std::string& path :
       {std::string("restore/a.raw"), std::string(""), std::string("./a"),
        std::string("/r/a\nb.raw"), std::string("/r/a\0b", 6),
        std::string("/r/\xff.raw"), "/" + std::string(4095, 'a')}) {
    EXPECT_THAT(RewriteDomainXml(kInactive, Disks({{"vda", path, "raw"}})),
                StatusIs(Code::kInvalidArgument,
                         AllOf(HasSubstr("'vda'"), HasSubstr("path"))))
        << path;
    if (path.empty()) continue;  // an empty nvram_path changes nothing
    EXPECT_THAT(RewriteDomainXml(kInactive, Nvram(path)),
                StatusIs(Code::kInvalidArgument, HasSubstr("NVRAM path")))
        << path;
  }
  for (const std::string& format : {std::string("vmdk"), std::string("QCOW2"),
                                    std::string("raw "), std::string("")}) {
    EXPECT_THAT(RewriteDomainXml(kInactive, Disks({{"vda", "/r/a", format}})),
                StatusIs(Code::kInvalidArgument,
                         AllOf(HasSubstr("'vda'"), HasSubstr("format"))))
        << format;
  }
  // libvirt has no driver type 'vhdx': the VM would not define.
  EXPECT_THAT(
      RewriteDomainXml(kInactive, Disks({{"vda", "/r/a.vhdx", "vhdx"}})),
      StatusIs(Code::kInvalidArgument,
               AllOf(HasSubstr("vhdx"), HasSubstr("libvirt"))));
}

TEST(DomainRewriteTest, BadNetworkMapsAreRefused) {
  EXPECT_THAT(RewriteDomainXml(kInactive, Networks({{"default", "a/b"}})),
              StatusIs(Code::kInvalidArgument,
                       AllOf(HasSubstr("'default'"), HasSubstr("'a/b'"))));
  EXPECT_THAT(RewriteDomainXml(kInactive, Networks({{"", "x"}})),
              StatusIs(Code::kInvalidArgument, HasSubstr("empty")));
  // A bridge is a Linux interface: 15 bytes at most, no ':' or space.
  for (const std::string& bridge : {std::string("a-very-long-bridge"),
                                    std::string("br:1"), std::string("br 1")}) {
    EXPECT_THAT(RewriteDomainXml(kInactive, Networks({{"br0", bridge}})),
                StatusIs(Code::kInvalidArgument,
                         AllOf(HasSubstr("bridge 'br0'"), HasSubstr(bridge))))
        << bridge;
  }
  // The same long name is fine for a network.
  EXPECT_THAT(RewriteDomainXml(kInactive,
                               Networks({{"default", "a-very-long-bridge"}})),
              IsOk());
}

TEST(DomainRewriteTest, MissingNvramIsAnError) {
  EXPECT_THAT(RewriteDomainXml(Minimal("", "<os><type>hvm</type></os>"),
                               Nvram("/r/VARS.fd")),
              StatusIs(Code::kInvalidArgument,
                       AllOf(HasSubstr("'vm1'"), HasSubstr("<nvram>"))));
}

TEST(DomainRewriteTest, LunDisksCannotBecomeFiles) {
  EXPECT_THAT(
      RewriteDomainXml(
          Minimal("<disk type='block' device='lun'><source dev='/dev/sdz'/>"
                  "<target dev='sdb' bus='scsi'/></disk>"),
          Disks({{"sdb", "/r/sdb.raw", "raw"}})),
      StatusIs(Code::kInvalidArgument,
               AllOf(HasSubstr("'sdb'"), HasSubstr("lun"))));
}

TEST(DomainRewriteTest, OnlyAValidDomainIsRewritten) {
  EXPECT_THAT(RewriteDomainXml(std::string("<network><name>x</name><uuid>") +
                                   kUuid + "</uuid></network>",
                               DomainRewrite{}),
              StatusIs(Code::kInvalidArgument,
                       AllOf(HasSubstr("'network'"), HasSubstr("<domain>"))));
  EXPECT_THAT(
      RewriteDomainXml("<domain><name>x</name></domain>", DomainRewrite{}),
      StatusIs(Code::kInvalidArgument, HasSubstr("<uuid>")));
  EXPECT_THAT(RewriteDomainXml("<domain><name>x", DomainRewrite{}),
              StatusIs(Code::kInvalidArgument, HasSubstr("does not parse")));
  EXPECT_THAT(RewriteDomainXml("", DomainRewrite{}),
              StatusIs(Code::kInvalidArgument, HasSubstr("does not parse")));
  // A namespaced root is not libvirt's <domain>.
  EXPECT_THAT(RewriteDomainXml(std::string("<d:domain xmlns:d='urn:x'><name>"
                                           "x</name><uuid>") +
                                   kUuid + "</uuid></d:domain>",
                               DomainRewrite{}),
              StatusIs(Code::kInvalidArgument, HasSubstr("<domain>")));
}

// ------------------------------------------------------------- hostile

TEST(DomainRewriteTest, DoctypesAreRefused) {
  // Entity expansion ("billion laughs"), an external entity, or any DTD:
  // libvirt never writes one, and nothing of it may reach libvirt.
  std::string laughs = "<!DOCTYPE domain [<!ENTITY a0 'lollollollollol'>";
  for (int i = 1; i <= 12; ++i) {
    std::string ten;
    for (int k = 0; k < 10; ++k) ten += "&a" + std::to_string(i - 1) + ";";
    laughs += "<!ENTITY a" + std::to_string(i) + " '" + ten + "'>";
  }
  laughs += "]>";
  for (const std::string& dtd :
       {laughs,
        std::string("<!DOCTYPE domain [<!ENTITY x SYSTEM "
                    "'file:///etc/passwd'>]>"),
        std::string("<!DOCTYPE domain SYSTEM 'http://example.com/d.dtd'>"),
        std::string("<!DOCTYPE domain>")}) {
    const std::string body =
        dtd.find("a12") != std::string::npos        ? "<title>&a12;</title>"
        : dtd.find("ENTITY x") != std::string::npos ? "<title>&x;</title>"
                                                    : "";
    const auto start = std::chrono::steady_clock::now();
    auto out = RewriteDomainXml(dtd + Minimal("", body), Name("n"));
    EXPECT_LT(std::chrono::steady_clock::now() - start,
              std::chrono::seconds(5));
    EXPECT_THAT(
        out, StatusIs(Code::kInvalidArgument,
                      AnyOf(HasSubstr("DOCTYPE"), HasSubstr("does not parse"))))
        << dtd;
  }
}

TEST(DomainRewriteTest, OversizedInputAndOutputAreRefused) {
  std::string big = Minimal(
      "", "<description>" + std::string(16 << 20, 'x') + "</description>");
  EXPECT_THAT(RewriteDomainXml(big, DomainRewrite{}),
              StatusIs(Code::kInvalidArgument, HasSubstr("16 MiB")));
  // 3 MiB of '"' in a single-quoted attribute is 18 MiB once written as
  // &quot;: too big to hand on, though it was small enough to read.
  std::string quotes =
      Minimal("", "<metadata><x:y xmlns:x='urn:x' v='" +
                      std::string(3 << 20, '"') + "'/></metadata>");
  EXPECT_THAT(RewriteDomainXml(quotes, DomainRewrite{}),
              StatusIs(Code::kInvalidArgument,
                       AllOf(HasSubstr("rewritten"), HasSubstr("16 MiB"))));
}

TEST(DomainRewriteTest, DeepNestingIsAnErrorNotACrash) {
  const int depth = 100000;
  std::string deep;
  for (int i = 0; i < depth; ++i) deep += "<m>";
  for (int i = 0; i < depth; ++i) deep += "</m>";
  EXPECT_THAT(RewriteDomainXml(Minimal("", "<metadata>" + deep + "</metadata>"),
                               DomainRewrite{}),
              StatusIs(Code::kInvalidArgument, HasSubstr("does not parse")));
}

TEST(DomainRewriteTest, ManyDisksAreRewrittenQuickly) {
  std::string disks;
  DomainRewrite rw;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const std::string t = "d" + std::to_string(i);
    disks += "<disk type='block'><source dev='/dev/x'/><target dev='" + t +
             "'/></disk>";
    rw.disks.push_back({t, "/r/" + t + ".raw", "raw"});
  }
  const auto start = std::chrono::steady_clock::now();
  auto out = RewriteDomainXml(Minimal(disks), rw);
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  ASSERT_THAT(out, IsOk());
  EXPECT_EQ(Count(out->xml, "type=\"file\""), static_cast<size_t>(n));
  EXPECT_LT(took, 5.0);
}

// -------------------------------------------------------------- network

const char kNetwork[] = R"(<network connections='1'>
  <name>default</name>
  <uuid>9a05da11-e96b-47f3-8253-a3a482e445f5</uuid>
  <forward mode='nat'>
    <nat>
      <port start='1024' end='65535'/>
    </nat>
  </forward>
  <bridge name='virbr0' stp='on' delay='0'/>
  <mac address='52:54:00:0a:cd:21'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>
)";

TEST(NetworkXmlTest, ParsesACapturedNetwork) {
  auto info = ParseNetworkXml(kNetwork);
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->name, "default");
  EXPECT_EQ(info->uuid, "9a05da11-e96b-47f3-8253-a3a482e445f5");
  EXPECT_EQ(info->bridge, "virbr0");
  EXPECT_EQ(info->mac, "52:54:00:0a:cd:21");
  EXPECT_EQ(info->forward, "nat");

  auto bare = ParseNetworkXml("<network><name>isolated</name></network>");
  ASSERT_THAT(bare, IsOk());
  EXPECT_EQ(bare->name, "isolated");
  EXPECT_EQ(bare->uuid, "");
  EXPECT_EQ(bare->bridge, "");
  EXPECT_EQ(bare->mac, "");
  EXPECT_EQ(bare->forward, "isolated");
  // <forward> without a mode is libvirt's NAT; a mode is taken as written.
  auto plain =
      ParseNetworkXml("<network><name>n</name><forward dev='eth0'/></network>");
  ASSERT_THAT(plain, IsOk());
  EXPECT_EQ(plain->forward, "nat");
  auto routed = ParseNetworkXml(
      "<network><name>r</name><forward mode=\"route\"/></network>");
  ASSERT_THAT(routed, IsOk());
  EXPECT_EQ(routed->forward, "route");
}

TEST(NetworkXmlTest, ImplausibleNetworksAreRefused) {
  struct Case {
    std::string xml, message;
  };
  for (const Case& c : std::vector<Case>{
           {std::string("<domain><name>x</name><uuid>") + kUuid +
                "</uuid></domain>",
            "not <network>"},
           {"<network><bridge name='virbr0'/></network>", "single <name>"},
           {"<network><name>a</name><name>b</name></network>", "single <name>"},
           {"<network><name>a/b</name></network>", "network name 'a/b'"},
           {"<network><name>.x</name></network>", "network name"},
           {"<network><name></name></network>", "network name"},
           {"<network><name>n</name><uuid>1234</uuid></network>", "uuid"},
           {"<network><name>n</name><uuid>" + std::string(kUuid) +
                "</uuid><uuid>" + kUuid + "</uuid></network>",
            "two <uuid>"},
           {"<network><name>n</name><bridge name='a-very-long-bridge'/>"
            "</network>",
            "bridge 'a-very-long-bridge'"},
           {"<network><name>n</name><bridge name='br:0'/></network>", "bridge"},
           {"<network><name>n</name><mac address='52:54:00:zz:00:01'/>"
            "</network>",
            "MAC"},
           {"<network><name>n</name><mac address='52:54:00:00:00:01:02'/>"
            "</network>",
            "MAC"},
           {"<!DOCTYPE network [<!ENTITY e 'x'>]><network><name>&e;</name>"
            "</network>",
            "DOCTYPE"},
           {"<network><name>n</name>", "does not parse"},
           {"", "does not parse"},
       }) {
    EXPECT_THAT(ParseNetworkXml(c.xml),
                StatusIs(Code::kInvalidArgument, HasSubstr(c.message)))
        << c.xml;
    EXPECT_THAT(RewriteNetworkXml(c.xml, NetworkRewrite{}),
                StatusIs(Code::kInvalidArgument, HasSubstr(c.message)))
        << c.xml;
  }
  EXPECT_THAT(ParseNetworkXml(std::string((16 << 20) + 1, ' ')),
              StatusIs(Code::kInvalidArgument, HasSubstr("16 MiB")));
}

TEST(NetworkXmlTest, RewriteDropsWhatIsAsked) {
  auto same = RewriteNetworkXml(kNetwork, NetworkRewrite{});
  ASSERT_THAT(same, IsOk());
  auto same_info = ParseNetworkXml(*same);
  ASSERT_THAT(same_info, IsOk());
  EXPECT_EQ(same_info->uuid, "9a05da11-e96b-47f3-8253-a3a482e445f5");
  EXPECT_EQ(same_info->bridge, "virbr0");
  EXPECT_EQ(same_info->mac, "52:54:00:0a:cd:21");
  EXPECT_THAT(*same, StartsWith("<network"));

  auto out =
      RewriteNetworkXml(kNetwork, NetworkRewrite{.drop_uuid = true,
                                                 .drop_bridge_name = true,
                                                 .drop_mac = true});
  ASSERT_THAT(out, IsOk());
  auto info = ParseNetworkXml(*out);
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->name, "default");
  EXPECT_EQ(info->uuid, "");
  EXPECT_EQ(info->bridge, "");
  EXPECT_EQ(info->mac, "");
  EXPECT_THAT(*out, Not(HasSubstr("<uuid>")));
  EXPECT_THAT(*out, Not(HasSubstr("<mac")));
  // The bridge element stays with its other attributes; so does the rest.
  EXPECT_THAT(*out, HasSubstr("<bridge stp=\"on\" delay=\"0\"/>"));
  EXPECT_THAT(*out, HasSubstr("<forward mode=\"nat\">"));
  EXPECT_THAT(*out, HasSubstr("<range start=\"192.168.122.2\" "
                              "end=\"192.168.122.254\"/>"));

  auto only_uuid =
      RewriteNetworkXml(kNetwork, NetworkRewrite{true, false, false});
  ASSERT_THAT(only_uuid, IsOk());
  auto only_uuid_info = ParseNetworkXml(*only_uuid);
  ASSERT_THAT(only_uuid_info, IsOk());
  EXPECT_EQ(only_uuid_info->uuid, "");
  EXPECT_EQ(only_uuid_info->bridge, "virbr0");
  EXPECT_EQ(only_uuid_info->mac, "52:54:00:0a:cd:21");
}

// ----------------------------------------------------------------- pool

TEST(PoolXmlTest, ParsesAFolderPool) {
  auto info = ParsePoolXml(R"(<pool type='dir'>
  <name>default</name>
  <uuid>3b4bd4b9-cf1e-4a7c-a2c5-71a4d1a5a9b0</uuid>
  <capacity unit='bytes'>105088212992</capacity>
  <source>
  </source>
  <target>
    <path>/var/lib/libvirt/images</path>
    <permissions><mode>0711</mode><owner>0</owner><group>0</group></permissions>
  </target>
</pool>)");
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->name, "default");
  EXPECT_EQ(info->type, "dir");
  EXPECT_EQ(info->path, "/var/lib/libvirt/images");
  EXPECT_THAT(ParsePoolXml("<network><name>x</name></network>"),
              StatusIs(Code::kInvalidArgument, HasSubstr("not <pool>")));
  EXPECT_THAT(ParsePoolXml("<pool type='dir'></pool>"),
              StatusIs(Code::kInvalidArgument, HasSubstr("<name>")));
}

// ------------------------------------------------------------- untrusted

TEST(UntrustedDomainTest, ARewrittenTypicalVmAsksOnlyForItsQemuArguments) {
  DomainRewrite rw = Disks({{"vda", "/images/web-01-vda.qcow2", "qcow2"},
                            {"vdb", "/images/web-01-vdb.img", "raw"},
                            {"vdc", "/images/web-01-vdc.qcow2", "qcow2"}});
  rw.untrusted = true;
  auto out = RewriteDomainXml(kInactive, rw);
  ASSERT_THAT(out, IsOk());
  EXPECT_THAT(out->emptied_disks, ElementsAre("sda"));
  EXPECT_THAT(out->removed_disks, IsEmpty());
  EXPECT_THAT(out->xml, Not(HasSubstr("<emulator>")));
  EXPECT_THAT(out->xml, Not(HasSubstr("debian-12.iso")));
  auto problems = UntrustedDomainProblems(
      out->xml, {"/images/web-01-vda.qcow2", "/images/web-01-vdb.img",
                 "/images/web-01-vdc.qcow2"});
  ASSERT_THAT(problems, IsOk());
  ASSERT_THAT(*problems,
              ElementsAre(AllOf(
                  StartsWith("asks for <qemu:commandline> (options handed to "
                             "the hypervisor"),
                  HasSubstr("a point from an agent may not run programs on "
                            "the target host"))));
  // A disk on a file the restore does not write.
  auto other = UntrustedDomainProblems(out->xml, {"/images/web-01-vda.qcow2"});
  ASSERT_THAT(other, IsOk());
  EXPECT_THAT(*other, Contains(StartsWith(
                          "asks for <disk> 'vdb' on '/images/web-01-vdb.img' "
                          "(a source the restore does not write)")));
  // Without `untrusted` the rewrite keeps what it kept before.
  rw.untrusted = false;
  auto kept = RewriteDomainXml(kInactive, rw);
  ASSERT_THAT(kept, IsOk());
  EXPECT_THAT(kept->xml, HasSubstr("/usr/bin/qemu-system-x86_64"));
  EXPECT_THAT(kept->xml, HasSubstr("debian-12.iso"));
  EXPECT_THAT(kept->emptied_disks, IsEmpty());
}

TEST(UntrustedDomainTest, MetadataIsNotReadButFirmwareAndFilesAre) {
  auto problems = UntrustedDomainProblems(
      Minimal("<emulator>/tmp/x</emulator>",
              "<metadata><qemu:commandline xmlns:qemu='http://libvirt.org/"
              "schemas/domain/qemu/1.0'/></metadata><os><type>hvm</type>"
              "<loader>/usr/share/../../etc/shadow</loader><nvram "
              "template='/root/vars.fd'>/x</nvram><initrd>/boot/x</initrd>"
              "</os><sysinfo type='fwcfg'><entry name='opt/x' "
              "file='/etc/ssh/ssh_host_ed25519_key'/></sysinfo>"),
      {});
  ASSERT_THAT(problems, IsOk());
  EXPECT_THAT(*problems, Not(Contains(HasSubstr("qemu:commandline"))));
  EXPECT_THAT(*problems, Contains(StartsWith("asks for <emulator> '/tmp/x'")));
  EXPECT_THAT(
      *problems,
      Contains(StartsWith("asks for <loader> '/usr/share/../../etc/shadow'")));
  EXPECT_THAT(
      *problems,
      Contains(StartsWith("asks for <nvram template='/root/vars.fd'>")));
  EXPECT_THAT(*problems, Contains(StartsWith("asks for <initrd> '/boot/x'")));
  EXPECT_THAT(*problems, Contains(StartsWith("asks for <sysinfo><entry "
                                             "file='/etc/ssh/")));
  EXPECT_THAT(UntrustedDomainProblems("<domain", {}),
              StatusIs(Code::kInvalidArgument, HasSubstr("does not parse")));
}

TEST(UntrustedNetworkTest, NatIsFineTftpAndDnsmasqOptionsAreNot) {
  auto fine = UntrustedNetworkProblems(
      "<network><name>n</name><forward mode='nat'><nat><port start='1024' "
      "end='65535'/></nat></forward><bridge name='virbr9' stp='on'/><ip "
      "address='192.168.9.1' netmask='255.255.255.0'/></network>");
  ASSERT_THAT(fine, IsOk());
  EXPECT_THAT(*fine, IsEmpty());
  auto isolated = UntrustedNetworkProblems(
      "<network><name>n</name><bridge name='virbr9'/></network>");
  ASSERT_THAT(isolated, IsOk());
  EXPECT_THAT(*isolated, IsEmpty());
  auto bad = UntrustedNetworkProblems(
      "<network xmlns:dnsmasq='http://libvirt.org/schemas/network/dnsmasq/"
      "1.0'><name>n</name><forward mode='route'/><ip address='10.0.0.1'><tftp "
      "root='/'/></ip><dnsmasq:options><dnsmasq:option "
      "value='dhcp-script=/tmp/x'/></dnsmasq:options></network>");
  ASSERT_THAT(bad, IsOk());
  EXPECT_THAT(*bad, ElementsAre(StartsWith("asks for <dnsmasq:options>"),
                                StartsWith("asks for <tftp root='/'>")));
}

}  // namespace
}  // namespace haven::snapshot
