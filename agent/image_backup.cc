#include "agent/image_backup.h"

#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "base/time.h"
#include "repository/retention.h"
#include "snapshot/image_source.h"

namespace haven::agent {
namespace {

using repository::ChunkId;
using repository::ChunkType;
using repository::Manifest;
using repository::Repository;

constexpr uint64_t kBatchBytes = 1 << 20;  // chunks travel in ~1 MiB batches
constexpr uint64_t kBatchWindow = 64;      // batches buffered ahead of the tree

// A run of consecutive chunks read with one pread and handed to one worker,
// so threads synchronize once per batch rather than once per chunk.
struct Batch {
  uint64_t index;  // batch number
  uint64_t first_chunk;
  uint32_t chunks;
  size_t buffer;  // SIZE_MAX: the whole batch is a hole, nothing read
};

// Shared state of one backup's threads, guarded by one mutex.
class Pipeline {
 public:
  Pipeline(Repository& repo, snapshot::ImageSource& src, uint32_t chunk_size,
           int workers)
      : repo_(repo), src_(src), chunk_size_(chunk_size), workers_(workers) {
    batch_chunks_ =
        static_cast<uint32_t>(std::max<uint64_t>(1, kBatchBytes / chunk_size));
    size_t n = 2 + 2 * static_cast<size_t>(workers);
    buffers_.resize(n);
    for (size_t i = 0; i < n; ++i) {
      buffers_[i].resize(static_cast<size_t>(batch_chunks_) * chunk_size);
      free_.push_back(i);
    }
    count_ = (src.size() + chunk_size - 1) / chunk_size;
    batches_ = (count_ + batch_chunks_ - 1) / batch_chunks_;
    writer_ = repo.NewWriter();
  }

  Result<repository::TreeRoot> Run(const ImageBackupOptions& opt,
                                   repository::BackupStats& stats);
  repository::ChunkWriter& writer() { return *writer_; }

 private:
  void Fail(const Status& s) {
    std::lock_guard<std::mutex> l(mu_);
    if (!failed_) {
      failed_ = true;
      error_ = s;
    }
    reader_cv_.notify_all();
    worker_cv_.notify_all();
    result_cv_.notify_all();
  }
  uint64_t ChunkLen(uint64_t chunk) const {
    return std::min<uint64_t>(chunk_size_, src_.size() - chunk * chunk_size_);
  }
  void Reader();
  void Worker();

  Repository& repo_;
  snapshot::ImageSource& src_;
  uint32_t chunk_size_;
  int workers_;
  uint32_t batch_chunks_ = 1;
  uint64_t count_ = 0, batches_ = 0;
  std::unique_ptr<repository::ChunkWriter> writer_;
  std::vector<Bytes> buffers_;
  std::atomic<uint64_t> read_bytes_{0};

