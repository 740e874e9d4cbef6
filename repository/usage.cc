#include "repository/usage.h"

namespace haven::repository {

Result<RepositoryUsage> MeasureUsage(const Repository& repo) {
  RepositoryUsage usage;
  HAVEN_ASSIGN_OR_RETURN(auto packs, repo.backend().List("packs/"));
  for (const ObjectInfo& pack : packs) {
    ++usage.packs;
    usage.stored_bytes += pack.size;
  }
  HAVEN_ASSIGN_OR_RETURN(auto points, repo.ListSnapshots(&usage.errors));
  for (const Manifest& m : points) {
    ++usage.points;
    usage.logical_bytes += m.stats.logical_bytes;
  }
  return usage;
}

}  // namespace haven::repository
