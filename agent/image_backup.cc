#include "agent/image_backup.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "base/file.h"
#include "base/priority.h"
#include "base/rate_limiter.h"
#include "base/time.h"
#include "snapshot/foreign_image.h"
#include "snapshot/image_source.h"
#include "snapshot/nbd_source.h"

namespace haven::agent {
namespace {

using repository::ChunkId;
using repository::ChunkType;
using repository::Manifest;
using repository::Repository;
using snapshot::DiskSource;
using snapshot::RangeState;

constexpr uint64_t kBatchBytes = 1 << 20;  // chunks travel in ~1 MiB batches
constexpr uint64_t kBatchWindow = 64;      // batches buffered ahead of the tree

// A run of consecutive chunks read with one pread and handed to one worker,
// so threads synchronize once per batch rather than once per chunk.
struct Batch {
  uint64_t index;  // batch number
  uint64_t first_chunk;
  uint32_t chunks;
  size_t buffer;  // SIZE_MAX: nothing read (holes and kept chunks only)
  std::vector<RangeState> states;  // one per chunk
};

// A batch's chunk ids in order; kKeep entries are filled in from the parent
// by the tree builder.
struct BatchResult {
  std::vector<ChunkId> ids;
  std::vector<RangeState> states;
};

// Shared state of one backup's threads, guarded by one mutex.
class Pipeline {
 public:
  Pipeline(PointSink& sink, DiskSource& src, uint32_t chunk_size, int workers)
      : sink_(sink), src_(src), chunk_size_(chunk_size), workers_(workers) {
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
  }

  Result<repository::TreeRoot> Run(const CaptureOptions& opt,
                                   const repository::TreeRoot* parent,
                                   DiskCapture& out);

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

  PointSink& sink_;
  DiskSource& src_;
  uint32_t chunk_size_;
  int workers_;
  uint32_t batch_chunks_ = 1;
  uint64_t count_ = 0, batches_ = 0;
  bool may_keep_ = false;  // a parent tree exists for kKeep chunks
  std::vector<Bytes> buffers_;
  std::atomic<uint64_t> read_bytes_{0}, changed_bytes_{0};

  std::mutex mu_;
  std::condition_variable reader_cv_, worker_cv_, result_cv_;
  std::vector<size_t> free_;
  std::deque<Batch> work_;
  std::map<uint64_t, BatchResult> results_;
  uint64_t consumed_ = 0;  // batches taken by the tree builder
  bool reader_done_ = false;
  bool failed_ = false;
  Status error_;
  RateLimiter* limit_ = nullptr;  // shared with the job's other readers
  CancelToken cancel_;
};

void Pipeline::Reader() {
  std::vector<RangeState> states;
  for (uint64_t b = 0; b < batches_; ++b) {
    uint64_t first = b * batch_chunks_;
    uint32_t n = static_cast<uint32_t>(
        std::min<uint64_t>(batch_chunks_, count_ - first));
    uint64_t off = first * chunk_size_;
    uint64_t len = std::min<uint64_t>(static_cast<uint64_t>(n) * chunk_size_,
                                      src_.size() - off);
    states.assign(n, RangeState::kRead);
    bool any_read = false;
    for (uint32_t i = 0; i < n; ++i) {
      uint64_t begin = off + uint64_t{i} * chunk_size_;
      auto state = src_.Classify(begin, begin + ChunkLen(first + i));
      if (!state.ok()) return Fail(state.status());
      if (*state == RangeState::kKeep && !may_keep_)
        return Fail(Internal(src_.description() +
                             ": unchanged range reported without a parent"));
      states[i] = *state;
      if (*state == RangeState::kRead) any_read = true;
      if (*state != RangeState::kKeep) changed_bytes_ += ChunkLen(first + i);
    }
    size_t buf = SIZE_MAX;
    {
      std::unique_lock<std::mutex> l(mu_);
      reader_cv_.wait(l, [&] {
        return failed_ ||
               (b < consumed_ + kBatchWindow && (!any_read || !free_.empty()));
      });
      if (failed_) return;
      if (!any_read) {  // holes and kept chunks only: nothing to read
        results_[b] = {std::vector<ChunkId>(n), states};
        result_cv_.notify_one();
        continue;
      }
      buf = free_.back();
      free_.pop_back();
    }
    // One read per run of consecutive chunks to read.
    for (uint32_t i = 0; i < n;) {
      if (states[i] != RangeState::kRead) {
        ++i;
        continue;
      }
      uint32_t j = i;
      while (j < n && states[j] == RangeState::kRead) ++j;
      uint64_t run_off = off + uint64_t{i} * chunk_size_;
      uint64_t run_len = std::min<uint64_t>(uint64_t{j - i} * chunk_size_,
                                            off + len - run_off);
      if (limit_ && !limit_->Acquire(run_len, cancel_))
        return Fail(cancel_.Check("reading " + src_.description()));
      Status s = src_.Read(
          run_off, buffers_[buf].data() + size_t{i} * chunk_size_, run_len);
      if (!s.ok()) return Fail(s);
      read_bytes_ += run_len;
      i = j;
    }
    std::lock_guard<std::mutex> l(mu_);
    work_.push_back({b, first, n, buf, states});
    worker_cv_.notify_one();
  }
  std::lock_guard<std::mutex> l(mu_);
  reader_done_ = true;
  worker_cv_.notify_all();
}

void Pipeline::Worker() {
  repository::WriteContext ctx(sink_.compression_level());
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
      if (batch.states[i] != RangeState::kRead) continue;
      uint64_t chunk = batch.first_chunk + i;
      const uint8_t* data =
          buffers_[batch.buffer].data() + static_cast<size_t>(i) * chunk_size_;
      size_t len = ChunkLen(chunk);
      if (IsAllZero(data, len)) continue;  // zero id: a hole
      ids[i] = sink_.IdFor(ChunkType::kData, ByteSpan(data, len));
      auto r = sink_.Put(ChunkType::kData, ids[i], ByteSpan(data, len), ctx);
      if (!r.ok())
        return Fail(
            r.status().WithContext(src_.description() + " offset " +
                                   std::to_string(chunk * chunk_size_)));
    }
    std::lock_guard<std::mutex> l(mu_);
    results_[batch.index] = {std::move(ids), std::move(batch.states)};
    free_.push_back(batch.buffer);
    reader_cv_.notify_one();
    result_cv_.notify_one();
  }
}

