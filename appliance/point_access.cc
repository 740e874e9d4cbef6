#include "appliance/point_access.h"

#include "base/json.h"
#include "repository/manifest_json.h"

namespace haven::appliance {

namespace {
bool IsHex(const std::string& s) {
  return s.find_first_not_of("0123456789abcdef") == std::string::npos;
}
}  // namespace

Result<FoundPoint> FindPoint(RepositoryCache& cache, const std::string& repo,
                             const std::string& id) {
  if (id.size() < 8 || id.size() > 32 || !IsHex(id))
    return NotFound("no point " + QuoteUntrusted(id) +
                    ": a point id is 8 to 32 lower-case hex digits (a "
                    "prefix of the 32-digit id)");
  HAVEN_ASSIGN_OR_RETURN(std::shared_ptr<OpenRepository> open, cache.Get(repo));
  HAVEN_ASSIGN_OR_RETURN(std::shared_ptr<const PointList> list, open->Points());
  FoundPoint found;
  found.open = open;
  for (const auto& m : list->points) {
    if (m->id.compare(0, id.size(), id) != 0) continue;
    if (found.point)
      return InvalidArgument("point id prefix " + id +
                             " is ambiguous in repository " + repo +
                             "; give more digits");
    found.point = m;
  }
  if (!found.point)
    return NotFound("repository " + repo + " has no point " + id);
  found.is_protected = list->protected_ids.count(found.point->id) > 0;
  return found;
}

std::optional<std::string> ParseKind(std::string_view kind) {
  if (kind == "image" || kind == "vm" || kind == "files")
    return std::string(kind);
  if (kind == "file") return std::string("files");
  return std::nullopt;
}

nlohmann::ordered_json PointSummaryJson(const repository::Manifest& m,
                                        const std::string& repo,
                                        bool is_protected) {
  nlohmann::ordered_json j;
  j["repository"] = repo;
  j["id"] = m.id;
  j["name"] = m.name;
  j["kind"] = m.kind;
  j["time"] = m.time;
  j["hostname"] = m.hostname;
  j["consistency"] = m.consistency;
  j["consistency_reason"] = m.consistency_reason;
  j["logical_bytes"] = m.stats.logical_bytes;
  j["new_stored_bytes"] = m.stats.new_stored_bytes;
  j["disks"] = m.ImageDisks().size();
  j["protected"] = is_protected;
  j["repaired"] = !m.repaired_from.empty();
  if (m.kind == "files") j["partial"] = m.partial;
  if (!m.vm_uuid.empty()) j["vm_uuid"] = m.vm_uuid;
  // The enrolled agent whose namespace holds the point (docs/agents.md).
  if (!m.agent_id.empty()) j["agent_id"] = m.agent_id;
  return j;
}

nlohmann::ordered_json PointDetailJson(const repository::Manifest& m,
                                       const std::string& repo,
                                       bool is_protected) {
  // The point as `haven show --json` prints it, and where it is.
  nlohmann::ordered_json j;
  j["repository"] = repo;
  j["protected"] = is_protected;
  j["tool"] = m.tool;
  j.update(repository::ManifestJson(m));
  return j;
}

Response OkOrdered(const nlohmann::ordered_json& body) {
  return Response::Json(200, DumpJson(body));
}

}  // namespace haven::appliance
