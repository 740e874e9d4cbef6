#include "repository/gc.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <set>

#include "base/time.h"

namespace haven::repository {
namespace {

namespace fs = std::filesystem;

constexpr char kScratchPrefix[] = "gc-";

// Marks every node and data chunk of recovery points in `live`. A node is
// added after its whole subtree, so a node found in the set means everything
// under it is marked already and is skipped.
class Marker {
 public:
  Marker(const Repository& repo, ChunkSet& live) : repo_(repo), live_(live) {}

  Status MarkSnapshot(const Manifest& m) {
    std::vector<ChunkId> pending;  // data ids under the node being walked
    WalkHooks hooks;
    hooks.enter = [&](const ChunkId& node) -> Result<bool> {
      HAVEN_ASSIGN_OR_RETURN(bool seen, live_.Contains(node));
      return !seen;
    };
    hooks.leave = [&](const ChunkId& node) {
      pending.push_back(node);
      Status added = live_.Add(pending);
      pending.clear();
      return added;
    };
    for (const auto& d : m.disks) {
      Status s = WalkTree(
          d.tree, repo_.TreeNodeLoader(ctx_),
          [&](uint64_t, const ChunkId& id) {
            pending.push_back(id);
            return OkStatus();
          },
          d.chunk_size, hooks);
      if (!s.ok())
        return s.WithContext("snapshot " + m.id + " (" + m.name + ") disk " +
                             d.name);
    }
    return OkStatus();
  }

 private:
  const Repository& repo_;
  ChunkSet& live_;
  ReadContext ctx_;
};

// Scratch space for the mark set, under tmp/, flock'd while gc runs so that
// a later gc can remove the scratch of one that was killed.
class Scratch {
 public:
  static Result<Scratch> Create(const std::string& repo_dir) {
    RemoveAbandoned(repo_dir);
    uint8_t raw[8];
    RandomBytes(raw, sizeof raw);
    std::string dir = repo_dir + "/tmp/" + kScratchPrefix +
                      HexEncode(ByteSpan(raw, sizeof raw));
    if (::mkdir(dir.c_str(), 0700) != 0)
      return ErrnoStatus("create " + dir, errno);
    HAVEN_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(dir, O_RDONLY | O_DIRECTORY));
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0)
      return ErrnoStatus("lock " + dir, errno);
    return Scratch(dir, std::move(fd));
  }
  Scratch(Scratch&&) = default;
  ~Scratch() {
    if (fd_.get() >= 0) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
  }
  std::string set_dir() const { return dir_ + "/live"; }

 private:
  Scratch(std::string dir, UniqueFd fd)
      : dir_(std::move(dir)), fd_(std::move(fd)) {}
  static void RemoveAbandoned(const std::string& repo_dir) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(repo_dir + "/tmp", ec)) {
      std::string name = e.path().filename().string();
      if (name.rfind(kScratchPrefix, 0) != 0 || !e.is_directory(ec)) continue;
      int fd = ::open(e.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (fd < 0) continue;
      if (::flock(fd, LOCK_EX | LOCK_NB) == 0) fs::remove_all(e.path(), ec);
      ::close(fd);
    }
  }
  std::string dir_;
  UniqueFd fd_;
};

// Size of a pack, or -1 if it cannot be found.
int64_t PackSize(const Repository& repo, const std::string& name) {
  auto size = repo.backend().Stat(PackKey(name));
  return size.ok() ? static_cast<int64_t>(*size) : -1;
}

// Lists all recovery points; any unreadable one stops gc.
Result<std::vector<Manifest>> AllSnapshots(const Repository& repo) {
  std::vector<std::string> errors;
  HAVEN_ASSIGN_OR_RETURN(auto all, repo.ListSnapshots(&errors));
  if (!errors.empty())
    return FailedPrecondition(
        "gc needs every recovery point to be readable, to know which chunks "
        "it uses; nothing was deleted. Unreadable: " +
        errors.front() +
        (errors.size() > 1
             ? " (and " + std::to_string(errors.size() - 1) + " more)"
             : "") +
        ". Run 'haven check' and 'haven repair snapshots'");
  return all;
}

