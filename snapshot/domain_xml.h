// snapshot/: what Haven needs to know of a libvirt domain, parsed from its
// XML with libxml2. The XML comes from libvirt, but it names paths Haven
// will open and is kept in backups, so it is treated as untrusted: a parse
// error, a missing target or an implausible value is an error naming it.
#ifndef HAVEN_SNAPSHOT_DOMAIN_XML_H_
#define HAVEN_SNAPSHOT_DOMAIN_XML_H_

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"

namespace haven::snapshot {

struct DomainDisk {
  std::string target;          // guest device name: vda, sdb, hdc
  std::string device;          // disk | cdrom | floppy | lun
  std::string type;            // file | block | volume | network | ...
  std::string path;            // file or block device (file/block types)
  std::string pool, volume;    // type='volume'
  std::string format;          // driver type: qcow2, raw, ...
  std::string backing_format;  // first backing store's format, if listed
  bool readonly = false;
  // Non-empty: the disk is not backed up, and why (a CD-ROM, read-only
  // media, a network disk).
  std::string skip_reason;
};

struct DomainInterface {
  std::string type;  // network | bridge | direct | user | hostdev | ...
  // The network's name (type network), the bridge's (bridge), the host
  // device's (direct); "" for other types.
  std::string source;
  std::string mac;  // <mac address=> as written; "" if absent
};

struct DomainInfo {
  std::string name, uuid;
  std::vector<DomainDisk> disks;
  std::vector<std::string> networks;  // <interface type='network'> sources
  std::vector<std::string> pools;     // pools named by volume disks
  std::string nvram;      // <os><nvram> path (or its <source file=>)
  std::string emulator;   // <devices><emulator>, "" if absent
  std::string loader;     // <os><loader> (firmware), "" if absent
  std::string dac_label;  // "+UID:+GID" the QEMU process runs as
  std::vector<DomainInterface> interfaces;  // every <interface>, in order
  // <metadata><haven:restore snapshot=ID/> (namespace kRestoreMetadataNs):
  // the recovery point a Haven restore defined this domain from; "" if none.
  std::string restored_from;
};

inline constexpr char kRestoreMetadataNs[] = "urn:x-haven:restore:1";

Result<DomainInfo> ParseDomainXml(const std::string& xml);

// ----------------------------------------------------------------- rewrite
// Rewriting a captured domain XML so that another libvirt host can define
// it (virDomainDefineXML) with restored disk images in new places. The XML
// is untrusted: it must pass ParseDomainXml, may not carry a DOCTYPE (its
// entities would reach libvirt), and is at most 16 MiB before and after.
// Everything not named below is kept as it was, other namespaces included.

struct DiskRewrite {
  std::string target;  // the disk's <target dev=>
  std::string path;    // new image: absolute, no control characters
  std::string format;  // raw | qcow2 (vhdx is refused: libvirt has no
                       // driver type 'vhdx' and would not define the VM)
  // Non-empty (instant recovery): `path` is a qcow2 overlay whose backing
  // image is the raw export `nbd_export` of an NBD server on the unix socket
  // `nbd_socket`; the disk gets that <backingStore type='network'>.
  std::string nbd_socket{}, nbd_export{};
};

struct DomainRewrite {
  // Non-empty: the new <name>; 1..64 bytes of UTF-8, no '/', no control
  // characters, not starting with '.'.
  std::string name;
  // Sets a new <uuid>, drops every sysinfo <system><entry name='uuid'>,
  // empties <genid> (a new VM generation ID), and gives every <interface> a
  // new MAC 52:54:00:xx:xx:xx, distinct from each other, from the old ones
  // and from `avoid_macs` (<mac> is added where missing).
  bool new_identity = false;
  // With new_identity: the new UUID and MACs are drawn from a generator
  // seeded with these bytes, so the same seed (and the same avoid_macs)
  // gives the same identity — a plan shown by a dry run is the one a later
  // run uses. Empty: from std::random_device.
  std::string identity_seed;
  std::set<std::string> avoid_macs;  // lower case, as "52:54:00:12:34:56"
  // Non-empty: <metadata><haven:restore snapshot=ID/> is set (replacing an
  // earlier one), so the host can tell which point a domain came from.
  std::string restored_from;
  // Each named disk becomes type='file' with <source file=path> (its other
  // source attributes but startupPolicy, and its source children but
  // <seclabel>, describe the old storage and are removed, <slices> and
  // <encryption> included: the restored image is plain), <driver type=format>
  // (other driver attributes kept; <driver name='qemu'> added if missing),
  // and no <backingStore>, <mirror> or disk-level <encryption>/<auth> (the
  // restored image is flat). A target not in the XML is NotFound; naming one
  // twice, or a device='lun' disk (passthrough needs a block device), is
  // InvalidArgument.
  std::vector<DiskRewrite> disks;
  // <interface type='network'><source network=OLD> becomes NEW (the old
  // network's portid and bridge attributes are dropped with it), and so does
  // <interface type='bridge'><source bridge=OLD>. NEW must be a libvirt name,
  // and a bridge name no longer than 15 bytes. Unused entries are ignored.
  std::map<std::string, std::string> network_map;
  // Non-empty: the path /domain/os/nvram names (absolute, no control
  // characters). A domain without <os><nvram> is InvalidArgument.
  std::string nvram_path;
  // The XML is a host agent's (the point's manifest has an agent_id): it
  // may name the target host's files, so what the restore does not write
  // is taken out. <devices><emulator> is removed (libvirt picks the host's
  // default), and of every disk not in `disks`, a CD-ROM or floppy becomes
  // an empty drive (type='file', no <source>, <backingStore>, <mirror>,
  // <auth> or <encryption>) and any other disk is removed whole.
  bool untrusted = false;
  // Non-empty (a verified restore, restore/verify_restore.h): every
  // <serial> and <console> goes, and one serial port writes to this file
  // (absolute, no control characters); a domain without a <video> device
  // gets a VGA one, so its screen can be captured.
  std::string serial_file{};
};

struct RewrittenDomain {
  std::string xml;   // UTF-8, no XML declaration
  std::string uuid;  // new_identity: the new <uuid>; "" otherwise
  // new_identity: (old MAC, new MAC) per interface in document order; the
  // old one is "" where the interface had none. Empty otherwise.
  std::vector<std::pair<std::string, std::string>> macs;
  // untrusted: targets of the drives emptied and of the disks removed.
  std::vector<std::string> emptied_disks, removed_disks;
};

// Returns the rewritten XML. On error nothing is returned and the status
// names the offending value (InvalidArgument, NotFound for a disk target).
Result<RewrittenDomain> RewriteDomainXml(const std::string& xml,
                                         const DomainRewrite& rewrite);

// What in a domain XML from a host agent would reach the host that defines
// it: one phrase per problem, naming the element and what it reaches, e.g.
// "asks for <hostdev> (a host PCI, USB or SCSI device): a point from an
// agent may not reach the target host's devices". Empty: nothing found.
// `xml` is the XML as it will be defined (after RewriteDomainXml with
// `untrusted`); `restored_files` are the files the restore writes, the only
// host paths a <disk> may name. Looked for: elements of libvirt's driver
// namespaces (<qemu:commandline>, <qemu:capabilities>, ...), <emulator>,
// <hostdev>, <filesystem>, <redirdev>, <shmem>, <lease>, host device
// <interface>s and their scripts, passthrough <input>, <tpm>, <smartcard>,
// <rng> sources, nvdimm <memory>, <audio> and <graphics> on host
// files/sockets, a domain <seclabel> of type none or static or with
// relabel='no', character devices (serial, parallel, console, channel)
// on anything but a pty, a console of libvirt's or a socket libvirt names
// itself, their <log file>, disks naming a host path the restore does not
// write, host files loaded into the guest (kernel, initrd, dtb, ACPI
// tables, fw_cfg files) and firmware from outside /usr/share.
// InvalidArgument if the XML does not parse.
Result<std::vector<std::string>> UntrustedDomainProblems(
    const std::string& xml, const std::set<std::string>& restored_files);

// ----------------------------------------------------------------- network
// Virtual network XML (virNetworkGetXMLDesc), captured with the VM that
// uses it; untrusted like domain XML, and refused with a DOCTYPE.

struct NetworkInfo {
  std::string name;    // a libvirt name (as DomainRewrite::name)
  std::string uuid;    // 36 characters, or "" if absent
  std::string bridge;  // <bridge name=>, a plausible interface name, or ""
  std::string mac;     // <mac address=>, a well-formed MAC, or ""
  // <forward mode=>: "isolated" without <forward>, "nat" for a <forward>
  // without a mode (libvirt's default), else the mode as written.
  std::string forward;
};

// InvalidArgument if the root is not <network>, there is no single <name>,
// or a value above is implausible.
Result<NetworkInfo> ParseNetworkXml(const std::string& xml);

struct NetworkRewrite {
  bool drop_uuid = false;         // libvirt makes a new one
  bool drop_bridge_name = false;  // only the attribute: stp, delay... stay
  bool drop_mac = false;          // libvirt makes a new one
};

// The XML (which must pass ParseNetworkXml) with the parts named dropped.
Result<std::string> RewriteNetworkXml(const std::string& xml,
                                      const NetworkRewrite& rewrite);

// As UntrustedDomainProblems, for a network XML from a host agent that a
// restore would create: only <forward> modes nat, route and open (without
// a dev, <interface>, <pf> or <address>) or no <forward> (isolated) are
// allowed; <tftp> (a host folder served), a firewall zone on <bridge> and
// elements of libvirt's network namespaces (dnsmasq options) are problems.
Result<std::vector<std::string>> UntrustedNetworkProblems(
    const std::string& xml);

// ------------------------------------------------------------------- pool

// Storage pool XML (virStoragePoolGetXMLDesc) of this host.
struct PoolInfo {
  std::string name;
  std::string type;  // <pool type=>: dir, fs, netfs, logical, ...
  std::string path;  // <target><path>, "" if absent
};

// InvalidArgument if the root is not <pool> or there is no single <name>.
Result<PoolInfo> ParsePoolXml(const std::string& xml);

// Checkpoint XML: the disks it has a bitmap for.
Result<std::vector<std::string>> ParseCheckpointBitmapDisks(
    const std::string& xml);

// The host CPU model from virConnectGetCapabilities XML ("" if absent).
std::string ParseHostCpuModel(const std::string& capabilities_xml);

// The "+UID:+GID" the host's QEMU processes run as (the DAC security
// model's base label in virConnectGetCapabilities XML, for `virt_type`
// "kvm" or "qemu"); "" if the host does not say.
std::string ParseHostDacLabel(const std::string& capabilities_xml,
                              const std::string& virt_type);

// Escapes text for an XML attribute value.
std::string XmlEscape(const std::string& s);

}  // namespace haven::snapshot

#endif  // HAVEN_SNAPSHOT_DOMAIN_XML_H_
