// GET /api/v1/repositories: the configured repositories with their points,
// sizes and free space.
#include <sys/statvfs.h>

#include <chrono>
#include <map>
#include <mutex>

#include "appliance/point_access.h"
#include "appliance/routes.h"
#include "base/time.h"

namespace haven::appliance {
namespace {

// Stored bytes are the sizes of every pack (one listing of packs/, which
// grows with the repository), so they are kept for kStoredFresh and the
// answer says when they were counted. Everything else is read each time.
constexpr std::chrono::seconds kStoredFresh{60};

struct StoredFigure {
  uint64_t bytes = 0, packs = 0;
  std::string counted_at;  // ISO time
  std::chrono::steady_clock::time_point at;
  std::string points_key;  // the point listing it was counted beside
};

class StoredBytesCache {
 public:
  // A figure is reused for kStoredFresh, and only while the points are
  // those it was counted beside (`points_key`): a point added or removed
  // (a backup, forget or gc) has the packs counted again, so the stored
  // bytes never lag behind the points shown with them.
  Result<StoredFigure> Get(const std::string& name,
                           const repository::Repository& repo,
                           const std::string& points_key) {
    {
      std::lock_guard lock(mu_);
      auto it = figures_.find(name);
      if (it != figures_.end() && it->second.points_key == points_key &&
          std::chrono::steady_clock::now() - it->second.at < kStoredFresh)
        return it->second;
    }
    HAVEN_ASSIGN_OR_RETURN(std::vector<repository::ObjectInfo> packs,
                           repo.backend().List("packs/"));
    StoredFigure f;
    for (const auto& p : packs) f.bytes += p.size;
    f.packs = packs.size();
    f.counted_at = NowIso8601();
    f.at = std::chrono::steady_clock::now();
    f.points_key = points_key;
    std::lock_guard lock(mu_);
    figures_[name] = f;
    return f;
  }

 private:
  std::mutex mu_;
  std::map<std::string, StoredFigure> figures_;
};

nlohmann::ordered_json RepositoryJson(Services& s, StoredBytesCache& stored,
                                      const RepositoryConfig& rc) {
  nlohmann::ordered_json j;
  j["name"] = rc.name;
  j["path"] = rc.path;
  struct statvfs fs;
  if (statvfs(rc.path.c_str(), &fs) == 0) {
    j["free_bytes"] = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
    j["filesystem_bytes"] = static_cast<uint64_t>(fs.f_blocks) * fs.f_frsize;
  } else {
    j["free_bytes"] = nullptr;
  }
  auto open = s.open_repositories->Get(rc.name);
  if (!open.ok()) {
    j["error"] = open.status().message();
    return j;
  }
  const repository::Repository& repo = (*open)->repo();
  j["id"] = repo.config().id;
  auto list = (*open)->Points();
  if (!list.ok()) {
    j["error"] = list.status().message();
    return j;
  }
  uint64_t logical = 0;
  std::map<std::string, uint64_t> kinds;
  for (const auto& m : (*list)->points) {
    logical += m->stats.logical_bytes;
    ++kinds[m->kind];
  }
  j["points"] = (*list)->points.size();
  j["points_by_kind"] = kinds;
  j["unreadable_points"] = (*list)->errors.size();
  j["latest_point_time"] =
      (*list)->points.empty()
          ? nlohmann::ordered_json(nullptr)
          : nlohmann::ordered_json((*list)->points[0]->time);
  j["logical_bytes"] = logical;
  j["points_listed_at"] = (*list)->listed_at;
  auto figure =
      stored.Get(rc.name, repo,
                 std::to_string((*list)->points.size()) + "/" +
                     ((*list)->points.empty() ? "" : (*list)->points[0]->id));
  if (figure.ok()) {
    j["stored_bytes"] = figure->bytes;
    j["packs"] = figure->packs;
    j["stored_counted_at"] = figure->counted_at;
    // logical / stored: what deduplication and compression save.
    j["reduction_ratio"] =
        figure->bytes == 0 ? 0.0 : static_cast<double>(logical) / figure->bytes;
  } else {
    j["stored_bytes"] = nullptr;
    j["error"] = figure.status().message();
  }
  return j;
}

}  // namespace

std::vector<Route> RepositoryRoutes(Services& s) {
  auto stored = std::make_shared<StoredBytesCache>();
  Route list;
  list.method = "GET";
  list.path = "/api/v1/repositories";
  list.access = Access::kRole;
  list.role = Role::kAuditor;
  list.summary =
      "List the configured repositories: id, points, logical and stored "
      "bytes, free space of their file system";
  list.openapi = {
      {"responses",
       {{"200",
         {{"description",
           "{repositories: [{name, path, id, points, points_by_kind, "
           "unreadable_points, latest_point_time, logical_bytes (sum of the "
           "points' sizes), stored_bytes (sum of the packs' sizes, counted "
           "at stored_counted_at, at most 60 s ago), packs, reduction_ratio, "
           "free_bytes, filesystem_bytes, error (when it cannot be "
           "opened)}]}"}}}}}};
  list.handler = [&s, stored](const ApiCall&) {
    nlohmann::ordered_json out;
    out["repositories"] = nlohmann::ordered_json::array();
    for (const RepositoryConfig& rc : s.config->repositories)
      out["repositories"].push_back(RepositoryJson(s, *stored, rc));
    return OkOrdered(out);
  };
  return {std::move(list)};
}

}  // namespace haven::appliance