class Sweeper {
 public:
  Sweeper(Repository& repo, const ChunkSet& live, const GcOptions& options,
          GcReport& report)
      : repo_(repo), live_(live), options_(options), report_(report) {}

  // Pass 1: how much of each pack is unused, as a histogram by percent.
  // Packs rewritten whatever the plan (live share under `repack_below`) are
  // counted apart: their unused bytes go in any case.
  Status Measure(const std::string& name) {
    HAVEN_ASSIGN_OR_RETURN(PackUse use, Examine(name));
    if (!use.readable || use.live_here.empty()) return OkStatus();
    uint64_t unused = use.blob_bytes - use.live_bytes;
    kept_bytes_ += use.size;
    if (Forced(use)) {
      forced_unused_ += unused;
      return OkStatus();
    }
    unused_bytes_ += unused;
    hist_[UnusedPercent(use)] += unused;
    return OkStatus();
  }

  // Between the passes: the smallest unused percentage that gets a pack
  // rewritten. Nothing more is rewritten while the unused bytes left are at
  // most `max_unused` of the bytes the packs will hold after the sweep; when
  // they are over, packs are rewritten until the unused bytes are at most
  // 0.9 of that share, so the next gc (which sees the smaller total) does
  // not find them over again and rewrite more of the same packs.
  void Plan() {
    double kept = static_cast<double>(kept_bytes_ - forced_unused_);
    double left = static_cast<double>(unused_bytes_);
    cutoff_ = 101;  // none
    if (left <= options_.max_unused * kept) return;
    for (int p = 100; p >= 1 && left > 0.9 * options_.max_unused * kept; --p) {
      left -= static_cast<double>(hist_[p]);
      kept -= static_cast<double>(hist_[p]);
      cutoff_ = p;
    }
  }

  // Pass 2: delete, rewrite or keep.
  Status SweepPack(const std::string& name) {
    HAVEN_ASSIGN_OR_RETURN(PackUse use, Examine(name));
    if (use.size < 0) return OkStatus();  // vanished: nothing to do
    report_.bytes_before += use.size;
    if (!use.readable) {
      report_.skipped.push_back(use.error + " (kept; see 'haven check')");
      report_.bytes_after += use.size;
      return OkStatus();
    }
    uint64_t unused = use.count - use.live_here.size();
    bool wanted_gone =
        use.live_here.empty() || Forced(use) || UnusedPercent(use) >= cutoff_;
    if (wanted_gone && repo_.config().object_lock_seconds > 0) {
      // Object lock: a retained pack is planned around, not deleted (the
      // store would refuse); a gc after its retention ends removes it.
      HAVEN_ASSIGN_OR_RETURN(int64_t until,
                             repo_.backend().RetainedUntil(PackKey(name)));
      if (until > static_cast<int64_t>(::time(nullptr))) {
        ++report_.packs_retained;
        report_.retained_until = std::max(report_.retained_until, until);
        report_.bytes_after += use.size;
        report_.unused_bytes_after += use.blob_bytes - use.live_bytes;
        if (!use.reindex.empty() && !options_.dry_run)
          HAVEN_RETURN_IF_ERROR(repo_.index().Put(use.reindex, false));
        return OkStatus();
      }
    }
    if (use.live_here.empty()) {
      report_.chunks_removed += unused;
      ++report_.packs_deleted;
      dead_.push_back(name);
      return OkStatus();
    }
    if (Forced(use) || UnusedPercent(use) >= cutoff_) {
      Status s = Repack(name, use.live_here);
      if (s.ok()) {
        report_.chunks_removed += unused;
        ++report_.packs_repacked;
        dead_.push_back(name);
        return OkStatus();
      }
      if (s.code() != Code::kDataLoss) return s;
      report_.skipped.push_back(s.message() +
                                " (pack kept; see 'haven check')");
    }
    report_.bytes_after += use.size;
    report_.unused_bytes_after += use.blob_bytes - use.live_bytes;
    if (!use.reindex.empty() && !options_.dry_run)
      HAVEN_RETURN_IF_ERROR(repo_.index().Put(use.reindex, false));
    return OkStatus();
  }

