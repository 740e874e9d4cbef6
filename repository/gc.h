// Garbage collection: frees the chunks no recovery point references.
//
// Mark: every chunk-list node and data chunk that a recovery point names is
// added to an on-disk set (ChunkSet), so memory does not grow with the
// repository. Subtrees already marked are skipped, so nightly points of the
// same disk cost only their changed nodes.
//
// Sweep: every pack header is read twice. The first pass only measures how
// much of each pack is unused (a histogram: memory stays flat). The second
// deletes packs with no live chunk, and rewrites a pack when its live share
// is under `repack_below`, or when its unused share is among the largest
// that must go for the unused bytes left to be at most `max_unused` of all
// pack bytes (when over, down to 0.9 of it, so the next gc is stable). A
// rewrite copies the live chunks (still sealed, after authenticating each) into
// new packs; the old pack is then deleted. Other packs are kept whole.
//
// Safety beside backups (docs/repository-format.md, "Garbage collection"):
//   - the mark runs under the shared repository lock, beside backups;
//   - the sweep takes the exclusive lock, so it waits for running backups
//     and restores to finish and new ones wait for it; it first marks the
//     recovery points committed since the mark began. A backup therefore
//     never references a chunk that gc deletes: either it committed before
//     the sweep (and is marked), or it starts after the sweep (and only sees
//     chunks that survived);
//   - order: new packs are fsync'd and indexed (synced) before index entries
//     of deleted packs are removed (synced), and only then are pack files
//     unlinked. A gc killed at any point leaves every recovery point
//     restorable; the next gc finishes the work.
// gc refuses to run while any recovery point cannot be read completely, since
// it could not know which chunks that point needs.
#ifndef HAVEN_REPOSITORY_GC_H_
#define HAVEN_REPOSITORY_GC_H_

#include <nlohmann/json.hpp>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/progress.h"
#include "repository/repository.h"

namespace haven::repository {

struct GcOptions {
  // A pack whose live bytes are under this share of its chunk bytes is
  // rewritten. 0 never rewrites (only wholly dead packs are deleted).
  double repack_below = 0.8;
  // Then, packs with the largest unused share are rewritten until unused
  // bytes are at most this share of all pack bytes (restic's --max-unused).
  double max_unused = 0.05;
  bool dry_run = false;  // report what would be done, change nothing
  OpenOptions open;      // lock wait and its message
  std::function<void(const std::string&)> on_phase;
  // Checked between recovery points while marking and once more when the
  // exclusive lock is held, before anything is deleted: a cancelled gc
  // returns Code::kCancelled having changed nothing. Once the sweep has
  // begun it runs to its end.
  CancelToken cancel;
};

struct GcReport {
  uint64_t snapshots = 0;
  uint64_t live_chunks = 0;  // chunk references marked (nodes and data)
  uint64_t packs = 0;        // packs examined
  uint64_t packs_deleted = 0;
  uint64_t packs_repacked = 0;  // rewritten, then deleted
  uint64_t packs_written = 0;
  uint64_t chunks_moved = 0;
  uint64_t chunks_removed = 0;
  uint64_t bytes_moved = 0;
  uint64_t bytes_before = 0;  // pack files, before and after
  uint64_t bytes_after = 0;
  uint64_t unused_bytes_after = 0;  // unused chunks left in kept packs
  std::vector<std::string> skipped;  // packs left alone, with the reason
  // Object lock: packs gc would have removed or rewritten but the store
  // retains; the latest retention among them (seconds since the epoch).
  uint64_t packs_retained = 0;
  int64_t retained_until = 0;
  uint64_t abandoned_uploads = 0;  // unfinished multipart uploads removed
  double mark_seconds = 0;
  double wait_seconds = 0;  // for the exclusive lock
  double sweep_seconds = 0;
};

Result<GcReport> CollectGarbage(const std::string& dir,
                                std::string_view passphrase,
                                const GcOptions& options);

// The report as `haven gc --json` prints it (dry_run as asked), with
// bytes_freed derived from bytes_before and bytes_after.
nlohmann::ordered_json GcReportJson(const GcReport& report, bool dry_run);

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_GC_H_
