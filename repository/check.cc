#include "repository/check.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "base/time.h"

namespace haven::repository {
namespace {

constexpr size_t kMaxFindingsPerDisk = 20;
constexpr size_t kMaxIndexFindings = 100;

std::string Range(uint64_t index, const DiskManifest& d) {
  if (d.is_stream()) return "chunk " + std::to_string(index);
  uint64_t first = index * d.chunk_size;
  uint64_t last = std::min(d.size, first + d.chunk_size) - 1;
  return "image offsets " + std::to_string(first) + "-" + std::to_string(last);
}

std::string Point(const Manifest& m, const DiskManifest& d) {
  return "snapshot " + m.id.substr(0, 8) + " (" + m.name + ", " +
         m.time.substr(0, 19) + ") disk " + d.name;
}

// Pack sizes, stat'ed once each; -1 for a missing pack.
class PackSizes {
 public:
  explicit PackSizes(const Backend& backend) : backend_(backend) {}
  int64_t Get(const std::string& pack) {
    auto it = size_.find(pack);
    if (it != size_.end()) return it->second;
    auto size = backend_.Stat(PackKey(pack));
    int64_t s = size.ok() ? static_cast<int64_t>(*size) : -1;
    size_.emplace(pack, s);
    return s;
  }

 private:
  const Backend& backend_;
  std::unordered_map<std::string, int64_t> size_;
};

// Walks every data chunk reference of every recovery point. Unreadable
// chunk-list nodes become findings.
Status ForEachReference(
    const Repository& repo, const std::vector<Manifest>& all,
    std::vector<std::string>& findings,
    const std::function<Status(const Manifest&, const DiskManifest&, uint64_t,
                               const ChunkId&)>& visit) {
  ReadContext ctx;
  for (const auto& m : all) {
    for (const auto& d : m.disks) {
      Status s = WalkTree(
          d.tree, repo.TreeNodeLoader(ctx),
          [&](uint64_t index, const ChunkId& id) {
            return visit(m, d, index, id);
          },
          d.chunk_size);
      if (!s.ok()) {
        if (s.code() != Code::kDataLoss) return s;
        findings.push_back(Point(m, d) + ": " + s.message());
      }
    }
  }
  return OkStatus();
}

Status CheckStructure(const Repository& repo, const std::vector<Manifest>& all,
                      PackSizes& packs, CheckReport& report) {
  auto& f = report.findings;
  std::string current;
  size_t per_disk = 0;
  HAVEN_RETURN_IF_ERROR(ForEachReference(
      repo, all, f,
      [&](const Manifest& m, const DiskManifest& d, uint64_t index,
          const ChunkId& id) -> Status {
        ++report.chunk_references;
        std::string point = Point(m, d);
        if (point != current) current = point, per_disk = 0;
        HAVEN_ASSIGN_OR_RETURN(auto loc, repo.index().Get(id));
        std::string problem;
        if (!loc) {
          problem = "chunk " + id.Hex() + " is not in the index";
        } else {
          int64_t size = packs.Get(loc->pack);
          if (size < 0)
            problem = "chunk " + id.Hex() + " is in pack " + loc->pack +
                      ", which is missing";
          else if (loc->offset + loc->stored_len > static_cast<uint64_t>(size))
            problem = "chunk " + id.Hex() + " lies beyond the end of pack " +
                      loc->pack;
        }
        if (!problem.empty()) report.damaged.insert(id);
        if (!problem.empty() && per_disk++ < kMaxFindingsPerDisk)
          f.push_back(point + " " + Range(index, d) + ": " + problem);
        return OkStatus();
      }));
  size_t index_findings = 0;
  HAVEN_RETURN_IF_ERROR(repo.index().ForEach(
      [&](const ChunkId& id, const ChunkLocation& loc) -> Status {
        ++report.index_entries;
        int64_t size = packs.Get(loc.pack);
        std::string problem;
        if (size < 0)
          problem = "index entry for chunk " + id.Hex() + " names pack " +
                    loc.pack + ", which is missing";
        else if (loc.offset + loc.stored_len > static_cast<uint64_t>(size))
          problem = "index entry for chunk " + id.Hex() +
                    " lies beyond the end of pack " + loc.pack;
        if (!problem.empty() && index_findings++ < kMaxIndexFindings)
          f.push_back(problem);
        return OkStatus();
      },
      [&](const Status& bad) {
        if (index_findings++ < kMaxIndexFindings) f.push_back(bad.message());
      }));
  if (index_findings > kMaxIndexFindings)
    f.push_back("... and " +
                std::to_string(index_findings - kMaxIndexFindings) +
                " more index findings");
  return OkStatus();
}

// Reads and verifies every blob of `packs`; damaged chunk ids and unreadable
// pack names are collected.
// A read that failed for a reason other than what the bytes say (the store
// unreachable, access refused) stops the check: it is not damage, and repair
// must not act on it.
bool IsDamage(const Status& s) {
  return s.code() == Code::kDataLoss || s.code() == Code::kNotFound;
}

Status ReadPacks(const Repository& repo, const std::vector<std::string>& packs,
                 int threads, const CancelToken& cancel, CheckReport& report,
                 std::unordered_set<ChunkId, ChunkIdHash>& damaged,
                 std::unordered_set<std::string>& damaged_packs) {
  std::mutex mu;
  std::atomic<size_t> next{0};
  Status fatal;
  std::atomic<bool> stop{false};
  auto worker = [&] {
    Decompressor dec;
    Bytes sealed, scratch, out;
    while (true) {
      size_t i = next++;
      if (i >= packs.size() || cancel.cancelled() || stop) return;
      const std::string& name = packs[i];
      auto pack = repo.backend().OpenReader(PackKey(name));
      Result<std::vector<PackEntry>> entries =
          pack.ok() ? ReadPackHeader(**pack, name, repo.data_key())
                    : Result<std::vector<PackEntry>>(pack.status());
      if (!entries.ok()) {
        std::lock_guard<std::mutex> l(mu);
        if (!IsDamage(entries.status())) {
          fatal = entries.status().WithContext("check pack " + name);
          stop = true;
          return;
        }
        report.findings.push_back(entries.status().message());
        damaged_packs.insert(name);
        continue;
      }
      uint64_t bytes = 0, chunks = 0;
      for (const auto& e : *entries) {
        std::string what = "pack " + name + ", chunk " + e.id.Hex();
        sealed.resize(e.stored_len);
        Status s = (*pack)->ReadAt(e.offset, e.stored_len, sealed.data(), what);
        if (s.ok())
          s = OpenChunk(repo.data_key(), e.type, e.id, sealed, e.raw_len, dec,
                        scratch, out, what);
        if (s.ok() && !(repo.IdFor(e.type, out) == e.id))
          s = DataLoss(what + ": content does not match its id");
        bytes += e.stored_len;
        ++chunks;
        if (!s.ok() && !IsDamage(s)) {
          std::lock_guard<std::mutex> l(mu);
          fatal = s.WithContext("check");
          stop = true;
          return;
        }
        if (!s.ok()) {
          // Two writers may both have stored a chunk; the index names one
          // copy. A damaged copy the index does not name loses nothing (gc
          // drops it), and must not make repair drop the good copy's entry.
          auto named = repo.index().Get(e.id);
          const bool surplus = named.ok() && named->has_value() &&
                               ((*named)->pack != name ||
                                (*named)->offset != e.offset);
          std::lock_guard<std::mutex> l(mu);
          if (surplus) {
            report.findings.push_back(
                s.message() + " (a surplus copy: the index names the copy in "
                "pack " + (*named)->pack + ", so no recovery point is "
                "affected; the next gc removes this one)");
          } else {
            report.findings.push_back(s.message());
            damaged.insert(e.id);
          }
        }
      }
      std::lock_guard<std::mutex> l(mu);
      report.bytes_read += bytes;
      report.chunks_read += chunks;
      ++report.packs_read;
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
  return fatal;
}

}  // namespace

Result<CheckReport> CheckRepository(const Repository& repo,
                                    const CheckOptions& options) {
  CheckReport report;
  auto phase = [&](const std::string& s) {
    if (options.on_phase) options.on_phase(s);
  };
  std::vector<std::string> errors;
  phase("reading recovery points");
  // The files themselves: a damaged one must be found even while the
  // catalog holds a good copy.
  HAVEN_ASSIGN_OR_RETURN(auto all,
                         repo.ListSnapshots(&errors, SnapshotSource::kFiles));
  report.snapshots = all.size();
  for (const auto& e : errors)
    report.findings.push_back("unreadable manifest: " + e);

  phase("checking structure");
  PackSizes sizes(repo.backend());
  HAVEN_RETURN_IF_ERROR(CheckStructure(repo, all, sizes, report));
  HAVEN_ASSIGN_OR_RETURN(std::vector<std::string> packs,
                         ListPackNames(repo.backend()));
  report.packs = packs.size();

  if (options.read_data_percent <= 0) return report;
  HAVEN_RETURN_IF_ERROR(options.cancel.Check("the check"));
  std::vector<std::string> chosen = packs;
  if (options.read_data_percent < 100) {
    std::shuffle(chosen.begin(), chosen.end(),
                 std::mt19937_64(std::random_device{}()));
    size_t n = static_cast<size_t>(
        std::ceil(chosen.size() * options.read_data_percent / 100));
    chosen.resize(std::min(chosen.size(), n));
    std::sort(chosen.begin(), chosen.end());
  }
  phase("reading " + std::to_string(chosen.size()) + " of " +
        std::to_string(packs.size()) + " packs");
  double start = MonotonicSeconds();
  std::unordered_set<ChunkId, ChunkIdHash> damaged;
  std::unordered_set<std::string> damaged_packs;
  int threads =
      options.threads > 0
          ? options.threads
          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  HAVEN_RETURN_IF_ERROR(ReadPacks(repo, chosen, threads, options.cancel, report,
                                  damaged, damaged_packs));
  report.read_seconds = MonotonicSeconds() - start;
  HAVEN_RETURN_IF_ERROR(options.cancel.Check("the check"));

  if (!damaged_packs.empty()) {  // every chunk the index places there is lost
    HAVEN_RETURN_IF_ERROR(repo.index().ForEach(
        [&](const ChunkId& id, const ChunkLocation& loc) -> Status {
          if (damaged_packs.count(loc.pack)) damaged.insert(id);
          return OkStatus();
        },
        [](const Status&) {}));
  }
  report.damaged.insert(damaged.begin(), damaged.end());
  if (damaged.empty()) return report;
  phase("finding the recovery points that use damaged chunks");
  std::vector<std::string> ignored;
  std::string current;
  size_t per_disk = 0;
  HAVEN_RETURN_IF_ERROR(ForEachReference(
      repo, all, ignored,
      [&](const Manifest& m, const DiskManifest& d, uint64_t index,
          const ChunkId& id) {
        if (!damaged.count(id)) return OkStatus();
        std::string point = Point(m, d);
        if (point != current) current = point, per_disk = 0;
        if (per_disk++ < kMaxFindingsPerDisk)
          report.findings.push_back("affected: " + point + " " +
                                    Range(index, d) + " (chunk " + id.Hex() +
                                    ")");
        return OkStatus();
      }));
  return report;
}

nlohmann::ordered_json CheckReportJson(const CheckReport& r) {
  nlohmann::ordered_json j;
  j["ok"] = r.findings.empty();
  j["snapshots"] = r.snapshots;
  j["chunk_references"] = r.chunk_references;
  j["index_entries"] = r.index_entries;
  j["packs"] = r.packs;
  j["packs_read"] = r.packs_read;
  j["chunks_read"] = r.chunks_read;
  j["bytes_read"] = r.bytes_read;
  j["read_seconds"] = r.read_seconds;
  j["findings"] = r.findings;
  return j;
}

}  // namespace haven::repository
