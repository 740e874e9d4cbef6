// GET /api/v1/hosts and GET /api/v1/hosts/{host}/vms: the local libvirt
// host and every host known only from its points (a lost host: what the
// restore wizard starts from), and each host's VMs with the state of
// their last backup.
#include <ctime>
#include <map>
#include <set>

#include "agent/image_backup.h"
#include "appliance/history_queries.h"
#include "appliance/overdue.h"
#include "appliance/point_access.h"
#include "appliance/restore_plans.h"
#include "appliance/routes.h"
#include "base/json.h"
#include "restore/image_restore.h"
#include "snapshot/libvirt_host.h"

namespace haven::appliance {
namespace {

using repository::Manifest;

struct HostPoint {
  std::string repo;
  std::shared_ptr<const Manifest> m;
  std::shared_ptr<OpenRepository> open;
};

// Every VM point of every repository, by host name then VM name, newest
// first within a VM. Repositories that cannot be read go to `errors`.
std::map<std::string, std::map<std::string, std::vector<HostPoint>>>
PointsByHost(Services& s, nlohmann::ordered_json& errors) {
  std::map<std::string, std::map<std::string, std::vector<HostPoint>>> out;
  for (const RepositoryConfig& rc : s.config->repositories) {
    auto open = s.open_repositories->Get(rc.name);
    if (!open.ok()) {
      errors.push_back(open.status().message());
      continue;
    }
    auto list = (*open)->Points();
    if (!list.ok()) {
      errors.push_back(list.status().message());
      continue;
    }
    for (const auto& m : (*list)->points)  // newest first
      if (m->kind == "vm")
        out[m->hostname][m->name].push_back({rc.name, m, *open});
  }
  for (auto& [host, vms] : out)
    for (auto& [vm, points] : vms)
      std::stable_sort(points.begin(), points.end(),
                       [](const HostPoint& a, const HostPoint& b) {
                         return repository::PointBefore(b.m->time, b.m->id,
                                                        a.m->time, a.m->id);
                       });
  return out;
}

// The last backup attempt of VM `name` as the job history has it: the
// jobs helper's tables (jobs, job_items). Nothing while those tables do
// not exist (havend without job history), nor on any error reading them:
// the listing still stands on the points.
std::optional<nlohmann::ordered_json> LastAttempt(StateDb* db,
                                                  const std::string& name) {
  if (!db) return std::nullopt;
  auto have = db->QueryOne(
      "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
      "('jobs', 'job_items')");
  if (!have.ok() || !*have || (*have)->Int(0) != 2) return std::nullopt;
  auto row = db->QueryOne(
      "SELECT j.id, i.outcome, i.error, j.ended_at FROM job_items i JOIN "
      "jobs j ON j.id = i.job_id WHERE i.name = ?1 AND j.kind = 'backup' "
      "ORDER BY j.id DESC LIMIT 1",
      {name});
  if (!row.ok() || !*row) return std::nullopt;
  const SqlRow& r = **row;
  nlohmann::ordered_json j;
  j["job"] = r.Int(0);
  j["outcome"] = r.Text(1);
  j["failed"] = r.Text(1) == "failed";
  if (!r.IsNull(2)) j["error"] = r.Text(2);
  j["ended_at"] = r.IsNull(3) ? nlohmann::ordered_json(nullptr)
                              : nlohmann::ordered_json(r.Text(3));
  return j;
}

// The VMs this host's schedules expect and that have no recent enough
// success, by VM name: the rule the notify monitor alerts with
// (appliance/overdue.h), so the console shows what the mails say.
std::map<std::string, OverdueVm> OverdueByVm(StateDb* db) {
  std::map<std::string, OverdueVm> out;
  if (!db) return out;
  auto known = LoadKnownVms(*db);
  auto schedules = LoadBackupSchedules(*db);
  if (!known.ok() || !schedules.ok()) return out;
  for (OverdueVm& vm : FindOverdueVms(*known, *schedules,
                                      static_cast<int64_t>(std::time(nullptr))))
    out.emplace(vm.vm, std::move(vm));
  return out;
}

nlohmann::ordered_json OverdueJson(const OverdueVm& vm) {
  nlohmann::ordered_json j;
  j["schedule"] = vm.schedule;
  j["repository"] = vm.repository;
  j["last_success"] = vm.last_success
                          ? nlohmann::ordered_json(IsoUtc(*vm.last_success))
                          : nlohmann::ordered_json(nullptr);
  j["expected_interval_seconds"] = vm.expected_interval_seconds;
  j["overdue_since"] = IsoUtc(vm.overdue_since);
  return j;
}

nlohmann::ordered_json LastPoint(const HostPoint& p) {
  return {{"repository", p.repo},
          {"id", p.m->id},
          {"time", p.m->time},
          {"consistency", p.m->consistency},
          {"logical_bytes", p.m->stats.logical_bytes},
          {"new_stored_bytes", p.m->stats.new_stored_bytes}};
}

// host/facts.json of a point (libvirt and hypervisor versions, CPU model,
// URI): null when it has none or it cannot be read.
nlohmann::ordered_json Facts(const HostPoint& p) {
  if (!p.m->FindConfig("host/facts.json")) return nullptr;
  auto text =
      restore::ReadConfigFile(p.open->repo(), *p.m, "host/facts.json", 1 << 20);
  if (!text.ok()) return nullptr;
  if (!JsonNestingWithin(*text)) return nullptr;  // an agent wrote it
  auto j = nlohmann::ordered_json::parse(*text, nullptr, false);
  return j.is_object() ? j : nlohmann::ordered_json(nullptr);
}

Response ListHosts(Services& s) {
  nlohmann::ordered_json errors = nlohmann::ordered_json::array();
  auto by_host = PointsByHost(s, errors);
  const std::string local = agent::HostName();
  nlohmann::ordered_json hosts = nlohmann::ordered_json::array();
  auto host_json = [&](const std::string& name, bool is_local) {
    nlohmann::ordered_json h;
    h["name"] = name;
    h["local"] = is_local;
    size_t points = 0;
    const HostPoint* newest = nullptr;
    auto it = by_host.find(name);
    if (it != by_host.end())
      for (const auto& [vm, list] : it->second) {
        points += list.size();
        if (!newest || repository::PointBefore(newest->m->time, newest->m->id,
                                               list[0].m->time, list[0].m->id))
          newest = &list[0];
      }
    h["vms_with_points"] = it == by_host.end() ? 0 : it->second.size();
    h["points"] = points;
    h["latest_point_time"] = newest ? nlohmann::ordered_json(newest->m->time)
                                    : nlohmann::ordered_json(nullptr);
    if (is_local) {
      h["libvirt_uri"] = s.config->libvirt_uri;
      auto conn = snapshot::LibvirtHost::Connect(s.config->libvirt_uri);
      auto names = conn.ok() ? (*conn)->DomainNames()
                             : Result<std::vector<std::string>>(conn.status());
      h["reachable"] = names.ok();
      if (names.ok())
        h["vms"] = names->size();
      else
        h["error"] = names.status().message();
    } else {
      // Known from its points only: what a rebuild elsewhere needs.
      h["facts"] = newest ? Facts(*newest) : nlohmann::ordered_json(nullptr);
    }
    return h;
  };
  hosts.push_back(host_json(local, true));
  for (const auto& [name, vms] : by_host)
    if (name != local) hosts.push_back(host_json(name, false));
  nlohmann::ordered_json out;
  out["hosts"] = hosts;
  out["errors"] = errors;
  return OkOrdered(out);
}

Response ListVms(Services& s, const ApiCall& call) {
  const std::string host = *call.Param("host");
  nlohmann::ordered_json errors = nlohmann::ordered_json::array();
  auto by_host = PointsByHost(s, errors);
  const std::string local = agent::HostName();
  const bool is_local = host == local;
  auto points = by_host.find(host);
  if (!is_local && points == by_host.end())
    return ErrorJson(404, "no host " + QuoteUntrusted(host) +
                              " is known: it is not this host (" + local +
                              ") and no VM point names it");
  // name -> defined on the host now, active
  std::map<std::string, std::optional<bool>> vms;
  nlohmann::ordered_json out;
  out["host"] = host;
  out["local"] = is_local;
  if (is_local) {
    auto conn = snapshot::LibvirtHost::Connect(s.config->libvirt_uri);
    auto names = conn.ok() ? (*conn)->DomainNames()
                           : Result<std::vector<std::string>>(conn.status());
    if (!names.ok()) {
      out["libvirt_error"] = names.status().message();
    } else {
      for (const std::string& n : *names) {
        auto vm = (*conn)->Lookup(n);
        std::optional<bool> active;
        if (vm.ok()) {
          auto a = (*vm)->Active();
          if (a.ok()) active = *a;
        }
        vms[n] = active;
      }
    }
  }
  std::set<std::string> defined;
  for (const auto& [n, a] : vms) defined.insert(n);
  if (points != by_host.end())
    for (const auto& [vm, list] : points->second)
      if (!vms.count(vm)) vms[vm] = std::nullopt;
  std::map<std::string, OverdueVm> overdue;
  if (is_local) overdue = OverdueByVm(s.db);
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const auto& [name, active] : vms) {
    nlohmann::ordered_json v;
    v["name"] = name;
    v["defined"] = is_local ? nlohmann::ordered_json(defined.count(name) > 0)
                            : nlohmann::ordered_json(nullptr);
    v["state"] = !defined.count(name) ? "unknown"
                 : !active            ? "unknown"
                 : *active            ? "running"
                                      : "shut off";
    const std::vector<HostPoint>* ps = nullptr;
    if (points != by_host.end()) {
      auto it = points->second.find(name);
      if (it != points->second.end()) ps = &it->second;
    }
    v["points"] = ps ? ps->size() : 0;
    v["last_point"] =
        ps ? LastPoint((*ps)[0]) : nlohmann::ordered_json(nullptr);
    auto attempt = is_local ? LastAttempt(s.db, name) : std::nullopt;
    v["last_attempt"] = attempt ? *attempt : nlohmann::ordered_json(nullptr);
    v["last_attempt_failed"] =
        attempt ? nlohmann::ordered_json((*attempt)["failed"])
                : nlohmann::ordered_json(nullptr);
    auto late = overdue.find(name);
    v["overdue"] = late != overdue.end() ? OverdueJson(late->second)
                                         : nlohmann::ordered_json(nullptr);
    list.push_back(std::move(v));
  }
  out["vms"] = list;
  out["errors"] = errors;
  return OkOrdered(out);
}

}  // namespace

