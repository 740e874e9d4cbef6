#include "appliance/agent_restore_reads.h"

#include <algorithm>
#include <cstring>
#include <unordered_set>

#include "repository/repository.h"

namespace haven::appliance {
namespace {

using repository::ChunkId;
using repository::ChunkType;

bool Less(const ChunkId& a, const ChunkId& b) {
  return std::memcmp(a.bytes.data(), b.bytes.data(), a.bytes.size()) < 0;
}

void SortUnique(std::vector<ChunkId>& ids) {
  std::sort(ids.begin(), ids.end(), Less);
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  ids.shrink_to_fit();
}

bool Contains(const std::vector<ChunkId>& ids, const ChunkId& id) {
  return std::binary_search(ids.begin(), ids.end(), id, Less);
}

}  // namespace

Result<PointChunkSet> PointChunkSet::Build(
    const repository::PointReader& reader, const repository::Manifest& point) {
  PointChunkSet set;
  set.point_id_ = point.id;
  repository::ReadContext ctx;
  repository::LoadNodeFn load = reader.TreeNodeLoader(ctx);
  // Nodes already walked (in this or an earlier tree) are not walked
  // again: the same id is the same bytes, so the same children. Sorted at
  // the end; `seen` keeps the lookups cheap meanwhile.
  std::unordered_set<ChunkId, repository::ChunkIdHash> seen;
  repository::WalkHooks hooks;
  hooks.enter = [&](const ChunkId& node) -> Result<bool> {
    if (!seen.insert(node).second) return false;
    set.trees_.push_back(node);
    return true;
  };
  for (const repository::DiskManifest& d : point.disks) {
    Status s = repository::WalkTree(
        d.tree, load,
        [&](uint64_t, const ChunkId& id) -> Status {
          set.data_.push_back(id);
          if (d.is_config()) set.config_data_.push_back(id);
          return OkStatus();
        },
        d.chunk_size, hooks);
    if (!s.ok())
      return s.WithContext(
          "the chunk list of " +
          std::string(d.is_config() ? "config file " : "disk ") + d.name +
          " of point " + point.id.substr(0, 8));
  }
  SortUnique(set.trees_);
  SortUnique(set.data_);
  SortUnique(set.config_data_);
  return set;
}

std::optional<ChunkType> PointChunkSet::Find(const ChunkId& id,
                                             bool plan_only) const {
  if (Contains(trees_, id)) return ChunkType::kTree;
  if (Contains(plan_only ? config_data_ : data_, id)) return ChunkType::kData;
  return std::nullopt;
}

Result<std::shared_ptr<const PointChunkSet>> AgentRestoreReads::ChunksOf(
    int64_t job_id, const std::string& agent_id,
    const repository::PointReader& reader, const repository::Manifest& point) {
  std::shared_ptr<Entry> entry;
  {
    std::lock_guard lock(mu_);
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if ((*it)->job_id != job_id || (*it)->agent_id != agent_id) continue;
      entry = *it;
      entries_.splice(entries_.begin(), entries_, it);
      break;
    }
    if (!entry) {
      entry = std::make_shared<Entry>();
      entry->job_id = job_id;
      entry->agent_id = agent_id;
      entries_.push_front(entry);
      while (entries_.size() > std::max<size_t>(1, max_jobs_))
        entries_.pop_back();
    }
  }
  std::lock_guard build(entry->build_mu);
  if (entry->set && entry->set->point_id() == point.id) return entry->set;
  HAVEN_ASSIGN_OR_RETURN(PointChunkSet set,
                         PointChunkSet::Build(reader, point));
  entry->set = std::make_shared<const PointChunkSet>(std::move(set));
  return entry->set;
}

void AgentRestoreReads::Prune(
    const std::function<bool(int64_t, const std::string&)>& alive) {
  std::vector<std::pair<int64_t, std::string>> jobs;
  {
    std::lock_guard lock(mu_);
    for (const auto& e : entries_) jobs.emplace_back(e->job_id, e->agent_id);
  }
  for (const auto& [id, agent] : jobs)  // `alive` may lock: not under mu_
    if (!alive(id, agent)) Forget(id);
}

void AgentRestoreReads::Forget(int64_t job_id) {
  std::lock_guard lock(mu_);
  entries_.remove_if(
      [&](const std::shared_ptr<Entry>& e) { return e->job_id == job_id; });
}

size_t AgentRestoreReads::cached_jobs() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

}  // namespace haven::appliance