  // Seals the last new pack, then removes the dead packs: index first.
  Status Finish() {
    if (out_) HAVEN_RETURN_IF_ERROR(SealOutput());
    if (options_.dry_run) {
      if (dry_pack_size_ > 0) DrySeal();
      return OkStatus();
    }
    HAVEN_RETURN_IF_ERROR(repo_.index().Sync());
    if (options_.on_phase && !dead_.empty())
      options_.on_phase("removing " + std::to_string(dead_.size()) + " packs");
    for (const std::string& name : dead_) {
      auto entries = ReadPackHeader(repo_.backend(), name, repo_.data_key());
      if (!entries.ok()) return entries.status();
      std::vector<ChunkId> drop;
      for (const auto& e : *entries) {
        HAVEN_ASSIGN_OR_RETURN(auto loc, repo_.index().Get(e.id));
        if (loc && loc->pack == name) drop.push_back(e.id);
      }
      HAVEN_RETURN_IF_ERROR(repo_.index().Delete(drop, false));
    }
    HAVEN_RETURN_IF_ERROR(repo_.index().Sync());
    for (const std::string& name : dead_) {
      // In a shared store, only while this gc still holds the lock.
      HAVEN_RETURN_IF_ERROR(repo_.StoreLockValid());
      Status s = repo_.backend().Delete(PackKey(name));
      if (!s.ok() && s.code() != Code::kNotFound) return s;
    }
    return OkStatus();
  }

 private:
  // Authenticates every live chunk of the pack, then copies the sealed
  // blobs as they are (their associated data does not name the pack).
  Status Repack(const std::string& name, const std::vector<PackEntry>& live) {
    HAVEN_ASSIGN_OR_RETURN(auto pack,
                           repo_.backend().OpenReader(PackKey(name)));
    std::vector<Bytes> blobs(live.size());
    for (size_t i = 0; i < live.size(); ++i) {
      const PackEntry& e = live[i];
      std::string what = "pack " + name + ", chunk " + e.id.Hex();
      blobs[i].resize(e.stored_len);
      HAVEN_RETURN_IF_ERROR(
          pack->ReadAt(e.offset, e.stored_len, blobs[i].data(), what));
      HAVEN_RETURN_IF_ERROR(AuthenticateChunk(repo_.data_key(), e.type, e.id,
                                              blobs[i], scratch_, what));
    }
    for (size_t i = 0; i < live.size(); ++i) {
      const PackEntry& e = live[i];
      report_.chunks_moved += 1;
      report_.bytes_moved += e.stored_len;
      if (options_.dry_run) {  // what the writer below would do
        if (dry_pack_size_ == 0) dry_pack_size_ = sizeof kPackMagic;
        dry_pack_size_ += e.stored_len;
        ++dry_pack_count_;
        if (dry_pack_size_ >= repo_.config().pack_size) DrySeal();
        continue;
      }
      if (!out_) {
        HAVEN_ASSIGN_OR_RETURN(out_, PackWriter::Create(repo_.backend()));
      }
      HAVEN_RETURN_IF_ERROR(out_->Append(e.type, e.id, e.raw_len, blobs[i]));
      if (out_->size() >= repo_.config().pack_size)
        HAVEN_RETURN_IF_ERROR(SealOutput());
    }
    return OkStatus();
  }

  // A dry run's estimate of one sealed pack: blobs plus header and trailer.
  void DrySeal() {
    report_.bytes_after += dry_pack_size_ + dry_pack_count_ * kPackEntrySize +
                           kPackTrailerSize + 64;
    ++report_.packs_written;
    dry_pack_size_ = dry_pack_count_ = 0;
  }

  Status SealOutput() {
    std::unique_ptr<PackWriter> pack = std::move(out_);
    HAVEN_RETURN_IF_ERROR(pack->Finish(repo_.data_key()));
    std::vector<std::pair<ChunkId, ChunkLocation>> batch;
    for (const auto& e : pack->entries())
      batch.push_back(
          {e.id, {pack->name(), e.offset, e.stored_len, e.raw_len, e.type}});
    HAVEN_RETURN_IF_ERROR(repo_.index().Put(batch, false));
    ++report_.packs_written;
    int64_t size = PackSize(repo_, pack->name());
    if (size > 0) report_.bytes_after += size;
    return OkStatus();
  }

