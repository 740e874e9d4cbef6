// GET /api/v1/hosts/{host}/networks and GET /api/v1/hosts/{host}/pools:
// the libvirt networks and storage pools of this host, which a restore can
// attach a VM to or put its disks in (the restore wizard's network mapping
// and storage choice). Only this host is answered: a host known only from
// its points has no libvirt to ask, and host agents do not exist yet.
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <algorithm>
#include <cstdlib>
#include <memory>

#include "agent/image_backup.h"
#include "appliance/point_access.h"
#include "appliance/routes.h"
#include "snapshot/domain_xml.h"
#include "snapshot/libvirt_host.h"

namespace haven::appliance {
namespace {

struct NetworkFree {
  void operator()(virNetworkPtr n) const { virNetworkFree(n); }
};
struct PoolFree {
  void operator()(virStoragePoolPtr p) const { virStoragePoolFree(p); }
};
using NetworkPtr = std::unique_ptr<virNetwork, NetworkFree>;
using PoolPtr = std::unique_ptr<virStoragePool, PoolFree>;

std::string Take(char* s) {
  std::string out = s ? s : "";
  std::free(s);
  return out;
}

// The <forward mode=> of a network's XML as libvirt writes it: "isolated"
// without <forward>, "nat" for a <forward> without a mode (libvirt's
// default). The XML comes from this host's libvirtd, which escapes every
// '<' in names and text, so "<forward" only starts that element.
std::string ForwardMode(const std::string& xml) {
  size_t at = 0;
  while ((at = xml.find("<forward", at)) != std::string::npos) {
    const size_t after = at + 8;
    if (after < xml.size() &&
        (xml[after] == ' ' || xml[after] == '>' || xml[after] == '/' ||
         xml[after] == '\n' || xml[after] == '\t'))
      break;
    at = after;
  }
  if (at == std::string::npos) return "isolated";
  const size_t end = xml.find('>', at);
  const std::string tag =
      xml.substr(at, end == std::string::npos ? std::string::npos : end - at);
  const size_t mode = tag.find(" mode=");
  if (mode == std::string::npos || mode + 7 >= tag.size()) return "nat";
  const char quote = tag[mode + 6];
  const size_t close = tag.find(quote, mode + 7);
  if ((quote != '\'' && quote != '"') || close == std::string::npos)
    return "nat";
  return tag.substr(mode + 7, close - mode - 7);
}

// A connection to this host's libvirt, or the error answer: 404 for any
// host but this one.
Result<snapshot::ConnPtr> Open(Services& s, const std::string& host) {
  const std::string local = agent::HostName();
  if (host != local)
    return NotFound("host " + QuoteUntrusted(host) + " is not this host (" +
                    local +
                    "): only this host's networks and storage pools can be "
                    "listed (no host agents are enrolled)");
  virSetErrorFunc(nullptr, [](void*, virErrorPtr) {});
  snapshot::ConnPtr conn(virConnectOpen(s.config->libvirt_uri.c_str()));
  if (!conn)
    return snapshot::LibvirtError("cannot connect to libvirt at " +
                                  s.config->libvirt_uri +
                                  " (is libvirtd running?)");
  return conn;
}

Response ListNetworks(Services& s, const ApiCall& c) {
  const std::string host = *c.Param("host");
  auto conn = Open(s, host);
  if (!conn.ok()) return StatusResponse(conn.status());
  virNetworkPtr* nets = nullptr;
  const int n = virConnectListAllNetworks(conn->get(), &nets, 0);
  if (n < 0) return StatusResponse(snapshot::LibvirtError("listing networks"));
  std::vector<NetworkPtr> held;
  for (int i = 0; i < n; ++i) held.emplace_back(nets[i]);
  std::free(nets);
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const NetworkPtr& net : held) {
    const char* name = virNetworkGetName(net.get());
    if (!name) continue;
    int autostart = 0;
    if (virNetworkGetAutostart(net.get(), &autostart) < 0) autostart = 0;
    nlohmann::ordered_json j;
    j["name"] = name;
    j["active"] = virNetworkIsActive(net.get()) == 1;
    j["autostart"] = autostart == 1;
    j["bridge"] = Take(virNetworkGetBridgeName(net.get()));
    j["forward"] = ForwardMode(Take(virNetworkGetXMLDesc(net.get(), 0)));
    list.push_back(std::move(j));
  }
  std::sort(list.begin(), list.end(),
            [](const auto& a, const auto& b) { return a["name"] < b["name"]; });
  nlohmann::ordered_json out;
  out["host"] = host;
  out["networks"] = std::move(list);
  return OkOrdered(out);
}

Response ListPools(Services& s, const ApiCall& c) {
  const std::string host = *c.Param("host");
  auto conn = Open(s, host);
  if (!conn.ok()) return StatusResponse(conn.status());
  virStoragePoolPtr* pools = nullptr;
  const int n = virConnectListAllStoragePools(conn->get(), &pools, 0);
  if (n < 0)
    return StatusResponse(snapshot::LibvirtError("listing storage pools"));
  std::vector<PoolPtr> held;
  for (int i = 0; i < n; ++i) held.emplace_back(pools[i]);
  std::free(pools);
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const PoolPtr& pool : held) {
    const char* name = virStoragePoolGetName(pool.get());
    if (!name) continue;
    auto info =
        snapshot::ParsePoolXml(Take(virStoragePoolGetXMLDesc(pool.get(), 0)));
    const bool active = virStoragePoolIsActive(pool.get()) == 1;
    nlohmann::ordered_json j;
    j["name"] = name;
    j["active"] = active;
    j["type"] = info.ok() ? info->type : "";
    j["path"] = info.ok() ? info->path : "";
    // What PlanVmRestore accepts as `pool` (LibvirtHost::PoolFolder).
    const bool folder =
        info.ok() &&
        (info->type == "dir" || info->type == "fs" || info->type == "netfs") &&
        !info->path.empty() && info->path[0] == '/';
    j["usable"] = active && folder;
    j["why_not"] =
        !info.ok() ? info.status().message()
        : !folder  ? "not a folder pool (dir, fs or netfs)"
        : !active  ? "not active (virsh pool-start " + std::string(name) + ")"
                   : "";
    list.push_back(std::move(j));
  }
  std::sort(list.begin(), list.end(),
            [](const auto& a, const auto& b) { return a["name"] < b["name"]; });
  nlohmann::ordered_json out;
  out["host"] = host;
  out["pools"] = std::move(list);
  return OkOrdered(out);
}

