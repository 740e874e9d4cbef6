#include "repository/copy.h"

#include <algorithm>
#include <chrono>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "base/rate_limiter.h"
#include "base/time.h"
#include "repository/chunk_tree.h"
#include "repository/repository.h"

namespace haven::repository {

namespace {

constexpr char kIdProbe[] = "haven/v1/copy-id-check";

std::string PointWords(const PointSummary& p) {
  return p.id.substr(0, 12) + " (" + p.name + ", " + p.time + ")";
}

}  // namespace

std::string IdKeyCheck(const Repository& repo) {
  ChunkId tree = repo.IdFor(ChunkType::kTree, AsBytes(kIdProbe));
  Bytes probe(AsBytes(kIdProbe).begin(), AsBytes(kIdProbe).end());
  probe.insert(probe.end(), tree.bytes.begin(), tree.bytes.end());
  return repo.IdFor(ChunkType::kData, probe).Hex();
}

CopyParams LocalCopyParams(const Repository& repo) {
  CopyParams p;
  p.repository_id = repo.config().id;
  p.id_check = IdKeyCheck(repo);
  p.chunk_size = repo.config().chunk_size;
  return p;
}

Status CopySource::ChunkSizes(ChunkType type, const std::vector<ChunkId>& ids,
                              std::vector<int64_t>& sizes) {
  std::vector<CopyChunk> chunks;
  HAVEN_RETURN_IF_ERROR(ReadChunks(type, ids, chunks));
  sizes.clear();
  for (const auto& c : chunks)
    sizes.push_back(c.status.ok() ? static_cast<int64_t>(c.raw.size()) : -1);
  return OkStatus();
}

// --- local source -----------------------------------------------------------

LocalCopySource::LocalCopySource(const Repository& repo)
    : repo_(repo), ctx_(std::make_unique<ReadContext>()) {}
LocalCopySource::~LocalCopySource() = default;

std::string LocalCopySource::Describe() const {
  return repo_.backend().Describe();
}

Result<CopyParams> LocalCopySource::Params() { return LocalCopyParams(repo_); }

Result<std::vector<PointSummary>> LocalCopySource::Points(
    std::vector<std::string>* errors) {
  return repo_.ListSummaries(errors);
}

Result<Manifest> LocalCopySource::LoadPoint(const std::string& id) {
  return repo_.LoadSnapshot(id);
}

Status LocalCopySource::ReadChunks(ChunkType type,
                                   const std::vector<ChunkId>& ids,
                                   std::vector<CopyChunk>& out) {
  out.clear();
  out.resize(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    CopyChunk& c = out[i];
    c.id = ids[i];
    // Authenticated by its seal (the id is its associated data); the target
    // checks the bytes against the id before storing them, so they are not
    // hashed here as well.
    c.status = repo_.ReadChunkEncoded(type, ids[i], c.raw, c.encoded, *ctx_);
    if (!c.status.ok()) {
      c.raw.clear();
      c.encoded.clear();
    }
  }
  return OkStatus();
}

Status LocalCopySource::ChunkSizes(ChunkType type,
                                   const std::vector<ChunkId>& ids,
                                   std::vector<int64_t>& sizes) {
  (void)type;
  sizes.clear();
  for (const auto& id : ids) {
    HAVEN_ASSIGN_OR_RETURN(auto loc, repo_.index().Get(id));
    sizes.push_back(loc ? static_cast<int64_t>(loc->raw_len) : -1);
  }
  return OkStatus();
}

// --- local target -----------------------------------------------------------

LocalCopyTarget::LocalCopyTarget(Repository& repo) : repo_(repo) {}
LocalCopyTarget::~LocalCopyTarget() = default;

std::string LocalCopyTarget::Describe() const {
  return repo_.backend().Describe();
}

Result<CopyParams> LocalCopyTarget::Params() { return LocalCopyParams(repo_); }

Result<std::vector<std::string>> LocalCopyTarget::PointIds() {
  HAVEN_ASSIGN_OR_RETURN(auto objects, repo_.backend().List("snapshots/"));
  std::vector<std::string> ids;
  for (const auto& o : objects) {
    std::string id = o.name.substr(std::string("snapshots/").size());
    if (IsSnapshotId(id)) ids.push_back(id);
  }
  return ids;
}

Result<std::vector<bool>> LocalCopyTarget::HasChunks(
    ChunkType type, const std::vector<ChunkId>& ids) {
  (void)type;
  std::vector<bool> have;
  have.reserve(ids.size());
  for (const auto& id : ids) {
    if (id.IsZero()) {
      have.push_back(true);
      continue;
    }
    HAVEN_ASSIGN_OR_RETURN(auto loc, repo_.index().Get(id));
    have.push_back(loc.has_value());
  }
  return have;
}

Status LocalCopyTarget::PutChunks(ChunkType type,
                                  const std::vector<CopyChunk>& chunks) {
  if (!writer_) {
    writer_ = repo_.NewWriter();
    wctx_ = std::make_unique<WriteContext>(repo_.config().compression_level);
  }
  for (const auto& c : chunks) {
    if (!c.status.ok() || c.id.IsZero())
      return InvalidArgument("chunk " + c.id.Hex() + " has no data to store");
    if (repo_.IdFor(type, c.raw) != c.id)
      return InvalidArgument(
          "chunk " + c.id.Hex() + ": its bytes do not give its id in " +
          repo_.backend().Describe() +
          " (the two repositories do not share chunk-id keys, or the chunk "
          "was damaged on the way)");
    // The source's encoding, when it came along, is stored as is: the two
    // repositories share the format, and `raw` was just checked against
    // the id (the encoding came from the same authenticated plaintext).
    if (c.encoded.size() > 1 && (c.encoded[0] == kChunkCodecStored ||
                                 c.encoded[0] == kChunkCodecZstd)) {
      HAVEN_RETURN_IF_ERROR(
          writer_
              ->PutEncoded(
                  type, c.id, static_cast<uint32_t>(c.raw.size()), c.encoded[0],
                  ByteSpan(c.encoded.data() + 1, c.encoded.size() - 1), *wctx_)
              .status());
      continue;
    }
    HAVEN_RETURN_IF_ERROR(writer_->Put(type, c.id, c.raw, *wctx_).status());
  }
  return writer_->Flush();
}

Status LocalCopyTarget::CommitPoint(const Manifest& copied) {
  // A copied point belongs to no agent of this repository: an agent id is
  // another appliance's namespace (and a hostile source's claim).
  Manifest m = copied;
  m.agent_id.clear();
  // Every chunk the point names must be here, not only its roots: a node
  // can outlive its children (gc keeps a pack for its other chunks), and a
  // point committed over a hole would be reported copied and fail to
  // restore. Nodes verified whole in this run are not walked again.
  ReadContext ctx;
  for (const auto& d : m.disks) {
    if (d.tree.root.IsZero()) continue;
    WalkHooks hooks;
    hooks.enter = [&](const ChunkId& node) -> Result<bool> {
      return !verified_.count(node);
    };
    hooks.leave = [&](const ChunkId& node) {
      verified_.insert(node);
      return OkStatus();
    };
    std::string lacks;
    Status walked = WalkTree(
        d.tree, repo_.TreeNodeLoader(ctx),
        [&](uint64_t, const ChunkId& id) -> Status {
          if (id.IsZero()) return OkStatus();
          HAVEN_ASSIGN_OR_RETURN(auto loc, repo_.index().Get(id));
          if (!loc) {
            lacks = id.Hex();
            return FailedPrecondition("lacks chunk " + id.Hex());
          }
          return OkStatus();
        },
        d.chunk_size, hooks);
    if (!walked.ok())
      return FailedPrecondition(
          "recovery point " + m.id +
          " was not committed: " + repo_.backend().Describe() + " lacks " +
          (lacks.empty() ? "a chunk-list node" : "chunk " + lacks) + " of " +
          d.name + " (" + walked.message() + ")");
  }
  return repo_.CommitCopiedSnapshot(m);
}

// --- selection --------------------------------------------------------------

Result<std::vector<PointSummary>> SelectPoints(
    const std::vector<PointSummary>& points, const CopySelection& select) {
  std::vector<PointSummary> chosen;
  std::set<std::string> by_ref;
  for (const auto& ref : select.refs) {
    const PointSummary* hit = nullptr;
    if (ref == "latest" || (ref.size() > 7 && ref.ends_with(":latest"))) {
      std::string name = ref == "latest" ? "" : ref.substr(0, ref.size() - 7);
      for (const auto& p : points)
        if (name.empty() || p.name == name) hit = &p;  // oldest first
      if (!hit)
        return NotFound("no recovery point named '" + name + "' in the source");
    } else {
      if (ref.empty() ||
          ref.find_first_not_of("0123456789abcdef") != std::string::npos)
        return InvalidArgument("'" + ref +
                               "' is not a point id, 'latest' or "
                               "'NAME:latest'");
      for (const auto& p : points) {
        if (p.id.rfind(ref, 0) != 0) continue;
        if (hit)
          return InvalidArgument("'" + ref +
                                 "' names more than one point: give more "
                                 "digits");
        hit = &p;
      }
      if (!hit) return NotFound("no recovery point " + ref + " in the source");
    }
    by_ref.insert(hit->id);
  }
  int64_t since = INT64_MIN, until = INT64_MAX;
  if (!select.since.empty()) {
    auto t = ParseIsoTime(select.since);
    if (!t.ok())
      return InvalidArgument("--since '" + select.since +
                             "' is not an ISO 8601 time");
    since = *t;
  }
  if (!select.until.empty()) {
    auto t = ParseIsoTime(select.until);
    if (!t.ok())
      return InvalidArgument("--until '" + select.until +
                             "' is not an ISO 8601 time");
    until = *t;
  }
  std::set<std::string> names(select.names.begin(), select.names.end());
  std::vector<RetentionItem> items;
  for (const auto& p : points) {
    if (!select.refs.empty() && !by_ref.count(p.id)) continue;
    if (!names.empty() && !names.count(p.name)) continue;
    if (since != INT64_MIN || until != INT64_MAX) {
      auto t = ParseIsoTime(p.time);
      if (!t.ok() || *t < since || *t > until) continue;
    }
    chosen.push_back(p);
    items.push_back({p.id, p.name, p.time, false});
  }
  if (!select.keep.Empty()) {
    HAVEN_ASSIGN_OR_RETURN(auto decisions,
                           ApplyRetention(std::move(items), select.keep));
    std::set<std::string> kept;
    for (const auto& d : decisions)
      if (d.keep) kept.insert(d.item.id);
    std::erase_if(chosen,
                  [&](const PointSummary& p) { return !kept.count(p.id); });
  }
  return chosen;
}

// --- the copy ---------------------------------------------------------------

namespace {

struct Damage {
  ChunkId id{};
  std::string error;
  std::vector<std::string> points;
};

class Copier {
 public:
  Copier(CopySource& from, CopyTarget& to, const CopyOptions& options,
         CopyReport& report)
      : from_(from),
        to_(to),
        options_(options),
        report_(report),
        limiter_(options.bytes_per_second),
        start_(std::chrono::steady_clock::now()) {}

