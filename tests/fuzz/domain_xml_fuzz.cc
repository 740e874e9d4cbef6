// Fuzzes the libvirt XML parsers and rewriters (snapshot/domain_xml.h):
// domain and network XML name paths Haven opens, are kept in backups and are
// rewritten for another host on restore, so they are untrusted input.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "snapshot/domain_xml.h"

namespace {

bool ValidTarget(const std::string& t) {
  return !t.empty() && t.size() <= 64 && t[0] != '.' &&
         t.find('/') == std::string::npos && t.find('\0') == std::string::npos;
}

template <typename T>
bool Unique(const T& v) {
  for (size_t i = 0; i < v.size(); ++i)
    for (size_t j = i + 1; j < v.size(); ++j)
      if (v[i] == v[j]) return false;
  return true;
}

// Internal: what was written does not read back as asked.
template <typename T>
bool IsBug(const haven::Result<T>& r) {
  return r.status().code() == haven::Code::kInternal;
}

bool WellFormedNewMac(const std::string& mac) {
  return mac.size() == 17 && mac.compare(0, 9, "52:54:00:") == 0;
}

// A restore onto a new host: every disk to a new flat file, a new name,
// mapped networks and NVRAM; what comes out must read back as asked.
void FuzzDomainRewrite(const std::string& xml,
                       const haven::snapshot::DomainInfo& info) {
  using haven::snapshot::DomainRewrite;
  DomainRewrite rw;
  rw.name = "fuzz-restored";
  for (const auto& d : info.disks)
    rw.disks.push_back({d.target, "/restore/" + d.target + ".qcow2",
                        d.target.size() % 2 ? "qcow2" : "raw"});
  rw.network_map = {{"default", "fuzz-net"}, {"br0", "br-fuzz"}};
  if (!info.nvram.empty()) rw.nvram_path = "/restore/VARS.fd";
  auto out = haven::snapshot::RewriteDomainXml(xml, rw);
  if (IsBug(out)) __builtin_trap();
  if (out.ok()) {
    if (out->xml.size() > (16u << 20) || !out->macs.empty()) __builtin_trap();
    auto again = haven::snapshot::ParseDomainXml(out->xml);
    if (!again.ok() || again->name != rw.name ||
        again->disks.size() != info.disks.size() ||
        again->interfaces.size() != info.interfaces.size())
      __builtin_trap();
    for (size_t i = 0; i < again->disks.size(); ++i)
      if (again->disks[i].type != "file" ||
          again->disks[i].path != rw.disks[i].path ||
          again->disks[i].format != rw.disks[i].format)
        __builtin_trap();
  }
  DomainRewrite fresh;
  fresh.new_identity = true;
  fresh.identity_seed = xml.substr(0, 64);
  fresh.restored_from = "0123456789abcdef";
  auto renewed = haven::snapshot::RewriteDomainXml(xml, fresh);
  if (IsBug(renewed)) __builtin_trap();
  if (renewed.ok()) {
    if (renewed->macs.size() != info.interfaces.size()) __builtin_trap();
    std::vector<std::string> macs;
    for (const auto& [old, now] : renewed->macs) {
      if (!WellFormedNewMac(now) || now == old) __builtin_trap();
      macs.push_back(now);
    }
    // It reads back with the new UUID and the restore metadata, and the
    // same seed gives the same identity.
    auto back = haven::snapshot::ParseDomainXml(renewed->xml);
    if (!Unique(macs) || !back.ok() || back->uuid != renewed->uuid ||
        renewed->uuid == info.uuid || back->restored_from != fresh.restored_from)
      __builtin_trap();
    auto twice = haven::snapshot::RewriteDomainXml(xml, fresh);
    if (!twice.ok() || twice->uuid != renewed->uuid ||
        twice->macs != renewed->macs)
      __builtin_trap();
  }
}

void FuzzNetwork(const std::string& xml) {
  auto net = haven::snapshot::ParseNetworkXml(xml);
  auto out = haven::snapshot::RewriteNetworkXml(xml, {true, true, true});
  if (IsBug(out)) __builtin_trap();
  if (!net.ok()) {
    if (out.ok()) __builtin_trap();  // the rewrite checks as much
    return;
  }
  if (net->name.empty() || net->name.size() > 64 ||
      net->name.find('/') != std::string::npos ||
      (!net->uuid.empty() && net->uuid.size() != 36) || net->bridge.size() > 15)
    __builtin_trap();
  if (!out.ok()) {
    if (out.status().message().find("16 MiB") == std::string::npos)
      __builtin_trap();
    return;
  }
  auto again = haven::snapshot::ParseNetworkXml(*out);
  if (!again.ok() || again->name != net->name || !again->uuid.empty() ||
      !again->bridge.empty() || !again->mac.empty())
    __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string xml(reinterpret_cast<const char*>(data), size);
  auto info = haven::snapshot::ParseDomainXml(xml);
  if (info.ok()) {
    // What parses must be what the backup relies on.
    if (info->name.empty() || info->uuid.size() != 36) __builtin_trap();
    std::vector<std::string> targets;
    for (const auto& d : info->disks) {
      if (!ValidTarget(d.target)) __builtin_trap();
      targets.push_back(d.target);
      if (!d.pool.empty() && std::find(info->pools.begin(), info->pools.end(),
                                       d.pool) == info->pools.end())
        __builtin_trap();
    }
    if (!Unique(targets) || !Unique(info->networks) || !Unique(info->pools))
      __builtin_trap();
    // Escaped text parses back as the same element content.
    const std::string again =
        "<domain><name>" + haven::snapshot::XmlEscape(info->name) +
        "</name><uuid>" + haven::snapshot::XmlEscape(info->uuid) +
        "</uuid></domain>";
    (void)haven::snapshot::ParseDomainXml(again);
    FuzzDomainRewrite(xml, *info);
  } else if (haven::snapshot::RewriteDomainXml(xml, {}).ok()) {
    __builtin_trap();  // a rewrite reads what ParseDomainXml reads
  }
  FuzzNetwork(xml);
  auto disks = haven::snapshot::ParseCheckpointBitmapDisks(xml);
  (void)disks;
  (void)haven::snapshot::ParseHostCpuModel(xml);
  return 0;
}
