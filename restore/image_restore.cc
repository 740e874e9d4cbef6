#include "restore/image_restore.h"

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "base/time.h"
#include "restore/image_writer.h"

namespace haven::restore {
namespace {

using repository::ChunkId;
using repository::ChunkType;

constexpr size_t kQueueDepth = 16;   // batches waiting for a worker
constexpr size_t kBatchChunks = 16;  // chunks handed to a worker at once
constexpr size_t kMaxReportedDamage = 50;

struct Job {
  uint64_t index;
  ChunkId id;
};

}  // namespace

Status VerifyIdsRefused() {
  return InvalidArgument(
      "--verify-ids needs the repository's key; a restore through the "
      "appliance is checked by the appliance as it reads");
}

Status ReadDataChunk(const repository::PointReader& repo, const ChunkId& id,
                     uint64_t len, bool verify_id, repository::ReadContext& ctx,
                     Bytes& data) {
  if (verify_id && !repo.CanComputeIds()) return VerifyIdsRefused();
  HAVEN_RETURN_IF_ERROR(repo.ReadChunk(ChunkType::kData, id, data, ctx));
  if (data.size() != len)
    return DataLoss("chunk " + id.Hex() + " holds " +
                    std::to_string(data.size()) +
                    " bytes where the image needs " + std::to_string(len));
  if (verify_id && !(repo.IdFor(ChunkType::kData, data) == id))
    return DataLoss("chunk " + id.Hex() + " does not match its id");
  return OkStatus();
}

Result<std::string> ReadConfigFile(const repository::PointReader& repo,
                                   const repository::Manifest& snapshot,
                                   const std::string& name, size_t max_bytes) {
  const repository::DiskManifest* file = snapshot.FindConfig(name);
  if (!file)
    return NotFound("snapshot " + snapshot.id.substr(0, 8) + " holds no " +
                    name);
  if (file->size > max_bytes)
    return DataLoss(name + " in snapshot " + snapshot.id.substr(0, 8) +
                    " claims " + std::to_string(file->size) +
                    " bytes, more than the " + std::to_string(max_bytes) +
                    " allowed");
  std::string out(file->size, '\0');
  repository::ReadContext ctx;
  Bytes data;
  Status s = repository::WalkTree(
      file->tree, repo.TreeNodeLoader(ctx),
      [&](uint64_t index, const ChunkId& id) -> Status {
        const uint64_t off = index * file->chunk_size;
        if (off >= out.size())
          return DataLoss("chunk list of " + name + " runs past its size");
        HAVEN_RETURN_IF_ERROR(ReadDataChunk(
            repo, id, std::min<uint64_t>(file->chunk_size, out.size() - off),
            false, ctx, data));
        std::copy(data.begin(), data.end(), out.begin() + off);
        return OkStatus();
      },
      file->chunk_size);
  if (!s.ok()) return s.WithContext("reading " + name);
  return out;
}

Result<uint64_t> DiskDataBytes(const repository::PointReader& repo,
                               const repository::DiskManifest& disk) {
  repository::ReadContext ctx;
  uint64_t bytes = 0;
  Status s = repository::WalkTree(
      disk.tree, repo.TreeNodeLoader(ctx),
      [&](uint64_t index, const ChunkId& id) -> Status {
        if (id.IsZero()) return OkStatus();
        const uint64_t off = index * disk.chunk_size;
        if (off < disk.size)
          bytes += std::min<uint64_t>(disk.chunk_size, disk.size - off);
        return OkStatus();
      },
      disk.chunk_size);
  if (!s.ok()) return s.WithContext("the chunk list of disk " + disk.name);
  return bytes;
}

Result<ImageRestoreStats> RestoreImage(const repository::PointReader& repo,
                                       const repository::Manifest& snapshot,
                                       const std::string& target,
                                       const ImageRestoreOptions& options) {
  double start = MonotonicSeconds();
  if (options.verify_ids && !repo.CanComputeIds()) return VerifyIdsRefused();
  HAVEN_ASSIGN_OR_RETURN(ImageFormat format, ParseImageFormat(options.format));
  if (snapshot.kind == "files")
    return InvalidArgument("snapshot " + snapshot.id.substr(0, 8) +
                           " is a file backup, not a disk image: use `haven "
                           "restore files`");
  const repository::DiskManifest* disk = options.config
                                             ? snapshot.FindConfig(options.disk)
                                             : snapshot.FindDisk(options.disk);
  if (!disk) {
    std::string names;
    for (const auto* d : snapshot.ImageDisks())
      names += (names.empty() ? "" : ", ") + d->name;
    return InvalidArgument("snapshot " + snapshot.id.substr(0, 8) +
                           " has disks: " + names + "; choose one with --disk");
  }
  if (options.config && format != ImageFormat::kRaw)
    return InvalidArgument("config file " + disk->name +
                           " is restored as it was stored; only disks have "
                           "an image format");
  const uint64_t size = disk->size;
  const uint32_t cs = disk->chunk_size;
  HAVEN_ASSIGN_OR_RETURN(
      std::unique_ptr<ImageWriter> out,
      OpenImageWriter({target, size, format, options.overwrite}));
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::vector<Job>> queue;
  bool walk_done = false, fatal = false;
  Status fatal_error;
  std::vector<std::string> damage;
  uint64_t damaged_chunks = 0;
  std::atomic<uint64_t> written{0};

  // A fatal error stops every thread; a damaged chunk is noted and the
  // walk goes on, so that the error can name every damaged range.
  auto fail = [&](const Status& s) {
    std::lock_guard<std::mutex> l(mu);
    if (!fatal) fatal_error = s;
    fatal = true;
    cv.notify_all();
  };
  auto note_damage = [&](const Status& s, uint64_t off, uint64_t len) {
    std::lock_guard<std::mutex> l(mu);
    ++damaged_chunks;
    if (damage.size() >= kMaxReportedDamage) return;
    char range[80];
    std::snprintf(range, sizeof range, "image offsets %llu-%llu: ",
                  static_cast<unsigned long long>(off),
                  static_cast<unsigned long long>(off + len - 1));
    damage.push_back(range + s.message());
  };
  auto worker = [&] {
    repository::ReadContext ctx;
    Bytes data;
    WriteMerger merger(*out);
    while (true) {
      std::vector<Job> batch;
      {
        std::unique_lock<std::mutex> l(mu);
        cv.wait(l, [&] { return fatal || !queue.empty() || walk_done; });
        if (fatal || queue.empty()) return;
        batch = std::move(queue.front());
        queue.pop_front();
        cv.notify_all();
      }
      for (const Job& job : batch) {
        const uint64_t off = job.index * cs;
        const uint64_t len = std::min<uint64_t>(cs, size - off);
        Status s =
            ReadDataChunk(repo, job.id, len, options.verify_ids, ctx, data);
        if (s.code() == Code::kDataLoss) {
          note_damage(s, off, len);
          continue;
        }
        if (s.ok()) s = merger.Add(off, data);
        if (!s.ok()) return fail(s);
        written += len;
      }
      if (Status s = merger.Flush(); !s.ok()) return fail(s);
      // Start writeback of this batch now, so the final fsync finds little
      // left to do and disk writes overlap decryption.
      if (!batch.empty()) {
        uint64_t first = batch.front().index * cs;
        uint64_t end = std::min<uint64_t>(size, (batch.back().index + 1) * cs);
        out->Written(first, end - first);
      }
    }
  };

  int n =
      options.threads > 0
          ? options.threads
          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) threads.emplace_back(worker);