  // Copies one point's chunks; false in `complete` when a chunk it needs is
  // damaged (the point is then not to be committed).
  Status CopyChunksOf(const Manifest& m, CopyPointResult& result,
                      bool& complete) {
    point_ = &result;
    complete = true;
    for (const auto& d : m.disks) {
      if (d.tree.root.IsZero()) continue;
      HAVEN_ASSIGN_OR_RETURN(auto have, Has(ChunkType::kTree, {d.tree.root}));
      if (have[0] && trust_nodes) continue;
      // Reads of data chunks stay within a few batches' bytes: image chunks
      // have the disk's size; file content chunks up to 1 MiB by default.
      uint64_t estimate = d.chunk_size > 0 ? d.chunk_size : (1u << 20);
      read_group_ =
          std::clamp<size_t>(kBatchBytes / estimate, 1, options_.batch_chunks);
      bool ok = true;
      Status s = CopyNode(d.tree.root, d.tree.height, ok);
      if (!s.ok())
        return s.WithContext("recovery point " + m.id + " (" + m.name + ") " +
                             d.name);
      if (!ok) complete = false;
    }
    HAVEN_RETURN_IF_ERROR(FlushData());
    HAVEN_RETURN_IF_ERROR(FlushNodes());
    return Settle();
  }

  // Whether a tree node the target holds stands for its whole subtree.
  // True on the first walk of a point; false when the target refused to
  // commit it for a missing chunk (its gc can leave a node whose children
  // are gone): the point is then walked again down to every data chunk.
  bool trust_nodes = true;

