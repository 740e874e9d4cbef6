// What an agent restoring a VM through the appliance may read (docs/agents.md,
// "Restores through the appliance"): exactly the chunks of the point its
// job names — every chunk-list node and data chunk of the point's disks and
// config files. The set is built once per job by walking the point's trees
// (authenticated reads) and kept while the job lives, so each read request
// costs a binary search per asked id.
//
// Memory: 32 bytes per distinct chunk (a 1 TiB disk of 64 KiB chunks is
// 16 M chunks, 512 MiB); at most `max_jobs` sets are kept, the least
// recently used dropped first, and Prune drops those of jobs that ended.
//
// Thread-safe; one build per job at a time (callers for the same job wait
// for it and share the set).
#ifndef HAVEN_APPLIANCE_AGENT_RESTORE_READS_H_
#define HAVEN_APPLIANCE_AGENT_RESTORE_READS_H_

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "repository/manifest.h"
#include "repository/point_reader.h"

namespace haven::appliance {

// The chunks of one point, sorted by id bytes.
class PointChunkSet {
 public:
  // Walks every tree (disks, config files) of `point` through `reader`.
  // Errors of reading a node, with the disk named.
  static Result<PointChunkSet> Build(const repository::PointReader& reader,
                                     const repository::Manifest& point);

  const std::string& point_id() const { return point_id_; }
  // The chunk's type if it belongs to the point; nullopt otherwise. With
  // `plan_only`, only what planning a restore reads: every tree node and
  // the data of config files (the disks' data is for the run).
  std::optional<repository::ChunkType> Find(const repository::ChunkId& id,
                                            bool plan_only = false) const;
  size_t size() const { return trees_.size() + data_.size(); }

 private:
  std::string point_id_;
  std::vector<repository::ChunkId> trees_, data_;  // sorted, unique
  std::vector<repository::ChunkId> config_data_;   // of config files too
};

class AgentRestoreReads {
 public:
  explicit AgentRestoreReads(size_t max_jobs = 4) : max_jobs_(max_jobs) {}

  // The set of `point` for job `job_id` of agent `agent_id`, built through
  // `reader` on first use (or when the job's cached set is of another
  // point).
  Result<std::shared_ptr<const PointChunkSet>> ChunksOf(
      int64_t job_id, const std::string& agent_id,
      const repository::PointReader& reader, const repository::Manifest& point);

  // Drops the sets of the jobs `alive` says are gone.
  void Prune(const std::function<bool(int64_t job_id,
                                      const std::string& agent_id)>& alive);
  void Forget(int64_t job_id);
  size_t cached_jobs() const;

 private:
  struct Entry {
    int64_t job_id = 0;
    std::string agent_id;
    std::mutex build_mu;  // held while building
    std::shared_ptr<const PointChunkSet> set;
  };
  const size_t max_jobs_;
  mutable std::mutex mu_;
  std::list<std::shared_ptr<Entry>> entries_;  // most recently used first
};

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_AGENT_RESTORE_READS_H_