  std::vector<Job> pending;
  auto push_pending = [&]() -> Status {
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return fatal || queue.size() < kQueueDepth; });
    if (fatal) return fatal_error;
    queue.push_back(std::move(pending));
    pending.clear();
    cv.notify_all();
    return OkStatus();
  };
  repository::ReadContext tree_ctx;
  double last_report = 0;
  Status walk = repository::WalkTree(
      disk->tree, repo.TreeNodeLoader(tree_ctx),
      [&](uint64_t index, const ChunkId& id) -> Status {
        pending.push_back({index, id});
        if (pending.size() < kBatchChunks) return OkStatus();
        HAVEN_RETURN_IF_ERROR(options.cancel.Check("the restore to " + target));
        HAVEN_RETURN_IF_ERROR(push_pending());
        double now = MonotonicSeconds();
        if (options.progress && now - last_report >= options.progress_interval) {
          last_report = now;
          Progress p = ByteProgress(std::min(size, index * cs), size, 0,
                                    now - start, false);
          p.phase = "restore";
          p.item = disk->name;
          options.progress(p);
        }
        return OkStatus();
      },
      cs);
  if (walk.ok() && !pending.empty()) walk = push_pending();
  {
    std::lock_guard<std::mutex> l(mu);
    walk_done = true;
    if (!walk.ok() && !fatal) {
      fatal = true;
      fatal_error =
          walk.code() == Code::kCancelled
              ? walk
              : walk.WithContext("reading the chunk list of disk " +
                                 disk->name);
    }
    cv.notify_all();
  }
  for (auto& t : threads) t.join();

  if (fatal) {
    out->Discard();
    return fatal_error;
  }
  if (damaged_chunks > 0) {
    out->Discard();
    std::string msg = "restore failed: " + std::to_string(damaged_chunks) +
                      " chunk(s) of disk " + disk->name +
                      " could not be read; nothing was written to " + target +
                      ":";
    for (const auto& d : damage) msg += "\n  " + d;
    if (damaged_chunks > damage.size())
      msg += "\n  ... and " + std::to_string(damaged_chunks - damage.size()) +
             " more";
    return DataLoss(msg);
  }
  HAVEN_RETURN_IF_ERROR(out->Finish());
  ImageRestoreStats stats;
  stats.size = size;
  stats.data_bytes = written;
  stats.hole_bytes = size - written;
  stats.duration_seconds = MonotonicSeconds() - start;
  if (options.progress) {
    Progress p = ByteProgress(size, size, 0, stats.duration_seconds, true);
    p.phase = "restore";
    p.item = disk->name;
    options.progress(p);
  }
  return stats;
}

}  // namespace haven::restore