  std::vector<DamagedChunk> DamagedList() const {
    std::vector<DamagedChunk> out;
    for (const auto& entry : damaged_) {
      const Damage& d = entry.second;
      DamagedChunk c;
      c.id = d.id;
      c.error = d.error;
      c.points = d.points;
      out.push_back(std::move(c));
    }
    return out;
  }

 private:
  // Which of `ids` the target lacks, counting a chunk queued in this run
  // (or, in a dry run, already counted) as present.
  Result<std::vector<bool>> Has(ChunkType type,
                                const std::vector<ChunkId>& ids) {
    std::vector<bool> have(ids.size(), false);
    std::vector<ChunkId> ask;
    std::vector<size_t> where;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i].IsZero() || queued_.count(ids[i])) {
        have[i] = true;
        continue;
      }
      auto bad = damaged_.find(ids[i].Hex());
      if (bad != damaged_.end()) continue;  // reported again below
      ask.push_back(ids[i]);
      where.push_back(i);
    }
    if (!ask.empty()) {
      std::unique_lock<std::mutex> lock(target_mu_);
      auto asked = to_.HasChunks(type, ask);
      lock.unlock();
      HAVEN_ASSIGN_OR_RETURN(auto got, std::move(asked));
      if (got.size() != ask.size())
        return DataLoss(to_.Describe() + " answered " +
                        std::to_string(got.size()) + " flags for " +
                        std::to_string(ask.size()) + " chunks");
      report_.chunks_checked += ask.size();
      for (size_t k = 0; k < ask.size(); ++k) have[where[k]] = got[k];
    }
    return have;
  }

  // Records a damaged chunk against the current point.
  void Damaged(const ChunkId& id, const std::string& error) {
    auto& d = damaged_[id.Hex()];
    d.id = id;
    if (d.error.empty()) d.error = error;
    if (d.points.empty() || d.points.back() != point_->id)
      d.points.push_back(point_->id);
  }

  // Reads `ids` from the source, recording damaged ones; `ok` per id.
  Status Read(ChunkType type, const std::vector<ChunkId>& ids,
              std::vector<CopyChunk>& out) {
    HAVEN_RETURN_IF_ERROR(from_.ReadChunks(type, ids, out));
    if (out.size() != ids.size())
      return DataLoss(from_.Describe() + " answered " +
                      std::to_string(out.size()) + " chunks for " +
                      std::to_string(ids.size()));
    for (size_t i = 0; i < ids.size(); ++i) {
      if (out[i].id != ids[i])
        return DataLoss(from_.Describe() + " answered chunk " +
                        out[i].id.Hex() + " for " + ids[i].Hex());
      if (!out[i].status.ok()) Damaged(ids[i], out[i].status.message());
    }
    return OkStatus();
  }

  // Copies node `id` at `level` (1 = a leaf, naming data chunks) after
  // everything under it; `ok` false if something under it is damaged (the
  // node is then not sent).
  Status CopyNode(const ChunkId& id, int level, bool& ok) {
    HAVEN_RETURN_IF_ERROR(options_.cancel.Check("the copy"));
    if (damaged_.count(id.Hex())) {
      Damaged(id, damaged_[id.Hex()].error);
      ok = false;
      return OkStatus();
    }
    std::vector<CopyChunk> node;
    HAVEN_RETURN_IF_ERROR(Read(ChunkType::kTree, {id}, node));
    if (!node[0].status.ok()) {
      ok = false;
      return OkStatus();
    }
    const Bytes& raw = node[0].raw;
    if (raw.empty() || raw.size() % sizeof(ChunkId::bytes) != 0 ||
        raw.size() / sizeof(ChunkId::bytes) > kTreeFanout)
      return DataLoss("chunk-list node " + id.Hex() + " has " +
                      std::to_string(raw.size()) + " bytes");
    std::vector<ChunkId> children(raw.size() / sizeof(ChunkId::bytes));
    for (size_t i = 0; i < children.size(); ++i)
      std::copy_n(raw.begin() + i * sizeof(ChunkId::bytes),
                  sizeof(ChunkId::bytes), children[i].bytes.begin());
    ChunkType child_type = level == 1 ? ChunkType::kData : ChunkType::kTree;
    HAVEN_ASSIGN_OR_RETURN(auto have, Has(child_type, children));
    bool all_ok = true;
    if (level == 1) {
      // Each missing chunk once, however often the node names it.
      std::vector<ChunkId> missing;
      std::unordered_set<ChunkId, ChunkIdHash> seen;
      for (size_t i = 0; i < children.size(); ++i)
        if (!have[i] && seen.insert(children[i]).second)
          missing.push_back(children[i]);
      for (const auto& c : missing) {
        auto bad = damaged_.find(c.Hex());
        if (bad != damaged_.end()) {
          Damaged(c, bad->second.error);
          all_ok = false;
        }
      }
      std::erase_if(missing,
                    [&](const ChunkId& c) { return damaged_.count(c.Hex()); });
      for (size_t at = 0; at < missing.size(); at += read_group_) {
        std::vector<ChunkId> part(
            missing.begin() + at,
            missing.begin() + std::min(missing.size(), at + read_group_));
        bool part_ok = true;
        HAVEN_RETURN_IF_ERROR(QueueData(part, part_ok));
        if (!part_ok) all_ok = false;
      }
    } else {
      std::unordered_set<ChunkId, ChunkIdHash> seen;
      for (size_t i = 0; i < children.size(); ++i) {
        if ((have[i] && trust_nodes) || !seen.insert(children[i]).second ||
            queued_.count(children[i]) || children[i].IsZero())
          continue;
        bool child_ok = true;
        HAVEN_RETURN_IF_ERROR(CopyNode(children[i], level - 1, child_ok));
        if (!child_ok) all_ok = false;
      }
    }
    if (!all_ok) {
      ok = false;
      return OkStatus();
    }
    node[0].status = OkStatus();
    return QueueNode(std::move(node[0]));
  }

  Status QueueData(const std::vector<ChunkId>& ids, bool& ok) {
    if (options_.dry_run) {
      std::vector<int64_t> sizes;
      HAVEN_RETURN_IF_ERROR(from_.ChunkSizes(ChunkType::kData, ids, sizes));
      if (sizes.size() != ids.size())
        return DataLoss(from_.Describe() + " answered " +
                        std::to_string(sizes.size()) + " sizes for " +
                        std::to_string(ids.size()) + " chunks");
      for (size_t i = 0; i < ids.size(); ++i) {
        if (sizes[i] < 0) {
          Damaged(ids[i], "the source does not hold chunk " + ids[i].Hex());
          ok = false;
          continue;
        }
        queued_.insert(ids[i]);
        Count(static_cast<uint64_t>(sizes[i]));
      }
      return Progress(false);
    }
    std::vector<CopyChunk> chunks;
    HAVEN_RETURN_IF_ERROR(Read(ChunkType::kData, ids, chunks));
    for (auto& c : chunks) {
      if (!c.status.ok()) {
        ok = false;
        continue;
      }
      queued_.insert(c.id);
      data_bytes_ += c.raw.size();
      data_.push_back(std::move(c));
    }
    if (data_.size() >= options_.batch_chunks || data_bytes_ >= kBatchBytes)
      HAVEN_RETURN_IF_ERROR(FlushData());
    return OkStatus();
  }

  Status QueueNode(CopyChunk node) {
    queued_.insert(node.id);
    if (options_.dry_run) {
      Count(node.raw.size());
      return OkStatus();
    }
    node_bytes_ += node.raw.size();
    nodes_.push_back(std::move(node));
    if (nodes_.size() >= options_.batch_chunks || node_bytes_ >= kBatchBytes) {
      HAVEN_RETURN_IF_ERROR(FlushData());
      HAVEN_RETURN_IF_ERROR(FlushNodes());
    }
    return OkStatus();
  }

  void Count(uint64_t bytes) {
    point_->chunks_sent++;
    point_->bytes_sent += bytes;
    report_.chunks_sent++;
    report_.bytes_sent += bytes;
  }

  // Hands a batch to the target on a thread of its own, so the next batch
  // is read from the source meanwhile; one batch is in flight at a time,
  // and batches reach the target in order.
  Status Send(ChunkType type, std::vector<CopyChunk>& chunks, uint64_t& bytes) {
    if (chunks.empty()) return OkStatus();
    HAVEN_RETURN_IF_ERROR(Settle());
    if (!limiter_.Acquire(bytes, options_.cancel))
      return Cancelled("the copy was cancelled");
    HAVEN_RETURN_IF_ERROR(options_.cancel.Check("the copy"));
    inflight_chunks_ = std::move(chunks);
    inflight_ = std::async(std::launch::async, [this, type] {
      std::lock_guard<std::mutex> lock(target_mu_);
      return to_.PutChunks(type, inflight_chunks_);
    });
    chunks.clear();
    bytes = 0;
    return OkStatus();
  }
  // Waits for the batch in flight: after OK it is durable at the target.
  Status Settle() {
    if (!inflight_.valid()) return OkStatus();
    HAVEN_RETURN_IF_ERROR(inflight_.get());
    // The target has them now and answers for them itself.
    for (const auto& c : inflight_chunks_) {
      Count(c.raw.size());
      queued_.erase(c.id);
    }
    inflight_chunks_.clear();
    return Progress(false);
  }
  Status FlushData() { return Send(ChunkType::kData, data_, data_bytes_); }
  // A node goes only after the chunks it names are durable.
  Status FlushNodes() {
    HAVEN_RETURN_IF_ERROR(Settle());
    return Send(ChunkType::kTree, nodes_, node_bytes_);
  }

 public:
  Status Progress(bool final) {
    if (!options_.progress) return OkStatus();
    double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_)
            .count();
    haven::Progress p =
        ByteProgress(report_.bytes_sent, 0, report_.bytes_sent, elapsed, final);
    p.phase = options_.dry_run ? "copy (dry run)" : "copy";
    if (point_) p.item = point_->name + " " + point_->id.substr(0, 12);
    p.items_done = items_done;
    p.items_waiting = items_waiting;
    p.items_failed = items_failed;
    p.items_running = items_waiting > 0 || !final ? 1 : 0;
    options_.progress(p);
    return OkStatus();
  }
  int items_done = 0, items_waiting = 0, items_failed = 0;

 private:
  // A batch is durable at the target before the next is sent: a killed copy
  // loses at most this much (raw) in flight.
  static constexpr uint64_t kBatchBytes = 4 << 20;

  CopySource& from_;
  CopyTarget& to_;
  const CopyOptions& options_;
  CopyReport& report_;
  RateLimiter limiter_;
  std::chrono::steady_clock::time_point start_;
  CopyPointResult* point_ = nullptr;
  size_t read_group_ = 1;
  std::unordered_set<ChunkId, ChunkIdHash> queued_;
  std::map<std::string, Damage> damaged_;
  std::vector<CopyChunk> data_, nodes_;
  uint64_t data_bytes_ = 0, node_bytes_ = 0;
  // The batch the target is storing (Send) and the calls to the target,
  // one at a time.
  std::mutex target_mu_;
  std::vector<CopyChunk> inflight_chunks_;
  std::future<Status> inflight_;
};

}  // namespace