  struct PackUse {
    int64_t size = -1;
    bool readable = false;
    std::string error;
    size_t count = 0;
    std::vector<PackEntry> live_here;  // the copies to keep
    std::vector<std::pair<ChunkId, ChunkLocation>> reindex;
    uint64_t blob_bytes = 0, live_bytes = 0;
  };

  // Which chunks of a pack are in use here: marked live, and this is the
  // copy the index names (or the index names no copy that exists).
  Result<PackUse> Examine(const std::string& name) {
    PackUse use;
    use.size = PackSize(repo_, name);
    if (use.size < 0) return use;
    auto entries = ReadPackHeader(repo_.backend(), name, repo_.data_key());
    if (!entries.ok()) {
      use.error = entries.status().message();
      return use;
    }
    use.readable = true;
    use.count = entries->size();
    for (const auto& e : *entries) {
      use.blob_bytes += e.stored_len;
      HAVEN_ASSIGN_OR_RETURN(bool live, live_.Contains(e.id));
      if (!live) continue;
      HAVEN_ASSIGN_OR_RETURN(auto loc, repo_.index().Get(e.id));
      bool indexed_here = loc && loc->pack == name && loc->offset == e.offset;
      // Another copy is the one the index names (two backups raced, or a
      // killed gc left a copy): this one is surplus.
      if (loc && !indexed_here && PackSize(repo_, loc->pack) >= 0)
        continue;
      use.live_here.push_back(e);
      use.live_bytes += e.stored_len;
      if (!indexed_here)
        use.reindex.push_back(
            {e.id, {name, e.offset, e.stored_len, e.raw_len, e.type}});
    }
    return use;
  }

  // Rewritten whatever the plan: too little of it is live.
  bool Forced(const PackUse& use) const {
    return static_cast<double>(use.live_bytes) <
           options_.repack_below * static_cast<double>(use.blob_bytes);
  }

  static int UnusedPercent(const PackUse& use) {
    if (use.blob_bytes == 0) return 0;
    // Rounded up, so any unused byte puts a pack at 1% or more.
    return static_cast<int>(
        ((use.blob_bytes - use.live_bytes) * 100 + use.blob_bytes - 1) /
        use.blob_bytes);
  }

  Repository& repo_;
  const ChunkSet& live_;
  const GcOptions& options_;
  GcReport& report_;
  std::unique_ptr<PackWriter> out_;
  std::vector<std::string> dead_;
  uint64_t dry_pack_size_ = 0, dry_pack_count_ = 0;  // dry run's open pack
  uint64_t hist_[101] = {};  // unused bytes of kept packs by unused percent
  uint64_t kept_bytes_ = 0, unused_bytes_ = 0, forced_unused_ = 0;
  int cutoff_ = 101;
  Bytes scratch_;
};

void Phase(const GcOptions& o, const std::string& s) {
  if (o.on_phase) o.on_phase(s);
}

}  // namespace