Result<repository::TreeRoot> Pipeline::Run(const CaptureOptions& opt,
                                           const repository::TreeRoot* parent,
                                           DiskCapture& out) {
  double start = MonotonicSeconds(), last_report = 0;
  repository::ReadContext parent_ctx;
  std::optional<repository::TreeReader> parent_tree;
  if (parent) {
    if (parent->count != count_)
      return Internal(src_.description() +
                      ": parent point has a different chunk count");
    parent_tree.emplace(*parent, sink_.NodeLoader(parent_ctx));
    may_keep_ = true;
  }
  std::vector<std::thread> threads;
  limit_ = opt.limit_read.get();
  cancel_ = opt.cancel;
  threads.emplace_back([this] { Reader(); });
  for (int i = 0; i < workers_; ++i) threads.emplace_back([this] { Worker(); });

  repository::WriteContext tree_ctx(sink_.compression_level());
  repository::TreeWriter tree([&](ByteSpan node) -> Result<ChunkId> {
    ChunkId id = sink_.IdFor(ChunkType::kTree, node);
    HAVEN_RETURN_IF_ERROR(
        sink_.Put(ChunkType::kTree, id, node, tree_ctx).status());
    return id;
  });
  const uint64_t new_before = sink_.new_stored_bytes();
  for (uint64_t b = 0; b < batches_; ++b) {
    if (opt.cancel.cancelled()) {
      Fail(opt.cancel.Check("the backup of " + src_.description()));
      break;
    }
    BatchResult r;
    {
      std::unique_lock<std::mutex> l(mu_);
      result_cv_.wait(l, [&] { return failed_ || results_.count(b); });
      if (failed_) break;
      auto it = results_.find(b);
      r = std::move(it->second);
      results_.erase(it);
      consumed_ = b + 1;
      reader_cv_.notify_one();
    }
    Status s;
    for (size_t i = 0; i < r.ids.size() && s.ok(); ++i) {
      const uint64_t chunk = b * batch_chunks_ + i;
      if (r.states[i] == RangeState::kKeep) {
        auto kept = parent_tree->Get(chunk);
        if (!kept.ok()) {
          s = kept.status().WithContext("chunk list of the parent point (" +
                                        src_.description() + ")");
          break;
        }
        r.ids[i] = *kept;
      }
      s = tree.Add(r.ids[i]);
      if (r.ids[i].IsZero()) out.hole_bytes += ChunkLen(chunk);
    }
    if (!s.ok()) {
      Fail(s);
      break;
    }
    double now = MonotonicSeconds();
    if (opt.progress && now - last_report >= opt.progress_interval) {
      last_report = now;
      uint64_t done = std::min(src_.size(),
                               (b + 1) * batch_chunks_ * uint64_t{chunk_size_});
      Progress p =
          ByteProgress(opt.done_before + done, opt.total_bytes,
                       opt.new_before + sink_.new_stored_bytes() - new_before,
                       now - opt.started, false);
      p.phase = "backup";
      p.item = opt.item.empty() ? src_.description() : opt.item;
      opt.progress(p);
    }
  }
  for (auto& t : threads) t.join();
  {
    std::lock_guard<std::mutex> l(mu_);
    if (failed_) return error_;
  }
  out.read_bytes = read_bytes_;
  out.changed_bytes = changed_bytes_;
  out.seconds = MonotonicSeconds() - start;
  return tree.Finish();
}