int CopyReport::copied() const {
  return static_cast<int>(std::count_if(
      points.begin(), points.end(),
      [](const CopyPointResult& p) { return p.outcome == "copied"; }));
}

int CopyReport::failed() const {
  return static_cast<int>(std::count_if(
      points.begin(), points.end(),
      [](const CopyPointResult& p) { return p.outcome == "failed"; }));
}

Result<CopyReport> CopyPoints(CopySource& from, CopyTarget& to,
                              const CopyOptions& options) {
  auto start = std::chrono::steady_clock::now();
  CopyReport report;
  report.from = from.Describe();
  report.to = to.Describe();
  report.dry_run = options.dry_run;
  if (options.batch_chunks == 0)
    return InvalidArgument("the copy's batch size is 0");
  HAVEN_ASSIGN_OR_RETURN(CopyParams src, from.Params());
  HAVEN_ASSIGN_OR_RETURN(CopyParams dst, to.Params());
  if (src.repository_id == dst.repository_id)
    return InvalidArgument(
        "the source and the target are the same "
        "repository (" +
        src.repository_id + ")");
  if (src.id_check != dst.id_check)
    return FailedPrecondition(
        report.to + " does not share chunk-id keys with " + report.from +
        ", so a copy would have to re-chunk everything: make the target "
        "with 'haven init --copy-params-from SOURCE' (or 'haven seed "
        "export', which does)");
  HAVEN_ASSIGN_OR_RETURN(auto all, from.Points(&report.source_errors));
  HAVEN_ASSIGN_OR_RETURN(auto selected, SelectPoints(all, options.select));
  HAVEN_ASSIGN_OR_RETURN(auto there, to.PointIds());
  std::unordered_set<std::string> present(there.begin(), there.end());

  Copier copier(from, to, options, report);
  copier.items_waiting = static_cast<int>(selected.size());
  for (const auto& p : selected) {
    HAVEN_RETURN_IF_ERROR(options.cancel.Check("the copy"));
    CopyPointResult r;
    r.id = p.id;
    r.name = p.name;
    r.kind = p.kind;
    r.time = p.time;
    copier.items_waiting--;
    if (present.count(p.id)) {
      r.outcome = "present";
      report.points.push_back(std::move(r));
      copier.items_done++;
      continue;
    }
    auto m = from.LoadPoint(p.id);
    if (!m.ok() || m->id != p.id) {
      r.outcome = "failed";
      r.status =
          m.ok()
              ? DataLoss("the source answered point " + m->id + " for " + p.id)
              : m.status();
      report.points.push_back(std::move(r));
      copier.items_done++;
      copier.items_failed++;
      continue;
    }
    bool complete = true;
    Status s = copier.CopyChunksOf(*m, r, complete);
    if (!s.ok()) {
      if (s.code() == Code::kCancelled) return s;
      // The target or the link failed: nothing more can be copied.
      return s.WithContext("copying " + PointWords(p) + " to " + report.to);
    }
    if (!complete) {
      r.outcome = "failed";
      r.status = DataLoss("recovery point " + p.id +
                          " needs damaged chunks of the source; it was not "
                          "copied");
      copier.items_failed++;
    } else if (options.dry_run) {
      r.outcome = "would copy";
    } else {
      Status c = to.CommitPoint(*m);
      if (c.code() == Code::kFailedPrecondition && complete) {
        // The target lacks something a node it holds claimed to cover:
        // walk the point again down to every chunk, then commit again.
        copier.trust_nodes = false;
        s = copier.CopyChunksOf(*m, r, complete);
        copier.trust_nodes = true;
        if (!s.ok()) {
          if (s.code() == Code::kCancelled) return s;
          return s.WithContext("copying " + PointWords(p) + " to " + report.to);
        }
        c = complete ? to.CommitPoint(*m)
                     : DataLoss("recovery point " + p.id +
                                " needs damaged chunks of the source");
      }
      if (c.ok()) {
        r.outcome = "copied";
      } else if (c.code() == Code::kAlreadyExists) {
        r.outcome = "present";
      } else {
        return c.WithContext("committing " + PointWords(p) + " in " +
                             report.to);
      }
    }
    copier.items_done++;
    report.points.push_back(std::move(r));
    HAVEN_RETURN_IF_ERROR(copier.Progress(false));
  }
  report.damaged = copier.DamagedList();
  report.duration_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  HAVEN_RETURN_IF_ERROR(copier.Progress(true));
  return report;
}

