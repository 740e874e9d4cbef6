// Fuzzes the libvirt XML parsers (snapshot/domain_xml.h): domain XML names
// paths Haven opens and is kept in backups, so it is untrusted input.
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
  }
  auto disks = haven::snapshot::ParseCheckpointBitmapDisks(xml);
  (void)disks;
  (void)haven::snapshot::ParseHostCpuModel(xml);
  return 0;
}