  std::mutex mu_;
  std::condition_variable reader_cv_, worker_cv_, result_cv_;
  std::vector<size_t> free_;
  std::deque<Batch> work_;
  std::map<uint64_t, std::vector<ChunkId>> results_;
  uint64_t consumed_ = 0;  // batches taken by the tree builder
  bool reader_done_ = false;
  bool failed_ = false;
  Status error_;
};

void Pipeline::Reader() {
  for (uint64_t b = 0; b < batches_; ++b) {
    uint64_t first = b * batch_chunks_;
    uint32_t n = static_cast<uint32_t>(
        std::min<uint64_t>(batch_chunks_, count_ - first));
    uint64_t off = first * chunk_size_;
    uint64_t len = std::min<uint64_t>(static_cast<uint64_t>(n) * chunk_size_,
                                      src_.size() - off);
    auto has_data = src_.RangeHasData(off, off + len);
    if (!has_data.ok()) return Fail(has_data.status());
    size_t buf = SIZE_MAX;
    {
      std::unique_lock<std::mutex> l(mu_);
      reader_cv_.wait(l, [&] {
        return failed_ ||
               (b < consumed_ + kBatchWindow && (!*has_data || !free_.empty()));
      });
      if (failed_) return;
      if (!*has_data) {  // unallocated: every chunk is a hole, nothing to read
        results_[b] = std::vector<ChunkId>(n);
        result_cv_.notify_one();
        continue;
      }
      buf = free_.back();
      free_.pop_back();
    }
    Status s = src_.Read(off, buffers_[buf].data(), len);
    if (!s.ok()) return Fail(s);
    read_bytes_ += len;
    std::lock_guard<std::mutex> l(mu_);
    work_.push_back({b, first, n, buf});
    worker_cv_.notify_one();
  }
  std::lock_guard<std::mutex> l(mu_);
  reader_done_ = true;
  worker_cv_.notify_all();
}

void Pipeline::Worker() {
  repository::WriteContext ctx(repo_.config().compression_level);
  while (true) {
    Batch batch;
    {
      std::unique_lock<std::mutex> l(mu_);
      worker_cv_.wait(
          l, [&] { return failed_ || !work_.empty() || reader_done_; });
      if (failed_ || work_.empty()) return;
      batch = work_.front();
      work_.pop_front();
    }
    std::vector<ChunkId> ids(batch.chunks);
    for (uint32_t i = 0; i < batch.chunks; ++i) {
      uint64_t chunk = batch.first_chunk + i;
      const uint8_t* data =
          buffers_[batch.buffer].data() + static_cast<size_t>(i) * chunk_size_;
      size_t len = ChunkLen(chunk);
      if (IsAllZero(data, len)) continue;  // zero id: a hole
      ids[i] = repo_.IdFor(ChunkType::kData, ByteSpan(data, len));
      auto r = writer_->Put(ChunkType::kData, ids[i], ByteSpan(data, len), ctx);
      if (!r.ok())
        return Fail(r.status().WithContext(
            "image offset " + std::to_string(chunk * chunk_size_)));
    }
    std::lock_guard<std::mutex> l(mu_);
    results_[batch.index] = std::move(ids);
    free_.push_back(batch.buffer);
    reader_cv_.notify_one();
    result_cv_.notify_one();
  }
}

Result<repository::TreeRoot> Pipeline::Run(const ImageBackupOptions& opt,
                                           repository::BackupStats& stats) {
  double start = MonotonicSeconds(), last_report = 0;
  std::vector<std::thread> threads;
  threads.emplace_back([this] { Reader(); });
  for (int i = 0; i < workers_; ++i) threads.emplace_back([this] { Worker(); });

  repository::WriteContext tree_ctx(repo_.config().compression_level);
  repository::TreeWriter tree([&](ByteSpan node) -> Result<ChunkId> {
    ChunkId id = repo_.IdFor(ChunkType::kTree, node);
    HAVEN_RETURN_IF_ERROR(
        writer_->Put(ChunkType::kTree, id, node, tree_ctx).status());
    return id;
  });
  for (uint64_t b = 0; b < batches_; ++b) {
    std::vector<ChunkId> ids;
    {
      std::unique_lock<std::mutex> l(mu_);
      result_cv_.wait(l, [&] { return failed_ || results_.count(b); });
      if (failed_) break;
      auto it = results_.find(b);
      ids = std::move(it->second);
      results_.erase(it);
      consumed_ = b + 1;
      reader_cv_.notify_one();
    }
    Status s;
    for (size_t i = 0; i < ids.size() && s.ok(); ++i) {
      s = tree.Add(ids[i]);
      if (ids[i].IsZero()) stats.hole_bytes += ChunkLen(b * batch_chunks_ + i);
    }
    if (!s.ok()) {
      Fail(s);
      break;
    }
    double now = MonotonicSeconds();
    if (opt.progress && now - last_report >= opt.progress_interval) {
      last_report = now;
      opt.progress({std::min(src_.size(),
                             (b + 1) * batch_chunks_ * uint64_t{chunk_size_}),
                    src_.size(), writer_->new_stored_bytes(), now - start,
                    false});
    }
  }
  for (auto& t : threads) t.join();
  {
    std::lock_guard<std::mutex> l(mu_);
    if (failed_) return error_;
  }
  stats.read_bytes = read_bytes_;
  return tree.Finish();
}

}  // namespace

Result<Manifest> BackupImage(Repository& repo, const std::string& path,
                             const ImageBackupOptions& options) {
  if (options.name.empty())
    return InvalidArgument("a backup name is required (--name)");
  double start = MonotonicSeconds();
  std::string started = NowIso8601();  // the recovery point's time
  if (!options.time.empty()) {
    auto t = repository::ParseIsoTime(options.time);
    if (!t.ok()) return t.status().WithContext("--time");
    started = options.time;
  }
  HAVEN_ASSIGN_OR_RETURN(auto src, snapshot::ImageSource::Open(path));
  HAVEN_ASSIGN_OR_RETURN(auto before, src->Fingerprint());
  int workers = options.threads > 0
                    ? options.threads
                    : std::max(1u, std::thread::hardware_concurrency());
  uint32_t chunk_size = repo.config().chunk_size;
  Manifest m;
  Pipeline pipeline(repo, *src, chunk_size, workers);
  HAVEN_ASSIGN_OR_RETURN(repository::TreeRoot root,
                         pipeline.Run(options, m.stats));
  HAVEN_RETURN_IF_ERROR(pipeline.writer().Flush());
  HAVEN_ASSIGN_OR_RETURN(auto after, src->Fingerprint());

  m.name = options.name;
  m.kind = "image";
  m.time = started;
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  m.hostname = host;
  m.tool = "haven 0.1.0";
  if (!(before == after)) {
    m.consistency = "inconsistent";
    m.consistency_reason =
        "the image changed while it was read; it may not be usable";
  } else {
    m.consistency = "offline";
    m.consistency_reason =
        src->is_block_device()
            ? "block device read directly; its size did not change"
            : "image file read directly; unchanged during the read";
  }
  auto parent = repo.FindSnapshot(options.name + ":latest");
  if (parent.ok()) m.parent = parent->id;
  repository::DiskManifest disk;
  disk.name = options.disk_name;
  disk.source = path;
  disk.size = src->size();
  disk.chunk_size = chunk_size;
  disk.tree = root;
  m.disks.push_back(disk);
  m.stats.logical_bytes = src->size();
  m.stats.new_chunks = pipeline.writer().new_chunks();
  m.stats.new_raw_bytes = pipeline.writer().new_raw_bytes();
  m.stats.new_stored_bytes = pipeline.writer().new_stored_bytes();
  m.stats.duration_seconds = MonotonicSeconds() - start;
  HAVEN_RETURN_IF_ERROR(repo.CommitSnapshot(m));
  if (options.progress)
    options.progress({src->size(), src->size(), m.stats.new_stored_bytes,
                      m.stats.duration_seconds, true});
  return m;
}

}  // namespace haven::agent