nlohmann::ordered_json CopyReportJson(const CopyReport& report) {
  nlohmann::ordered_json j;
  j["from"] = report.from;
  j["to"] = report.to;
  j["dry_run"] = report.dry_run;
  int copied = 0, present = 0, failed = 0, would = 0;
  auto points = nlohmann::ordered_json::array();
  for (const auto& p : report.points) {
    if (p.outcome == "copied") copied++;
    if (p.outcome == "present") present++;
    if (p.outcome == "failed") failed++;
    if (p.outcome == "would copy") would++;
    nlohmann::ordered_json e;
    e["id"] = p.id;
    e["name"] = p.name;
    e["kind"] = p.kind;
    e["time"] = p.time;
    e["outcome"] = p.outcome;
    if (!p.status.ok()) e["error"] = p.status.message();
    e["chunks_sent"] = p.chunks_sent;
    e["bytes_sent"] = p.bytes_sent;
    points.push_back(std::move(e));
  }
  j["points_selected"] = report.points.size();
  j["points_copied"] = copied;
  j["points_present"] = present;
  j["points_failed"] = failed;
  if (report.dry_run) j["points_to_copy"] = would;
  j["chunks_checked"] = report.chunks_checked;
  j["chunks_sent"] = report.chunks_sent;
  j["bytes_sent"] = report.bytes_sent;
  auto damaged = nlohmann::ordered_json::array();
  for (const auto& d : report.damaged)
    damaged.push_back(
        {{"chunk", d.id.Hex()}, {"error", d.error}, {"points", d.points}});
  j["damaged_chunks"] = std::move(damaged);
  j["source_errors"] = report.source_errors;
  j["duration_seconds"] = report.duration_seconds;
  j["points"] = std::move(points);
  return j;
}

}  // namespace haven::repository
