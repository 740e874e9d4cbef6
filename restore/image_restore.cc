#include "restore/image_restore.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>

#include "base/time.h"

namespace haven::restore {
namespace {

using repository::ChunkId;
using repository::ChunkType;

constexpr size_t kQueueDepth = 16;   // batches waiting for a worker
constexpr size_t kBatchChunks = 16;  // chunks handed to a worker at once
constexpr size_t kMaxReportedDamage = 50;

struct Target {
  std::string final_path, write_path;
  UniqueFd fd;
  bool block_device = false;
};

Result<Target> OpenTarget(const std::string& path, uint64_t size,
                          bool overwrite) {
  Target t;
  t.final_path = path;
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISBLK(st.st_mode)) {
      if (!overwrite)
        return AlreadyExists(
            path +
            " is a block device; pass --overwrite to write the image onto it");
      t.block_device = true;
      t.write_path = path;
      HAVEN_ASSIGN_OR_RETURN(t.fd, OpenFile(path, O_WRONLY));
      uint64_t dev_size = 0;
      if (::ioctl(t.fd.get(), BLKGETSIZE64, &dev_size) != 0)
        return ErrnoStatus("size of " + path, errno);
      if (dev_size < size)
        return InvalidArgument(path + " (" + std::to_string(dev_size) +
                               " bytes) is smaller than the image (" +
                               std::to_string(size) + " bytes)");
      // A device is not sparse: zero it first so holes read back as zeros.
      uint64_t range[2] = {0, size};
      if (size > 0 && ::ioctl(t.fd.get(), BLKZEROOUT, range) != 0)
        return ErrnoStatus("zero " + path, errno);
      return t;
    }
    if (!overwrite)
      return AlreadyExists(
          path + " already exists; choose another path or pass --overwrite");
    if (!S_ISREG(st.st_mode))
      return InvalidArgument(path + " is not a regular file");
  }
  t.write_path = path + ".haven-partial";
  ::unlink(t.write_path.c_str());  // a leftover of an interrupted restore
  HAVEN_ASSIGN_OR_RETURN(
      t.fd, OpenFile(t.write_path, O_WRONLY | O_CREAT | O_EXCL, 0600));
  if (::ftruncate(t.fd.get(), static_cast<off_t>(size)) != 0)
    return ErrnoStatus("size " + t.write_path, errno);
  return t;
}

struct Job {
  uint64_t index;
  ChunkId id;
};

}  // namespace

Result<ImageRestoreStats> RestoreImage(const repository::Repository& repo,
                                       const repository::Manifest& snapshot,
                                       const std::string& target,
                                       const ImageRestoreOptions& options) {
  double start = MonotonicSeconds();
  const repository::DiskManifest* disk =
      options.config ? nullptr : snapshot.FindDisk(options.disk);
  if (options.config)
    for (const auto* c : snapshot.ConfigFiles())
      if (c->name == options.disk) disk = c;
  if (!disk) {
    std::string names;
    for (const auto* d : snapshot.ImageDisks())
      names += (names.empty() ? "" : ", ") + d->name;
    return InvalidArgument("snapshot " + snapshot.id.substr(0, 8) +
                           " has disks: " + names + "; choose one with --disk");
  }
  if (options.format != "raw")
    return InvalidArgument("restore format " + options.format +
                           " is not supported yet");
  const uint64_t size = disk->size;
  const uint32_t cs = disk->chunk_size;
  HAVEN_ASSIGN_OR_RETURN(Target out,
                         OpenTarget(target, size, options.overwrite));
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::vector<Job>> queue;
  bool walk_done = false, fatal = false;
  Status fatal_error;
  std::vector<std::string> damage;
  uint64_t damaged_chunks = 0;
  std::atomic<uint64_t> written{0};

  auto worker = [&] {
    repository::ReadContext ctx;
    Bytes data;
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
        uint64_t off = job.index * cs;
        uint64_t len = std::min<uint64_t>(cs, size - off);
        Status s = repo.ReadChunk(ChunkType::kData, job.id, data, ctx);
        if (s.ok() && data.size() != len)
          s = DataLoss("chunk " + job.id.Hex() + " holds " +
                       std::to_string(data.size()) +
                       " bytes where the image needs " + std::to_string(len));
        if (s.ok() && options.verify_ids &&
            !(repo.IdFor(ChunkType::kData, data) == job.id))
          s = DataLoss("chunk " + job.id.Hex() + " does not match its id");
        if (!s.ok()) {
          std::lock_guard<std::mutex> l(mu);
          if (s.code() != Code::kDataLoss) {
            fatal = true;
            fatal_error = s;
            cv.notify_all();
            return;
          }
          ++damaged_chunks;
          if (damage.size() < kMaxReportedDamage) {
            char range[80];
            std::snprintf(range, sizeof range, "image offsets %llu-%llu: ",
                          static_cast<unsigned long long>(off),
                          static_cast<unsigned long long>(off + len - 1));
            damage.push_back(range + s.message());
          }
          continue;
        }
        s = PWriteAll(out.fd.get(), data.data(), len, off, out.write_path);
        if (!s.ok()) {
          std::lock_guard<std::mutex> l(mu);
          fatal = true;
          fatal_error = s;
          cv.notify_all();
          return;
        }
        written += len;
      }
      // Start writeback of this batch now, so the final fsync finds little
      // left to do and disk writes overlap decryption.
      if (!batch.empty()) {
        uint64_t first = batch.front().index * cs;
        uint64_t end = std::min<uint64_t>(size, (batch.back().index + 1) * cs);
        ::sync_file_range(out.fd.get(), static_cast<off_t>(first),
                          static_cast<off_t>(end - first),
                          SYNC_FILE_RANGE_WRITE);
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
      disk->tree,
      [&](const ChunkId& id) -> Result<Bytes> {
        Bytes node;
        HAVEN_RETURN_IF_ERROR(repo.LoadTreeNode(id, node, tree_ctx));
        return node;
      },
      [&](uint64_t index, const ChunkId& id) -> Status {
        pending.push_back({index, id});
        if (pending.size() < kBatchChunks) return OkStatus();
        HAVEN_RETURN_IF_ERROR(push_pending());
        double now = MonotonicSeconds();
        if (options.progress && now - last_report > 0.2) {
          last_report = now;
          options.progress(
              {std::min(size, index * cs), size, 0, now - start, false});
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
          walk.WithContext("reading the chunk list of disk " + disk->name);
    }
    cv.notify_all();
  }
  for (auto& t : threads) t.join();

  auto discard = [&] {
    if (!out.block_device) ::unlink(out.write_path.c_str());
  };
  if (fatal) {
    discard();
    return fatal_error;
  }
  if (damaged_chunks > 0) {
    discard();
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
  HAVEN_RETURN_IF_ERROR(FsyncFd(out.fd.get(), out.write_path));
  if (!out.block_device) {
    if (::rename(out.write_path.c_str(), out.final_path.c_str()) != 0) {
      int err = errno;
      discard();
      return ErrnoStatus("rename to " + out.final_path, err);
    }
  }
  ImageRestoreStats stats;
  stats.size = size;
  stats.data_bytes = written;
  stats.hole_bytes = size - written;
  stats.duration_seconds = MonotonicSeconds() - start;
  if (options.progress)
    options.progress({size, size, 0, stats.duration_seconds, true});
  return stats;
}

}  // namespace haven::restore