std::vector<Route> HostRoutes(Services& s) {
  Route hosts;
  hosts.method = "GET";
  hosts.path = "/api/v1/hosts";
  hosts.access = Access::kRole;
  hosts.role = Role::kAuditor;
  hosts.summary =
      "List hosts: this libvirt host, and every host known only from its "
      "VM points (a lost host, with its recorded facts)";
  hosts.openapi = {
      {"responses",
       {{"200",
         {{"description",
           "{hosts: [{name, local, points, vms_with_points, "
           "latest_point_time, libvirt_uri, reachable, vms (local), facts "
           "(others: host/facts.json of their latest point)}], errors}"}}}}}};
  hosts.handler = [&s](const ApiCall&) { return ListHosts(s); };

  Route vms;
  vms.method = "GET";
  vms.path = "/api/v1/hosts/{host}/vms";
  vms.access = Access::kRole;
  vms.role = Role::kAuditor;
  vms.summary =
      "List a host's VMs (defined ones and those known from points) with "
      "their latest point and whether their last backup attempt failed";
  vms.openapi = {
      {"responses",
       {{"200",
         {{"description",
           "{host, local, vms: [{name, defined, state, points, last_point: "
           "{repository, id, time, consistency, logical_bytes, "
           "new_stored_bytes}, last_attempt: {job, outcome, failed, error, "
           "ended_at} or null without job history, last_attempt_failed, "
           "overdue: {schedule, repository, last_success, "
           "expected_interval_seconds, overdue_since} or null (this host: "
           "a schedule expects it and its last success is older than the "
           "schedule's interval plus grace, as in overdue notifications)}], "
           "libvirt_error, errors}"}}},
        {"404", {{"description", "host unknown"}}}}}};
  vms.handler = [&s](const ApiCall& c) { return ListVms(s, c); };
  return {std::move(hosts), std::move(vms)};
}

}  // namespace haven::appliance
