// GET /api/v1/hosts/{host}/networks and GET /api/v1/hosts/{host}/pools:
// the libvirt networks and storage pools of this host, which a restore can
// attach a VM to or put its disks in (the restore wizard's network mapping
// and storage choice). Only this host is answered: a host known only from
// its points has no libvirt to ask, and host agents do not exist yet.
#include "agent/image_backup.h"
#include "appliance/point_access.h"
#include "appliance/routes.h"
#include "snapshot/libvirt_host.h"

namespace haven::appliance {
namespace {

// A connection to this host's libvirt, or the error answer: 404 for any
// host but this one.
Result<std::unique_ptr<snapshot::LibvirtHost>> Open(Services& s,
                                                    const std::string& host) {
  const std::string local = agent::HostName();
  if (host != local)
    return NotFound("host " + QuoteUntrusted(host) + " is not this host (" +
                    local +
                    "): only this host's networks and storage pools can be "
                    "listed (no host agents are enrolled)");
  return snapshot::LibvirtHost::Connect(s.config->libvirt_uri);
}

Response ListNetworks(Services& s, const ApiCall& c) {
  const std::string host = *c.Param("host");
  auto conn = Open(s, host);
  if (!conn.ok()) return StatusResponse(conn.status());
  auto networks = (*conn)->Networks();
  if (!networks.ok()) return StatusResponse(networks.status());
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const auto& net : *networks) {
    nlohmann::ordered_json j;
    j["name"] = net.name;
    j["active"] = net.active;
    j["autostart"] = net.autostart;
    j["bridge"] = net.info.ok() ? net.info.value().bridge : "";
    j["forward"] = net.info.ok() ? net.info.value().forward : "";
    if (!net.info.ok()) j["error"] = net.info.status().message();
    list.push_back(std::move(j));
  }
  nlohmann::ordered_json out;
  out["host"] = host;
  out["networks"] = std::move(list);
  return OkOrdered(out);
}

Response ListPools(Services& s, const ApiCall& c) {
  const std::string host = *c.Param("host");
  auto conn = Open(s, host);
  if (!conn.ok()) return StatusResponse(conn.status());
  auto pools = (*conn)->Pools();
  if (!pools.ok()) return StatusResponse(pools.status());
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const auto& pool : *pools) {
    // What a restore plan accepts as `pool` (LibvirtHost::PoolFolder).
    auto folder = snapshot::FolderOfPool(pool.name, pool.active, pool.info);
    nlohmann::ordered_json j;
    j["name"] = pool.name;
    j["active"] = pool.active;
    j["type"] = pool.info.ok() ? pool.info.value().type : "";
    j["path"] = pool.info.ok() ? pool.info.value().path : "";
    j["usable"] = folder.ok();
    j["why_not"] = folder.ok() ? "" : folder.status().message();
    list.push_back(std::move(j));
  }
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
          "(nat, route, bridge, open, isolated, ...), error (when its XML "
          "does not read)}]}",
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
