#include "repository/repair.h"

#include <sys/stat.h>

#include <algorithm>
#include <map>

#include "base/time.h"
#include "repository/check.h"

namespace haven::repository {
namespace {

// Rebuilds one disk's chunk list without the lost chunks; `lost` receives
// the lost level-0 ranges [first, end), merged.
Result<TreeRoot> RebuildTree(
    Repository& repo, ChunkWriter& writer, const DiskManifest& d,
    const std::unordered_set<ChunkId, ChunkIdHash>& damaged, bool store,
    std::vector<std::pair<uint64_t, uint64_t>>& lost) {
  ReadContext rctx;
  WriteContext wctx(repo.config().compression_level);
  TreeWriter tree([&](ByteSpan node) -> Result<ChunkId> {
    ChunkId id = repo.IdFor(ChunkType::kTree, node);
    if (store)
      HAVEN_RETURN_IF_ERROR(
          writer.Put(ChunkType::kTree, id, node, wctx).status());
    return id;
  });
  auto lose = [&](uint64_t first, uint64_t end) {
    if (!lost.empty() && lost.back().second == first)
      lost.back().second = end;
    else
      lost.push_back({first, end});
  };
  uint64_t next = 0;
  auto fill_to = [&](uint64_t index) -> Status {
    for (; next < index; ++next) HAVEN_RETURN_IF_ERROR(tree.Add(ChunkId{}));
    return OkStatus();
  };
  WalkHooks hooks;
  hooks.on_bad = [&](uint64_t first, uint64_t end, const Status&) -> Status {
    HAVEN_RETURN_IF_ERROR(fill_to(first));
    lose(first, end);
    return OkStatus();  // the entries stay holes: fill_to skips past them
  };
  HAVEN_RETURN_IF_ERROR(WalkTree(
      d.tree, repo.TreeNodeLoader(rctx),
      [&](uint64_t index, const ChunkId& id) -> Status {
        HAVEN_RETURN_IF_ERROR(fill_to(index));
        if (damaged.count(id)) {
          lose(index, index + 1);
          HAVEN_RETURN_IF_ERROR(tree.Add(ChunkId{}));
        } else {
          HAVEN_RETURN_IF_ERROR(tree.Add(id));
        }
        next = index + 1;
        return OkStatus();
      },
      d.chunk_size, hooks));
  HAVEN_RETURN_IF_ERROR(fill_to(d.tree.count));
  return tree.Finish();
}

// Drops index entries whose copy is gone (missing pack) or damaged.
Result<uint64_t> DropLostIndexEntries(
    Repository& repo, const std::unordered_set<ChunkId, ChunkIdHash>& damaged,
    bool dry_run) {
  std::map<std::string, bool> exists;
  std::vector<ChunkId> drop;
  HAVEN_RETURN_IF_ERROR(repo.index().ForEach(
      [&](const ChunkId& id, const ChunkLocation& loc) -> Status {
        auto it = exists.find(loc.pack);
        if (it == exists.end()) {
          auto size = repo.backend().Stat(PackKey(loc.pack));
          // Only a pack known to be gone loses its entries; a backend that
          // cannot answer stops the repair instead.
          if (!size.ok() && size.status().code() != Code::kNotFound)
            return size.status();
          it = exists.emplace(loc.pack, size.ok()).first;
        }
        if (!it->second || damaged.count(id)) drop.push_back(id);
        return OkStatus();
      },
      [](const Status&) {}));
  if (!dry_run && !drop.empty())
    HAVEN_RETURN_IF_ERROR(repo.index().Delete(drop, /*sync=*/true));
  return drop.size();
}

using Ranges = std::vector<std::pair<uint64_t, uint64_t>>;

// Level-0 chunk ranges [first, end) as byte ranges (offset, length); for
// a file backup's stream, whose chunks vary in size, as (first, count).
Ranges ToBytes(const DiskManifest& d, const Ranges& chunk_ranges) {
  Ranges out;
  if (d.is_stream()) {
    for (const auto& [first, end] : chunk_ranges)
      if (end > first) out.push_back({first, end - first});
    return out;
  }
  for (const auto& [first, end] : chunk_ranges) {
    uint64_t offset = first * d.chunk_size;
    uint64_t stop = std::min<uint64_t>(d.size, end * d.chunk_size);
    if (stop > offset) out.push_back({offset, stop - offset});
  }
  return out;
}

// Merges two byte-range lists into one sorted list without overlaps.
Ranges MergeLost(Ranges all, const Ranges& more) {
  all.insert(all.end(), more.begin(), more.end());
  std::sort(all.begin(), all.end());
  Ranges out;
  for (const auto& [offset, length] : all) {
    if (!out.empty() && out.back().first + out.back().second >= offset) {
      uint64_t end =
          std::max(out.back().first + out.back().second, offset + length);
      out.back().second = end - out.back().first;
    } else {
      out.push_back({offset, length});
    }
  }
  return out;
}

// Removes `old_id` now that `new_id` (its repaired copy) is committed,
// moving its protection to the copy.
Status Replace(Repository& repo, const std::string& old_id,
               const std::string& new_id) {
  if (repo.IsProtected(old_id)) {
    HAVEN_RETURN_IF_ERROR(repo.SetProtected(new_id, true));
    HAVEN_RETURN_IF_ERROR(repo.SetProtected(old_id, false));
  }
  Status s = repo.DeleteSnapshot(old_id);
  return s.code() == Code::kNotFound ? OkStatus() : s;
}

}  // namespace

Result<RepairReport> RepairSnapshots(Repository& repo,
                                     const RepairOptions& options) {
  RepairReport report;
  CheckOptions co;
  co.read_data_percent = options.read_data ? 100 : 0;
  co.on_phase = options.on_phase;
  HAVEN_ASSIGN_OR_RETURN(CheckReport check, CheckRepository(repo, co));
  report.findings = check.findings;
  report.damaged_chunks = check.damaged.size();

  std::vector<std::string> errors;
  HAVEN_ASSIGN_OR_RETURN(auto all,
                         repo.ListSnapshots(&errors, SnapshotSource::kFiles));
  report.snapshots = all.size();
  report.unreadable = errors;
  // A repair interrupted after committing its new point: finish it.
  std::map<std::string, std::string> successor;
  for (const auto& m : all)
    if (!m.repaired_from.empty()) successor[m.repaired_from] = m.id;

  if (check.findings.empty() && successor.empty()) return report;
  HAVEN_ASSIGN_OR_RETURN(
      report.index_entries_dropped,
      DropLostIndexEntries(repo, check.damaged, options.dry_run));
  if (options.on_phase) options.on_phase("repairing recovery points");
  auto writer = repo.NewWriter();
  for (const auto& m : all) {
    if (auto it = successor.find(m.id); it != successor.end()) {
      if (!options.dry_run)
        HAVEN_RETURN_IF_ERROR(Replace(repo, m.id, it->second));
      continue;
    }
    Manifest fixed = m;
    RepairedPoint point{m.id, "", m.name, m.time, {}};
    for (auto& d : fixed.disks) {
      std::vector<std::pair<uint64_t, uint64_t>> lost;
      HAVEN_ASSIGN_OR_RETURN(
          TreeRoot root,
          RebuildTree(repo, *writer, d, check.damaged, !options.dry_run, lost));
      if (lost.empty()) continue;
      Ranges bytes = ToBytes(d, lost);
      for (const auto& [offset, length] : bytes)
        point.lost.push_back({d.name, offset, length});
      d.tree = root;
      d.lost = MergeLost(std::move(d.lost), bytes);
    }
    if (point.lost.empty()) continue;
    if (!options.dry_run) {
      HAVEN_RETURN_IF_ERROR(writer->Flush());
      fixed.repaired_from = m.id;
      fixed.repaired_time = NowIso8601();
      HAVEN_RETURN_IF_ERROR(repo.CommitSnapshot(fixed));
      point.new_id = fixed.id;
      HAVEN_RETURN_IF_ERROR(Replace(repo, m.id, fixed.id));
    }
    report.repaired.push_back(std::move(point));
  }
  return report;
}

nlohmann::ordered_json RepairReportJson(const RepairReport& r, bool dry_run) {
  nlohmann::ordered_json j;
  j["dry_run"] = dry_run;
  j["snapshots"] = r.snapshots;
  j["damaged_chunks"] = r.damaged_chunks;
  j["repaired"] = nlohmann::ordered_json::array();
  for (const auto& p : r.repaired) {
    nlohmann::ordered_json pj = {{"old_id", p.old_id},
                                 {"new_id", p.new_id},
                                 {"name", p.name},
                                 {"time", p.time},
                                 {"lost", nlohmann::ordered_json::array()}};
    for (const auto& l : p.lost)
      pj["lost"].push_back(
          {{"disk", l.disk}, {"offset", l.offset}, {"length", l.length}});
    j["repaired"].push_back(pj);
  }
  j["unreadable"] = r.unreadable;
  j["index_entries_dropped"] = r.index_entries_dropped;
  j["findings"] = r.findings;
  return j;
}

}  // namespace haven::repository
