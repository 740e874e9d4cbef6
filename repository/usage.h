// How much a repository holds: its recovery points, what they hold before
// deduplication and compression, and what its packs take on the storage.
// Read-only; what `haven` and havend's /metrics and daily report show.
#ifndef HAVEN_REPOSITORY_USAGE_H_
#define HAVEN_REPOSITORY_USAGE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "repository/repository.h"

namespace haven::repository {

struct RepositoryUsage {
  uint64_t points = 0;         // readable recovery points
  uint64_t logical_bytes = 0;  // sum of their stats.logical_bytes
  uint64_t packs = 0;
  uint64_t stored_bytes = 0;  // sum of the packs' sizes (packs/)
  // Points that could not be read (counted in none of the figures).
  std::vector<std::string> errors;
};

// One listing of packs/ and the points from the catalog (no manifest file
// is read unless the catalog lacks it). Fails only when the backend cannot
// be listed.
Result<RepositoryUsage> MeasureUsage(const Repository& repo);

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_USAGE_H_