Result<GcReport> CollectGarbage(const std::string& dir,
                                std::string_view passphrase,
                                const GcOptions& options) {
  GcReport report;
  std::set<std::string> marked;
  double start = MonotonicSeconds();

  // Mark, beside running backups.
  OpenOptions shared = options.open;
  shared.write = false;
  shared.exclusive = false;
  HAVEN_ASSIGN_OR_RETURN(auto repo, Repository::Open(dir, passphrase, shared));
  HAVEN_ASSIGN_OR_RETURN(Scratch scratch, Scratch::Create(repo->dir()));
  HAVEN_ASSIGN_OR_RETURN(auto live, ChunkSet::Create(scratch.set_dir()));
  {
    Phase(options, "marking chunks in use");
    HAVEN_ASSIGN_OR_RETURN(auto all, AllSnapshots(*repo));
    Marker marker(*repo, *live);
    for (const auto& m : all) {
      HAVEN_RETURN_IF_ERROR(options.cancel.Check("gc"));
      HAVEN_RETURN_IF_ERROR(marker.MarkSnapshot(m));
      marked.insert(m.id);
    }
  }
  report.mark_seconds = MonotonicSeconds() - start;

  // Sweep, alone.
  Phase(options, "waiting for running backups and restores to finish");
  double wait_start = MonotonicSeconds();
  HAVEN_RETURN_IF_ERROR(options.cancel.Check("gc"));
  HAVEN_RETURN_IF_ERROR(repo->BecomeExclusiveWriter(options.open));
  report.wait_seconds = MonotonicSeconds() - wait_start;
  // The last point where stopping changes nothing.
  HAVEN_RETURN_IF_ERROR(options.cancel.Check("gc"));
  double sweep_start = MonotonicSeconds();
  HAVEN_ASSIGN_OR_RETURN(auto all, AllSnapshots(*repo));
  report.snapshots = all.size();
  {
    Marker marker(*repo, *live);
    for (const auto& m : all)
      if (!marked.count(m.id)) HAVEN_RETURN_IF_ERROR(marker.MarkSnapshot(m));
  }
  report.live_chunks = live->added();

  HAVEN_ASSIGN_OR_RETURN(std::vector<std::string> packs,
                         ListPackNames(repo->backend()));
  report.packs = packs.size();
  Phase(options,
        "measuring unused space in " + std::to_string(packs.size()) + " packs");
  Sweeper sweeper(*repo, *live, options, report);
  for (const std::string& name : packs)
    HAVEN_RETURN_IF_ERROR(sweeper.Measure(name));
  sweeper.Plan();
  Phase(options, "sweeping " + std::to_string(packs.size()) + " packs");
  size_t step = std::max<size_t>(packs.size() / 10, 1), done = 0;
  for (const std::string& name : packs) {
    HAVEN_RETURN_IF_ERROR(sweeper.SweepPack(name));
    if (++done % step == 0 && packs.size() >= 100)
      Phase(options, "swept " + std::to_string(done) + " of " +
                         std::to_string(packs.size()) + " packs");
  }
  HAVEN_RETURN_IF_ERROR(sweeper.Finish());

  if (!options.dry_run) {  // protection marks of recovery points now gone
    std::set<std::string> ids;
    for (const auto& m : all) ids.insert(m.id);
    // Best effort, as before: a marker left behind protects nothing.
    // Verification records (verified/<id>) of points now gone likewise.
    for (const std::string dir : {"protected/", "verified/"}) {
      auto marks = repo->backend().List(dir);
      for (const auto& o : marks.ok() ? *marks : std::vector<ObjectInfo>{}) {
        std::string id = o.name.substr(dir.size());
        if (IsSnapshotId(id) && !ids.count(id))
          (void)repo->backend().Delete(o.name);
      }
    }
  }
  if (!options.dry_run) {
    // Uploads a killed writer left unfinished a day ago hold space unseen.
    auto removed = repo->backend().RemoveAbandonedUploads(24 * 3600);
    if (removed.ok()) report.abandoned_uploads = *removed;
  }
  report.sweep_seconds = MonotonicSeconds() - sweep_start;
  return report;
}

nlohmann::ordered_json GcReportJson(const GcReport& r, bool dry_run) {
  nlohmann::ordered_json j;
  j["dry_run"] = dry_run;
  j["snapshots"] = r.snapshots;
  j["live_chunks"] = r.live_chunks;
  j["packs"] = r.packs;
  j["packs_deleted"] = r.packs_deleted;
  j["packs_repacked"] = r.packs_repacked;
  j["packs_written"] = r.packs_written;
  j["chunks_removed"] = r.chunks_removed;
  j["chunks_moved"] = r.chunks_moved;
  j["bytes_moved"] = r.bytes_moved;
  j["bytes_before"] = r.bytes_before;
  j["bytes_after"] = r.bytes_after;
  j["bytes_freed"] =
      r.bytes_before > r.bytes_after ? r.bytes_before - r.bytes_after : 0;
  j["unused_bytes_after"] = r.unused_bytes_after;
  j["mark_seconds"] = r.mark_seconds;
  j["wait_seconds"] = r.wait_seconds;
  j["sweep_seconds"] = r.sweep_seconds;
  j["skipped"] = r.skipped;
  j["packs_retained"] = r.packs_retained;
  if (r.retained_until > 0) j["retained_until"] = r.retained_until;
  j["abandoned_uploads"] = r.abandoned_uploads;
  return j;
}

}  // namespace haven::repository
