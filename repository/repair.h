// Repairing recovery points whose chunks are lost: `haven repair snapshots`.
//
// Every recovery point that names a missing or damaged chunk (or a chunk-list
// node that cannot be read) is rewritten as a new recovery point with the
// same name, time and disks, in which the lost ranges are holes and are
// listed in the manifest ("lost", and "repaired": {"from": old id}). The old
// manifest is removed only after the new one is committed; protection moves
// to the new point. Everything still readable stays restorable, and every
// restore of a repaired point says which ranges are zeros instead of data.
// Index entries that name a missing pack or a damaged copy are dropped first,
// so that the next backup stores those chunks again instead of deduplicating
// against data that is gone.
// A recovery point whose manifest itself cannot be read cannot be repaired;
// it is reported, and left for the user to remove with `haven forget ID`.
#ifndef HAVEN_REPOSITORY_REPAIR_H_
#define HAVEN_REPOSITORY_REPAIR_H_

#include <nlohmann/json.hpp>
#include <functional>
#include <string>
#include <vector>

#include "repository/repository.h"

namespace haven::repository {

struct RepairOptions {
  bool read_data = false;  // also decrypt every pack to find damaged chunks
  bool dry_run = false;
  std::function<void(const std::string&)> on_phase;
};

struct RepairedPoint {
  std::string old_id, new_id, name, time;
  struct Lost {
    std::string disk;
    uint64_t offset = 0, length = 0;
  };
  std::vector<Lost> lost;
};

struct RepairReport {
  uint64_t snapshots = 0;
  uint64_t damaged_chunks = 0;
  std::vector<RepairedPoint> repaired;
  std::vector<std::string> unreadable;  // manifests that cannot be repaired
  std::vector<std::string> findings;    // what check found
  uint64_t index_entries_dropped = 0;   // named a lost or damaged copy
};

// `repo` must be opened for writing, exclusive and holding the index
// (OpenOptions::exclusive, hold_index): a backup running beside it could
// deduplicate against a chunk repair is dropping, and commit a point that
// names it.
Result<RepairReport> RepairSnapshots(Repository& repo,
                                     const RepairOptions& options);

// The result as `haven repair snapshots --json` prints it (dry_run as asked).
nlohmann::ordered_json RepairReportJson(const RepairReport& report,
                                        bool dry_run);

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_REPAIR_H_