Route Get(Services& s, const char* path, const char* summary,
          const char* answer, Response (*fn)(Services&, const ApiCall&)) {
  Route r;
  r.method = "GET";
  r.path = path;
  r.access = Access::kRole;
  r.role = Role::kAuditor;
  r.summary = summary;
  r.openapi = {{"responses",
                {{"200", {{"description", answer}}},
                 {"404", {{"description", "not this host"}}},
                 {"503", {{"description", "libvirt cannot be reached"}}}}}};
  r.handler = [&s, fn](const ApiCall& c) { return fn(s, c); };
  return r;
}

}  // namespace

std::vector<Route> HostResourceRoutes(Services& s) {
  return {
      Get(s, "/api/v1/hosts/{host}/networks",
          "This host's libvirt networks, which a restored VM can be "
          "attached to (network_map of a restore plan)",
          "{host, networks: [{name, active, autostart, bridge, forward "
          "(nat, route, bridge, open, isolated, ...)}]}",
          ListNetworks),
      Get(s, "/api/v1/hosts/{host}/pools",
          "This host's libvirt storage pools; a restore puts disks in a "
          "usable one (pool of a restore plan)",
          "{host, pools: [{name, active, type, path, usable (an active "
          "folder pool), why_not}]}",
          ListPools),
  };
}

}  // namespace haven::appliance
