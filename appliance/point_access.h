// What the read-side routes (routes_points.cc, routes_files.cc,
// routes_hosts.cc, routes_repositories.cc) share: finding a point of a
// configured repository, and a point as JSON.
//
// Points are untrusted data (a manifest is written by whoever holds the
// passphrase, its strings by guests and hosts): they only ever go into
// JSON bodies, which escape them, never into headers or log lines as
// they are.
#ifndef HAVEN_APPLIANCE_POINT_ACCESS_H_
#define HAVEN_APPLIANCE_POINT_ACCESS_H_

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "appliance/http_message.h"
#include "appliance/repository_cache.h"
#include "repository/manifest.h"

namespace haven::appliance {

struct FoundPoint {
  std::shared_ptr<OpenRepository> open;
  std::shared_ptr<const repository::Manifest> point;
  bool is_protected = false;
};

// The point `id` (32 hex digits, or an unambiguous prefix of at least 8)
// of repository `repo`. NotFound (404) for an unknown repository or point
// and for an id that cannot be one (not hex, too short: no point has it);
// InvalidArgument (400) for a prefix that several points share.
Result<FoundPoint> FindPoint(RepositoryCache& cache, const std::string& repo,
                             const std::string& id);

// "image", "vm", "files" as the API names them ("file" taken for
// "files"); nullopt for anything else.
std::optional<std::string> ParseKind(std::string_view kind);

// A point for listings: id, name, kind, time, host, consistency, sizes,
// and agent_id for a point an enrolled agent committed.
nlohmann::ordered_json PointSummaryJson(const repository::Manifest& m,
                                        const std::string& repo,
                                        bool is_protected);
// Everything a point records: the summary, its disks and config files,
// notes, stats, repair, file-backup paths. Config contents are added by
// the show route (they cost reads).
nlohmann::ordered_json PointDetailJson(const repository::Manifest& m,
                                       const std::string& repo,
                                       bool is_protected);

// 200 with `body` as JSON text, keys in the order they were set.
Response OkOrdered(const nlohmann::ordered_json& body);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_POINT_ACCESS_H_