// A config file, read as a disk from memory.
class MemorySource : public DiskSource {
 public:
  MemorySource(std::string name, const std::string& data)
      : name_(std::move(name)), data_(data) {}
  const std::string& description() const override { return name_; }
  uint64_t size() const override { return data_.size(); }
  Result<RangeState> Classify(uint64_t, uint64_t) override {
    return RangeState::kRead;
  }
  Status Read(uint64_t offset, uint8_t* buf, size_t len) override {
    if (offset > data_.size() || len > data_.size() - offset)
      return Internal("read past the end of " + name_);
    std::memcpy(buf, data_.data() + offset, len);
    return OkStatus();
  }
  std::string consistency_reason() const override { return ""; }

 private:
  std::string name_;
  const std::string& data_;
};

}  // namespace

Status StoreConfigFiles(PointSink& sink,
                        const std::vector<snapshot::ConfigFile>& files,
                        Manifest& m) {
  for (const auto& f : files) {
    if (!repository::IsSafeConfigName(f.name)) {
      m.notes.push_back("config file '" + f.name + "' skipped: odd name");
      continue;
    }
    // Names are unique in a manifest (two files of one name in different
    // folders keep the first).
    if (std::any_of(m.disks.begin(), m.disks.end(),
                    [&](const auto& d) { return d.name == f.name; })) {
      m.notes.push_back("config file '" + f.name +
                        "' skipped: a file of that name is already stored");
      continue;
    }
    MemorySource src(f.name, f.data);
    CaptureOptions co;
    co.threads = 1;
    DiskCapture cap;
    HAVEN_ASSIGN_OR_RETURN(repository::DiskManifest d,
                           CaptureDisk(sink, src, nullptr, co, cap));
    d.name = f.name;
    d.kind = "config";
    m.disks.push_back(std::move(d));
  }
  return OkStatus();
}

Result<std::unique_ptr<DiskSource>> OpenImage(const std::string& path,
                                              const std::string& format,
                                              snapshot::ImageFormat& used) {
  using snapshot::ImageFormat;
  ImageFormat f = ImageFormat::kRaw;
  if (format == "auto") {
    HAVEN_ASSIGN_OR_RETURN(f, snapshot::DetectImageFormat(path));
  } else {
    bool known = false;
    for (ImageFormat g :
         {ImageFormat::kRaw, ImageFormat::kQcow2, ImageFormat::kVhd,
          ImageFormat::kVhdx, ImageFormat::kVmdk})
      if (format == snapshot::FormatName(g)) {
        f = g;
        known = true;
      }
    if (!known)
      return InvalidArgument("unknown image format '" + format +
                             "' (auto, raw, qcow2, vhd, vhdx or vmdk)");
  }
  used = f;
  switch (f) {
    case ImageFormat::kRaw: {
      HAVEN_ASSIGN_OR_RETURN(auto src, snapshot::ImageSource::Open(path));
      return std::unique_ptr<DiskSource>(std::move(src));
    }
    case ImageFormat::kQcow2: {
      HAVEN_RETURN_IF_ERROR(OpenFile(path, O_RDONLY).status());
      snapshot::NbdSpec spec;
      spec.description = path;
      spec.command = {"qemu-nbd", "--read-only", "--format=qcow2", "--", path};
      spec.watch_files = {path};
      spec.consistency_reason =
          "qcow2 image (with its backing chain) read directly; unchanged "
          "during the read";
      HAVEN_ASSIGN_OR_RETURN(auto src, snapshot::NbdSource::Open(spec));
      return std::unique_ptr<DiskSource>(std::move(src));
    }
    default:
      return snapshot::OpenForeignImage(path, f);
  }
}

Result<repository::DiskManifest> CaptureDisk(
    PointSink& sink, DiskSource& src, const repository::DiskManifest* parent,
    const CaptureOptions& options, DiskCapture& capture) {
  int workers = options.threads > 0
                    ? options.threads
                    : std::max(1u, std::thread::hardware_concurrency());
  const uint32_t chunk_size = sink.chunk_size();
  if (chunk_size == 0)
    return Internal(src.description() + ": the sink's chunk size is 0");
  const repository::TreeRoot* parent_tree = nullptr;
  if (parent) {
    if (parent->size != src.size() || parent->chunk_size != chunk_size ||
        !parent->lost.empty())
      return FailedPrecondition(
          src.description() +
          ": the parent point's disk differs (size, chunk size or repaired "
          "holes); a full read is needed");
    parent_tree = &parent->tree;
  }
  Pipeline pipeline(sink, src, chunk_size, workers);
  HAVEN_ASSIGN_OR_RETURN(repository::TreeRoot root,
                         pipeline.Run(options, parent_tree, capture));
  repository::DiskManifest disk;
  disk.size = src.size();
  disk.chunk_size = chunk_size;
  disk.tree = root;
  return disk;
}

