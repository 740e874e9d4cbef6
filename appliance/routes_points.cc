// GET /api/v1/points and GET /api/v1/points/{repo}/{id}: recovery points,
// listed newest first with filters and paging, and one point in full.
#include <algorithm>
#include <cstdlib>
#include <map>
#include <set>

#include "appliance/point_access.h"
#include "appliance/routes.h"
#include "base/json.h"
#include "base/time.h"
#include "restore/image_restore.h"
#include "restore/verify_restore.h"

namespace haven::appliance {
namespace {

using repository::Manifest;

constexpr int kDefaultLimit = 100;
constexpr int kMaxLimit = 1000;
constexpr size_t kMaxConfigBytes = 4 << 20;  // one config file in a show

struct Filter {
  std::vector<std::string> repositories;
  std::string vm, agent, kind, before;
  std::optional<IsoInstant> since, until;
  int limit = kDefaultLimit;
};

// The filter of a points listing; InvalidArgument names the bad parameter.
Result<Filter> ParseFilter(const ApiCall& call, const ApplianceConfig& config) {
  static const std::set<std::string> kKnown = {
      "repository", "vm", "agent", "kind", "since", "until", "limit", "before"};
  for (const auto& [name, value] : call.query)
    if (!kKnown.count(name))
      return InvalidArgument("unknown query parameter " + QuoteUntrusted(name) +
                             "; the filters are repository, vm, agent, "
                             "kind, since, until, limit, before");
  Filter f;
  if (const std::string* r = call.Query("repository")) {
    if (!config.FindRepository(*r))
      return NotFound("no repository called " + QuoteUntrusted(*r) +
                      " is configured");
    f.repositories.push_back(*r);
  } else {
    for (const RepositoryConfig& r : config.repositories)
      f.repositories.push_back(r.name);
  }
  if (const std::string* v = call.Query("vm")) f.vm = *v;
  if (const std::string* a = call.Query("agent")) f.agent = *a;
  if (const std::string* k = call.Query("kind")) {
    auto kind = ParseKind(*k);
    if (!kind)
      return InvalidArgument("kind must be image, vm or file, not " +
                             QuoteUntrusted(*k));
    f.kind = *kind;
  }
  for (const char* name : {"since", "until"})
    if (const std::string* t = call.Query(name)) {
      auto instant = ParseIsoInstant(*t);
      if (!instant.ok())
        return InvalidArgument(std::string(name) + ": " +
                               instant.status().message());
      (std::string_view(name) == "since" ? f.since : f.until) = *instant;
    }
  if (const std::string* l = call.Query("limit")) {
    char* end = nullptr;
    long n = l->empty() ? 0 : std::strtol(l->c_str(), &end, 10);
    if (l->empty() || *end != '\0' || n < 1 || n > kMaxLimit)
      return InvalidArgument("limit must be a number from 1 to " +
                             std::to_string(kMaxLimit) + ", not " +
                             QuoteUntrusted(*l));
    f.limit = static_cast<int>(n);
  }
  if (const std::string* b = call.Query("before")) {
    if (!repository::IsSnapshotId(*b))
      return InvalidArgument(
          "before must be a point id (32 hex digits), "
          "not " +
          QuoteUntrusted(*b));
    f.before = *b;
  }
  return f;
}

bool Matches(const Filter& f, const Manifest& m) {
  if (!f.vm.empty() && m.name != f.vm) return false;
  if (!f.agent.empty() && m.hostname != f.agent) return false;
  if (!f.kind.empty() && m.kind != f.kind) return false;
  if (f.since || f.until) {
    auto t = ParseIsoInstant(m.time);
    if (!t.ok()) return false;  // a point with no readable time: unplaced
    if (f.since && *t < *f.since) return false;
    if (f.until && *f.until < *t) return false;
  }
  return true;
}

Response ShowScreenshot(Services& s, const ApiCall& call) {
  auto found =
      FindPoint(*s.open_repositories, *call.Param("repo"), *call.Param("id"));
  if (!found.ok()) return StatusResponse(found.status());
  auto png =
      restore::VerificationScreenshot(found->open->repo(), found->point->id);
  if (!png.ok()) return StatusResponse(png.status());
  Response r;
  r.status = 200;
  r.headers.push_back({"Content-Type", "image/png"});
  r.body = std::move(*png);
  return r;
}

Response ListPoints(Services& s, const ApiCall& call) {
  auto filter = ParseFilter(call, *s.config);
  if (!filter.ok()) return StatusResponse(filter.status());
  // Pointers into the lists kept alive in `lists`: a listing of 10,000
  // points copies no string and touches no reference count per point.
  struct Found {
    const std::string* repo;
    const Manifest* m;
    const PointList* list;
  };
  std::vector<std::shared_ptr<const PointList>> lists;
  std::map<std::string, std::shared_ptr<OpenRepository>> opened;
  std::vector<Found> found;
  nlohmann::ordered_json errors = nlohmann::ordered_json::array();
  nlohmann::ordered_json listed = nlohmann::ordered_json::object();
  for (const std::string& name : filter->repositories) {
    auto open = s.open_repositories->Get(name);
    if (!open.ok()) {
      // One repository down does not hide the others' points.
      if (filter->repositories.size() > 1) {
        errors.push_back(open.status().message());
        continue;
      }
      return StatusResponse(open.status());
    }
    opened[name] = *open;
    auto list = (*open)->Points();
    if (!list.ok()) return StatusResponse(list.status());
    const PointList* l = list->get();
    lists.push_back(std::move(*list));
    listed[name] = l->listed_at;
    for (const std::string& e : l->errors)
      errors.push_back(name + ": unreadable point " + e);
    for (const auto& m : l->points)
      if (Matches(*filter, *m)) found.push_back({&name, m.get(), l});
  }
  // Each repository's list is newest first already; only points of
  // several need merging.
  if (filter->repositories.size() > 1)
    std::stable_sort(found.begin(), found.end(),
                     [](const Found& a, const Found& b) {
                       return repository::PointBefore(b.m->time, b.m->id,
                                                      a.m->time, a.m->id);
                     });
  size_t start = 0;
  if (!filter->before.empty()) {
    auto it = std::find_if(found.begin(), found.end(), [&](const Found& f) {
      return f.m->id == filter->before;
    });
    if (it == found.end())
      return ErrorJson(400, "before: no point " + filter->before +
                                " among the points this filter lists");
    start = static_cast<size_t>(it - found.begin()) + 1;
  }
  nlohmann::ordered_json out;
  out["points"] = nlohmann::ordered_json::array();
  size_t end = std::min(found.size(), start + filter->limit);
  // The last verified restore of each VM point of this page (haven
  // verify-restore), for the console's column: one listing of verified/
  // per repository, and a read only for the points that have a record.
  std::map<std::string, std::set<std::string>> verified;
  for (size_t i = start; i < end; ++i) {
    out["points"].push_back(PointSummaryJson(
        *found[i].m, *found[i].repo,
        found[i].list->protected_ids.count(found[i].m->id) > 0));
    if (found[i].m->kind != "vm") continue;
    const repository::Repository& repo = opened[*found[i].repo]->repo();
    if (!verified.count(*found[i].repo)) {
      auto ids = repo.VerifiedIds();
      verified[*found[i].repo] = ids.ok() ? *ids : std::set<std::string>();
    }
    out["points"].back()["verified"] =
        verified[*found[i].repo].count(found[i].m->id)
            ? nlohmann::ordered_json(
                  restore::VerificationSummary(repo, found[i].m->id))
            : nlohmann::ordered_json(nullptr);
  }
  out["total"] = found.size();
  out["next_before"] = end < found.size() && end > start
                           ? nlohmann::ordered_json(found[end - 1].m->id)
                           : nlohmann::ordered_json(nullptr);
  out["listed_at"] = listed;
  out["errors"] = errors;
  return OkOrdered(out);
}

Response ShowPoint(Services& s, const ApiCall& call) {
  auto found =
      FindPoint(*s.open_repositories, *call.Param("repo"), *call.Param("id"));
  if (!found.ok()) return StatusResponse(found.status());
  const Manifest& m = *found->point;
  nlohmann::ordered_json j =
      PointDetailJson(m, *call.Param("repo"), found->is_protected);
  if (m.kind == "vm")
    j["verified"] = restore::VerificationSummary(found->open->repo(), m.id);
  // The configuration a rebuild needs, read from the point (each file's
  // chunks authenticated as a restore reads them).
  nlohmann::ordered_json configs = nlohmann::ordered_json::object();
  nlohmann::ordered_json networks = nlohmann::ordered_json::object();
  nlohmann::ordered_json config_errors = nlohmann::ordered_json::array();
  for (const auto* c : m.ConfigFiles()) {
    const bool network = c->name.rfind("networks/", 0) == 0;
    if (c->name != "domain.xml" && c->name != "domain-inactive.xml" &&
        c->name != "host/facts.json" && !network)
      continue;
    auto text = restore::ReadConfigFile(found->open->repo(), m, c->name,
                                        kMaxConfigBytes);
    if (!text.ok()) {
      config_errors.push_back(c->name + ": " + text.status().message());
      continue;
    }
    if (network) {
      std::string net = c->name.substr(9);
      if (net.size() > 4 && net.compare(net.size() - 4, 4, ".xml") == 0)
        net.resize(net.size() - 4);
      networks[net] = *text;
    } else if (c->name == "host/facts.json") {
      // An agent wrote this file: parsed only when it nests sanely.
      auto facts = JsonNestingWithin(*text)
                       ? nlohmann::ordered_json::parse(*text, nullptr, false)
                       : nlohmann::ordered_json();
      if (facts.is_object())
        j["host_facts"] = facts;
      else
        config_errors.push_back(c->name + ": not a JSON object");
    } else {
      configs[c->name] = *text;
    }
  }
  j["domain_xml"] = configs.contains("domain.xml")
                        ? configs["domain.xml"]
                        : nlohmann::ordered_json(nullptr);
  if (configs.contains("domain-inactive.xml"))
    j["domain_inactive_xml"] = configs["domain-inactive.xml"];
  j["network_xml"] = networks;
  if (!config_errors.empty()) j["config_errors"] = config_errors;
  return OkOrdered(j);
}

nlohmann::json PointSchemaRef() {
  return {{"type", "object"},
          {"description",
           "id, repository, name, kind (image|vm|files), time, hostname, "
           "consistency, consistency_reason, logical_bytes, "
           "new_stored_bytes, disks, protected, repaired"}};
}

nlohmann::json QueryParam(const char* name, const char* description,
                          const char* type = "string") {
  return {{"name", name},
          {"in", "query"},
          {"required", false},
          {"description", description},
          {"schema", {{"type", type}}}};
}

}  // namespace

std::vector<Route> PointRoutes(Services& s) {
  std::vector<Route> routes;
  Route list;
  list.method = "GET";
  list.path = "/api/v1/points";
  list.access = Access::kRole;
  list.role = Role::kAuditor;
  list.summary =
      "List recovery points of every configured repository, newest first, "
      "with filters and paging";
  list.openapi = {
      {"parameters",
       {QueryParam("repository", "only this repository"),
        QueryParam("vm", "only points of this backup name (VM, image)"),
        QueryParam("agent", "only points taken on this host (hostname)"),
        QueryParam("kind", "image, vm or file"),
        QueryParam("since",
                   "only points at or after this UTC time "
                   "(YYYY-MM-DDTHH:MM:SSZ)"),
        QueryParam("until", "only points at or before this UTC time"),
        QueryParam("limit", "points per page, 1-1000 (default 100)", "integer"),
        QueryParam("before",
                   "paging: the points after this id (next_before of the "
                   "previous page)")}},
      {"responses",
       {{"200",
         {{"description",
           "{points: [...], total, next_before (null on the last page), "
           "listed_at: {repository: time of its listing}, errors: [...]}"},
          {"content",
           {{"application/json",
             {{"schema",
               {{"type", "object"},
                {"properties",
                 {{"points", {{"type", "array"}, {"items", PointSchemaRef()}}},
                  {"total", {{"type", "integer"}}},
                  {"next_before",
                   {{"type", "string"}, {"nullable", true}}}}}}}}}}}}},
        {"400", {{"description", "a bad filter, named in the error"}}},
        {"404", {{"description", "repository not configured"}}}}}};
  list.handler = [&s](const ApiCall& c) { return ListPoints(s, c); };
  routes.push_back(std::move(list));

  Route show;
  show.method = "GET";
  show.path = "/api/v1/points/{repo}/{id}";
  show.access = Access::kRole;
  show.role = Role::kAuditor;
  show.summary =
      "One recovery point: disks, config files, consistency level and "
      "reason, sizes, notes, and its domain XML, network XML and host facts";
  show.openapi = {
      {"responses",
       {{"200",
         {{"description",
           "the listing's fields plus disks [{name, source, capture, size, "
           "chunk_size, chunks, lost_bytes}], config_files, parent, tool, "
           "notes, stats, domain_xml, network_xml {name: xml}, host_facts"}}},
        {"400", {{"description", "an id prefix several points share"}}},
        {"404",
         {{"description",
           "no such repository or point (also an id that is not 8-32 hex "
           "digits)"}}}}}};
  show.handler = [&s](const ApiCall& c) { return ShowPoint(s, c); };
  routes.push_back(std::move(show));
  Route shot;
  shot.method = "GET";
  shot.path = "/api/v1/points/{repo}/{id}/screenshot";
  shot.access = Access::kRole;
  shot.role = Role::kAuditor;
  shot.summary =
      "The screen of the point's last verified restore (haven "
      "verify-restore), as a PNG";
  shot.openapi = {
      {"responses",
       {{"200", {{"description", "image/png"}}},
        {"404",
         {{"description",
           "no such repository or point, or it has no screenshot"}}}}}};
  shot.handler = [&s](const ApiCall& c) { return ShowScreenshot(s, c); };
  routes.push_back(std::move(shot));
  return routes;
}

}  // namespace haven::appliance
