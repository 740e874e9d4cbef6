// Verifying a repository: that every recovery point can be restored.
//
// Structure (always): every manifest decrypts and parses; every chunk-list
// node is readable and authentic; every chunk a recovery point names is in
// the index; every index entry lies inside an existing pack.
// Read data (optional, a percentage of packs chosen at random): every blob
// of those packs is decrypted, decompressed and its keyed id recomputed.
//
// A finding names what is damaged (pack, chunk) and what that affects: the
// recovery points, disks and image offsets that reference it.
#ifndef HAVEN_REPOSITORY_CHECK_H_
#define HAVEN_REPOSITORY_CHECK_H_

#include <nlohmann/json.hpp>
#include <functional>
#include <string>
#include <unordered_set>
#include <vector>

#include "base/progress.h"
#include "repository/repository.h"

namespace haven::repository {

struct CheckOptions {
  double read_data_percent = 0;  // 0: structure only; 100: every pack
  int threads = 0;               // for reading data; 0: one per core
  std::function<void(const std::string&)> on_phase;
  // Checked before each pack is read; a cancelled check returns
  // Code::kCancelled (it changes nothing, so there is nothing to undo).
  CancelToken cancel;
};

struct CheckReport {
  uint64_t snapshots = 0;
  uint64_t chunk_references = 0;  // data chunk references checked
  uint64_t index_entries = 0;
  uint64_t packs = 0;
  uint64_t packs_read = 0;
  uint64_t chunks_read = 0;
  uint64_t bytes_read = 0;
  double read_seconds = 0;
  std::vector<std::string> findings;  // empty: the repository is sound
  // Chunks found missing or damaged (for repair snapshots).
  std::unordered_set<ChunkId, ChunkIdHash> damaged;
};

Result<CheckReport> CheckRepository(const Repository& repo,
                                    const CheckOptions& options);

// The report as `haven check --json` prints it: ok, snapshots,
// chunk_references, index_entries, packs, packs_read, chunks_read,
// bytes_read, read_seconds, findings.
nlohmann::ordered_json CheckReportJson(const CheckReport& report);

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_CHECK_H_
