// The one rule for "the latest point of NAME", behind the parent of the
// next backup (VM and file backups) and `restore host --all`. (The
// NAME:latest spec of FindSnapshot follows the same order.)
//
//   candidates: the points named NAME (every name, for LatestPoints), of
//               `kind` when it is not empty ("vm", "files", "image")
//   latest:     the newest by recorded time (TimeBefore: as instants,
//               fractions count); equal times go to the greater id
//               (PointBefore, catalog.h: the order ListSnapshots lists in
//               and FindSnapshot's NAME:latest picks by)
//   unreadable: a manifest that cannot be read may be the newest, so
//               kRefuse returns DataLoss naming it; kSkip chooses among
//               the readable ones (right for a parent, which only saves
//               reading)
#ifndef HAVEN_REPOSITORY_LATEST_POINT_H_
#define HAVEN_REPOSITORY_LATEST_POINT_H_

#include <optional>
#include <string>
#include <vector>

#include "repository/repository.h"

namespace haven::repository {

enum class Unreadable { kRefuse, kSkip };

// Every name's latest point among `points` (any order), of `kind` when not
// empty, sorted by name.
std::vector<Manifest> ChooseLatestPoints(std::vector<Manifest> points,
                                         const std::string& kind);

// The latest point of `name`; nullopt when it has none. Chosen among the
// catalog's summaries (Repository::ListSummaries): one manifest is opened,
// not every point's, so the start of an incremental backup does not grow
// with the number of points.
Result<std::optional<Manifest>> LatestPoint(const Repository& repo,
                                            const std::string& name,
                                            const std::string& kind,
                                            Unreadable unreadable);

// The latest point of every name, sorted by name; opens only those.
Result<std::vector<Manifest>> LatestPoints(const Repository& repo,
                                           const std::string& kind,
                                           Unreadable unreadable);

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_LATEST_POINT_H_