Result<Manifest> BackupImage(Repository& repo, const std::string& path,
                             const ImageBackupOptions& options) {
  if (options.low_priority) (void)LowerProcessPriority();  // as BackupHost
  if (options.name.empty())
    return InvalidArgument("a backup name is required (--name)");
  // Cancelled before it starts: nothing is read (the reader and workers run
  // ahead of the per-batch check once started).
  HAVEN_RETURN_IF_ERROR(options.cancel.Check("the backup of " + path));
  double start = MonotonicSeconds();
  std::string started = NowIso8601();  // the recovery point's time
  if (!options.time.empty()) {
    auto t = ParseIsoTime(options.time);
    if (!t.ok()) return t.status().WithContext("--time");
    started = options.time;
  }
  snapshot::ImageFormat format;
  HAVEN_ASSIGN_OR_RETURN(auto src, OpenImage(path, options.format, format));
  LocalPointSink sink(repo);
  CaptureOptions capture_options;
  capture_options.threads = options.threads;
  capture_options.progress = options.progress;
  capture_options.progress_interval = options.progress_interval;
  capture_options.total_bytes = src->size();
  capture_options.started = start;
  capture_options.item = path;
  capture_options.cancel = options.cancel;
  ReadBudget budget =
      StartReadBudget(options.limit_read_bytes_per_second, options.adaptive,
                      options.adaptive_options, options.log);
  capture_options.limit_read = budget.limiter;
  DiskCapture capture;
  auto captured = CaptureDisk(sink, *src, nullptr, capture_options, capture);
  budget.governor.reset();  // reading is over
  if (!captured.ok()) return sink.Abandon(captured.status());
  repository::DiskManifest disk = std::move(*captured);
  HAVEN_ASSIGN_OR_RETURN(bool changed, src->ChangedDuringRead());

  Manifest m;
  // A Hyper-V or VMware VM's configuration files from the image's folder.
  std::vector<snapshot::ConfigFile> config;
  if (options.config_files) {
    for (const auto& file : snapshot::ForeignConfigFiles(path, format)) {
      auto data = ReadFile(file, snapshot::kMaxConfigFileBytes);
      std::string base = file.substr(file.rfind('/') + 1);
      if (data.ok())
        config.push_back(
            {"vm/" + base, std::string(data->begin(), data->end())});
      else
        m.notes.push_back("config file " + file +
                          " not read: " + data.status().message());
    }
  }
  HAVEN_RETURN_IF_ERROR(StoreConfigFiles(sink, config, m));
  HAVEN_RETURN_IF_ERROR(sink.Flush());
  // The last moment a cancel is honoured: after it, the point commits.
  HAVEN_RETURN_IF_ERROR(options.cancel.Check("the backup of " + path));
  m.name = options.name;
  m.kind = "image";
  m.time = started;
  m.hostname = HostName();
  m.tool = "haven 0.1.0";
  if (changed) {
    m.consistency = "inconsistent";
    m.consistency_reason =
        "the image changed while it was read; it may not be usable";
  } else {
    m.consistency = "offline";
    m.consistency_reason = src->consistency_reason();
  }
  auto parent = repo.FindSnapshot(options.name + ":latest");
  if (parent.ok()) m.parent = parent->id;
  disk.name = options.disk_name;
  disk.source = path;
  disk.capture =
      std::string("full: ") + snapshot::FormatName(format) + " image";
  m.disks.insert(m.disks.begin(), disk);
  m.stats.logical_bytes = src->size();
  m.stats.read_bytes = capture.read_bytes;
  m.stats.hole_bytes = capture.hole_bytes;
  m.stats.new_chunks = sink.new_chunks();
  m.stats.new_raw_bytes = sink.new_raw_bytes();
  m.stats.new_stored_bytes = sink.new_stored_bytes();
  m.stats.duration_seconds = MonotonicSeconds() - start;
  HAVEN_RETURN_IF_ERROR(sink.Commit(m));
  if (options.progress) {
    Progress p =
        ByteProgress(src->size(), src->size(), m.stats.new_stored_bytes,
                     m.stats.duration_seconds, true);
    p.phase = "backup";
    p.item = path;
    options.progress(p);
  }
  return m;
}

Status KeepStoredChunks(repository::ChunkWriter& writer, Status why) {
  if (why.code() == Code::kCancelled) (void)writer.Flush();
  return why;
}

std::string HostName() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return host;
}

}  // namespace haven::agent
