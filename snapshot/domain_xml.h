// snapshot/: what Haven needs to know of a libvirt domain, parsed from its
// XML with libxml2. The XML comes from libvirt, but it names paths Haven
// will open and is kept in backups, so it is treated as untrusted: a parse
// error, a missing target or an implausible value is an error naming it.
#ifndef HAVEN_SNAPSHOT_DOMAIN_XML_H_
#define HAVEN_SNAPSHOT_DOMAIN_XML_H_

#include <string>
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

struct DomainInfo {
  std::string name, uuid;
  std::vector<DomainDisk> disks;
  std::vector<std::string> networks;  // <interface type='network'> sources
  std::vector<std::string> pools;     // pools named by volume disks
  std::string nvram;                  // <os><nvram> path
  std::string dac_label;              // "+UID:+GID" the QEMU process runs as
};

Result<DomainInfo> ParseDomainXml(const std::string& xml);

// Checkpoint XML: the disks it has a bitmap for.
Result<std::vector<std::string>> ParseCheckpointBitmapDisks(
    const std::string& xml);

// The host CPU model from virConnectGetCapabilities XML ("" if absent).
std::string ParseHostCpuModel(const std::string& capabilities_xml);

// Escapes text for an XML attribute value.
std::string XmlEscape(const std::string& s);

}  // namespace haven::snapshot

#endif  // HAVEN_SNAPSHOT_DOMAIN_XML_H_
