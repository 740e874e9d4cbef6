#include "agent/upload_sink.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "agent/agent_key.h"  // agent-key
#include "base/file.h"
#include "repository/compression.h"
#include "repository/config.h"
#include "repository/file_tree.h"

namespace haven::agent {
namespace {

using repository::ChunkId;
using repository::ChunkIdHash;
using repository::ChunkType;
using repository::Manifest;

// Wire formats: docs/agents.md, "Protocol". Integers little-endian.
//   /agent/chunks/missing  N ids (32 bytes each), N <= kMaxMissingIds
//   /agent/chunks          frames: upload_id[32] raw_len:u32 codec:u8
//                                  data_len:u32 data[data_len]
//                          codec low nibble: 0 plain, 1 zstd; flag 0x10: a
//                          tree node (1..1024 upload ids)
//   /agent/points          json_len:u32 json catalog_ids[32*c]
//                          content_ids[32*n]
//   /agent/vm-points       JSON {"upload_id", "manifest"} (<= 1 MiB)
// The VM node cache, nodes.bin: frames id[32] len:u32 bytes[len].
constexpr size_t kMaxMissingIds = 32768;
constexpr size_t kBatchBytes = 8u << 20;  // frames per /agent/chunks request
constexpr size_t kFrameHeader = 32 + 4 + 1 + 4;
constexpr uint8_t kCodecPlain = 0, kCodecZstd = 1, kTreeFlag = 0x10;
constexpr size_t kMaxPointBody = 64u << 20;
constexpr size_t kMaxVmPointBody = 1u << 20;
constexpr size_t kMaxNodeBytes = 32 * repository::kTreeFanout;
constexpr int kAttempts = 8;
constexpr double kMaxDelay = 30;
constexpr char kOctets[] = "application/octet-stream";

void PutU32(Bytes& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

std::string_view AsText(const Bytes& b) {
  return std::string_view(reinterpret_cast<const char*>(b.data()), b.size());
}

ByteSpan AsSpan(std::string_view s) {
  return ByteSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

bool IsOk2xx(long status) { return status >= 200 && status < 300; }

// Chunks on their way to the appliance.
struct Batch {
  std::vector<ChunkId> ids;
  std::vector<size_t> offsets;  // where each id's frame starts in `frames`
  std::vector<uint32_t> raw_lens;
  std::vector<uint64_t> tickets;  // of the Puts that queued them (data)
  Bytes frames;
};

void AddFrame(Batch& b, const ChunkId& id, uint32_t raw_len, uint8_t codec,
              ByteSpan data) {
  b.ids.push_back(id);
  b.offsets.push_back(b.frames.size());
  b.raw_lens.push_back(raw_len);
  Bytes& f = b.frames;
  f.insert(f.end(), id.bytes.begin(), id.bytes.end());
  PutU32(f, raw_len);
  f.push_back(codec);
  PutU32(f, static_cast<uint32_t>(data.size()));
  f.insert(f.end(), data.begin(), data.end());
}

bool BatchFull(const Batch& b) {
  return b.frames.size() >= kBatchBytes || b.ids.size() >= kMaxMissingIds;
}

// Files: the catalog and content lists go with /agent/points and the
// appliance builds the trees. Image (VM points): tree nodes are uploaded
// as tree-node frames and the point goes to /agent/vm-points.
enum class Mode { kFiles, kImage };

class UploadSink : public UploadPointSink {
 public:
  UploadSink(ApplianceClient& client, std::string state_dir,
             const std::string& name, CancelToken cancel,
             Mode mode = Mode::kFiles)
      : client_(client),
        dir_(std::move(state_dir) + "/cache/" +
             (mode == Mode::kImage ? "vm-" : "") + HexEncode(AsSpan(name))),
        cancel_(std::move(cancel)),
        mode_(mode),
        name_(name) {
    uint8_t random[16];
    repository::RandomBytes(random, sizeof random);
    upload_id_ = HexEncode(ByteSpan(random, sizeof random));
  }
  ~UploadSink() override {
    if (catalog_fd_.valid()) unlink(CatalogTemp().c_str());
    if (nodes_fd_.valid()) unlink(NodesTemp().c_str());
  }

  ChunkId IdFor(ChunkType, ByteSpan raw) const override {
    ChunkId id;
    unsigned int len = 0;
    EVP_Digest(raw.data(), raw.size(), id.bytes.data(), &len, EVP_sha256(),
               nullptr);
    return id;
  }
  int compression_level() const override { return 3; }
  uint32_t chunk_size() const override { return repository::kDefaultChunkSize; }

  Result<bool> Put(ChunkType type, const ChunkId& id, ByteSpan raw,
                   repository::WriteContext& ctx) override;
  Status Flush() override;
  Status Abandon(Status why) override {
    std::lock_guard<std::mutex> l(mu_);
    if (nodes_fd_.valid()) {
      nodes_fd_.reset();
      unlink(NodesTemp().c_str());
    }
    return why;
  }
  uint64_t new_chunks() const override { return new_chunks_; }
  uint64_t new_raw_bytes() const override { return new_raw_bytes_; }
  uint64_t new_stored_bytes() const override { return new_stored_bytes_; }

  Result<std::optional<Manifest>> LatestPoint(const std::string& name,
                                              const std::string& kind) override;
  Status ForEachRecord(
      const Manifest& parent,
      const std::function<Status(repository::FileRecord&&)>& fn) override;
  repository::LoadNodeFn NodeLoader(repository::ReadContext&) override {
    if (mode_ == Mode::kImage) return CachedNodeLoader();
    return [this](const ChunkId& id) -> Result<Bytes> {
      auto it = parent_nodes_.find(id);
      if (it == parent_nodes_.end())
        return DataLoss("node " + id.Hex() +
                        " of the last point's content list is not in the "
                        "local cache " +
                        dir_);
      return it->second;
    };
  }
  // Image mode: whether `id` is a node of the cached parent.
  Result<bool> Has(const ChunkId& id) override {
    if (mode_ == Mode::kImage) return cached_nodes_.count(id) > 0;
    return parent_ids_.count(id) > 0;
  }
  Status OnCatalogChunk(ByteSpan bytes) override;
  Status Commit(Manifest& m) override;

  void AddTo(AgentBackupResult& r) const {
    r.uploaded_chunks = uploaded_chunks_;
    r.uploaded_bytes = uploaded_bytes_;
    r.skipped_chunks = skipped_chunks_;
  }
  uint64_t uploaded_chunks() const override { return uploaded_chunks_; }
  uint64_t uploaded_bytes() const override { return uploaded_bytes_; }
  uint64_t skipped_chunks() const override { return skipped_chunks_; }
  bool had_parent() const { return had_parent_; }
  // The appliance refused the point because chunks it named are gone.
  bool lost_chunks() const override { return lost_chunks_; }
  // agent-key: the key (its id) this run seals with, "" for none; a parent
  // sealed otherwise is not used.
  void set_agent_key(std::string id) { agent_key_ = std::move(id); }

 private:
  // Named for this run: two runs of one name at once do not share it.
  std::string CatalogTemp() const {
    return dir_ + "/catalog.tmp." + upload_id_;
  }
  std::string NodesTemp() const {
    return dir_ + "/nodes.bin.tmp." + upload_id_;
  }
  // Sends a full data batch and marks its Puts answered.
  Status SendData(Batch& batch);
  // Until every data Put with a ticket below `before` was answered
  // (sending the open batch when it holds one of them).
  Status DrainData(uint64_t before);
  // The queued tree nodes, in order, after the data they name.
  Status SendNodes();
  Result<bool> PutNode(const ChunkId& id, ByteSpan raw,
                       repository::WriteContext& ctx);
  // A 409 with "missing": the appliance no longer holds chunks the point
  // names. The cache goes; the error says what the next run does.
  Status LostChunks(const HttpReply& r, const std::string& doing);
  static bool IsMissingReply(const HttpReply& r);
  // Whether the appliance lists point `id` for this agent.
  Result<bool> Listed(const std::string& id);
  Result<std::optional<Manifest>> LatestVmPoint(const std::string& name);
  repository::LoadNodeFn CachedNodeLoader();
  Status CommitVm(Manifest& m);
  Status InstallNodeCache(const Manifest& m);
  RetryPolicy Retry() const {
    RetryPolicy r;
    r.attempts = kAttempts;
    r.max_delay = kMaxDelay;
    r.cancel = cancel_;
    return r;
  }
  // Which of `ids` the appliance needs (1) or holds for this agent (0).
  Result<std::vector<uint8_t>> AskMissing(const std::vector<ChunkId>& ids);
  Status Send(const Batch& batch);
  Status WriteCache(const Manifest& m, const std::vector<ChunkId>& content);
  void DropCache();
  // The leaves of a stream this run wrote (from the nodes kept here).
  Result<std::vector<ChunkId>> Leaves(const Manifest& m, const char* kind,
                                      uint64_t* bytes);

  ApplianceClient& client_;
  const std::string dir_;  // this backup name's cache
  CancelToken cancel_;
  const Mode mode_;
  const std::string name_;
  std::string upload_id_;

  // seen_, batch_, nodes_, error_, tickets, the node queue and file
  std::mutex mu_;
  std::unordered_set<ChunkId, ChunkIdHash> seen_, seen_nodes_;
  Batch batch_;
  std::unordered_map<ChunkId, Bytes, ChunkIdHash> nodes_;
  Status error_;
  // Every data Put that queued a chunk holds a ticket until the appliance
  // answered the batch that carried it: a tree node goes only when every
  // ticket older than it is answered (its children are held).
  uint64_t next_ticket_ = 0;
  std::set<uint64_t> outstanding_;
  std::condition_variable answered_cv_;
  // Image mode: tree nodes waiting for their children, in Put order; and
  // this run's node cache file (installed at Commit).
  std::vector<Batch> node_queue_;
  size_t node_queue_bytes_ = 0;
  std::mutex node_send_mu_;  // one SendNodes at a time, in order
  UniqueFd nodes_fd_;
  uint64_t nodes_written_ = 0;
  // The cached parent's nodes (image mode): id -> (offset, length) in
  // cached_fd_, the name's nodes.bin.
  std::unordered_map<ChunkId, std::pair<uint64_t, uint32_t>, ChunkIdHash>
      cached_nodes_;
  UniqueFd cached_fd_;
  // At most kSendsInFlight requests of chunks at once (SendSlot).
  static constexpr int kSendsInFlight = 4;
  std::mutex send_mu_;
  std::condition_variable send_cv_;
  int sending_ = 0;
  class SendSlot {
   public:
    explicit SendSlot(UploadSink& s) : s_(s) {
      std::unique_lock<std::mutex> l(s_.send_mu_);
      s_.send_cv_.wait(l, [&] { return s_.sending_ < kSendsInFlight; });
      ++s_.sending_;
    }
    ~SendSlot() {
      {
        std::lock_guard<std::mutex> l(s_.send_mu_);
        --s_.sending_;
      }
      s_.send_cv_.notify_all();
    }

   private:
    UploadSink& s_;
  };

  std::atomic<uint64_t> new_chunks_{0}, new_raw_bytes_{0}, new_stored_bytes_{0};
  std::atomic<uint64_t> uploaded_chunks_{0}, uploaded_bytes_{0},
      skipped_chunks_{0};

  // The parent (the cached last point), when the appliance still lists it.
  std::unordered_map<ChunkId, Bytes, ChunkIdHash> parent_nodes_;
  std::unordered_set<ChunkId, ChunkIdHash> parent_ids_;
  bool had_parent_ = false;
  // Set by whichever thread got the 409.
  std::atomic<bool> lost_chunks_{false};

  UniqueFd catalog_fd_;
  uint64_t catalog_written_ = 0;
  std::string agent_key_;  // agent-key
};

Result<bool> UploadSink::Put(ChunkType type, const ChunkId& id, ByteSpan raw,
                             repository::WriteContext& ctx) {
  if (type == ChunkType::kTree) {
    if (mode_ == Mode::kImage) return PutNode(id, raw, ctx);
    // Nodes name upload ids, which only this agent knows: they stay here,
    // and the appliance builds its own lists from the leaves.
    std::lock_guard<std::mutex> l(mu_);
    return nodes_.emplace(id, Bytes(raw.begin(), raw.end())).second;
  }
  if (raw.size() > (16u << 20))
    return InvalidArgument("a chunk of " + std::to_string(raw.size()) +
                           " bytes is over the appliance's 16 MiB limit");
  uint64_t ticket = 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    HAVEN_RETURN_IF_ERROR(error_);
    if (!seen_.insert(id).second) return false;  // sent (or queued) already
    ticket = next_ticket_++;
    outstanding_.insert(ticket);
  }
  // Compressed without a lock: workers do this at once.
  ctx.scratch.clear();
  if (Status s = ctx.compressor.Compress(raw, ctx.scratch); !s.ok()) {
    std::lock_guard<std::mutex> l(mu_);
    if (error_.ok()) error_ = s;
    answered_cv_.notify_all();
    return s;
  }
  const bool zstd = ctx.scratch.size() < raw.size();
  ByteSpan data = zstd ? ByteSpan(ctx.scratch) : raw;
  std::optional<Batch> full;
  {
    std::lock_guard<std::mutex> l(mu_);
    AddFrame(batch_, id, static_cast<uint32_t>(raw.size()),
             zstd ? kCodecZstd : kCodecPlain, data);
    batch_.tickets.push_back(ticket);
    if (BatchFull(batch_)) {
      full = std::move(batch_);
      batch_ = Batch();
    }
  }
  // A SendNodes waiting for this chunk sends the open batch.
  answered_cv_.notify_all();
  if (full) {
    // Two batches may be on their way at once: one is sent while the
    // appliance stores the other, and the workers go on meanwhile.
    HAVEN_RETURN_IF_ERROR(SendData(*full));
  }
  return true;
}

Status UploadSink::SendData(Batch& batch) {
  Status s;
  {
    SendSlot slot(*this);
    s = Send(batch);
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    if (s.ok()) {
      for (uint64_t t : batch.tickets) outstanding_.erase(t);
    } else if (error_.ok()) {
      error_ = s;
    }
  }
  answered_cv_.notify_all();
  return s;
}

Status UploadSink::DrainData(uint64_t before) {
  while (true) {
    Batch open;
    {
      std::unique_lock<std::mutex> l(mu_);
      answered_cv_.wait(l, [&] {
        return !error_.ok() || outstanding_.empty() ||
               *outstanding_.begin() >= before || !batch_.ids.empty();
      });
      HAVEN_RETURN_IF_ERROR(error_);
      if (outstanding_.empty() || *outstanding_.begin() >= before)
        return OkStatus();
      open = std::move(batch_);
      batch_ = Batch();
    }
    HAVEN_RETURN_IF_ERROR(SendData(open));
  }
}

Result<bool> UploadSink::PutNode(const ChunkId& id, ByteSpan raw,
                                 repository::WriteContext& ctx) {
  if (raw.empty() || raw.size() % 32 != 0 || raw.size() > kMaxNodeBytes)
    return InvalidArgument("a tree node of " + std::to_string(raw.size()) +
                           " bytes is not 1 to 1024 chunk ids");
  {
    std::lock_guard<std::mutex> l(mu_);
    HAVEN_RETURN_IF_ERROR(error_);
    if (!seen_nodes_.insert(id).second) return false;
  }
  ctx.scratch.clear();
  HAVEN_RETURN_IF_ERROR(ctx.compressor.Compress(raw, ctx.scratch));
  const bool zstd = ctx.scratch.size() < raw.size();
  ByteSpan data = zstd ? ByteSpan(ctx.scratch) : raw;
  bool send = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    // This run's node cache: the next run's parent once committed.
    if (!nodes_fd_.valid()) {
      HAVEN_RETURN_IF_ERROR(MakeDirs(dir_, 0700));
      HAVEN_ASSIGN_OR_RETURN(
          nodes_fd_, OpenFile(NodesTemp(),
                              O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    }
    Bytes frame(id.bytes.begin(), id.bytes.end());
    PutU32(frame, static_cast<uint32_t>(raw.size()));
    frame.insert(frame.end(), raw.begin(), raw.end());
    HAVEN_RETURN_IF_ERROR(PWriteAll(nodes_fd_.get(), frame.data(), frame.size(),
                                    nodes_written_, NodesTemp()));
    nodes_written_ += frame.size();
    if (node_queue_.empty() || BatchFull(node_queue_.back()))
      node_queue_.emplace_back();
    AddFrame(node_queue_.back(), id, static_cast<uint32_t>(raw.size()),
             (zstd ? kCodecZstd : kCodecPlain) | kTreeFlag, data);
    node_queue_bytes_ += kFrameHeader + data.size();
    send = node_queue_bytes_ >= kBatchBytes;
  }
  if (send) HAVEN_RETURN_IF_ERROR(SendNodes());
  return true;
}

Status UploadSink::SendNodes() {
  std::lock_guard<std::mutex> order(node_send_mu_);
  std::vector<Batch> nodes;
  uint64_t before = 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    nodes = std::move(node_queue_);
    node_queue_.clear();
    node_queue_bytes_ = 0;
    // Every child of these nodes was Put before them: its ticket is older.
    before = next_ticket_;
  }
  HAVEN_RETURN_IF_ERROR(DrainData(before));
  for (Batch& b : nodes) HAVEN_RETURN_IF_ERROR(SendData(b));
  return OkStatus();
}

Status UploadSink::Flush() {
  if (mode_ == Mode::kImage) return SendNodes();
  uint64_t before = 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    before = next_ticket_;
  }
  return DrainData(before);
}

Result<std::vector<uint8_t>> UploadSink::AskMissing(
    const std::vector<ChunkId>& ids) {
  std::vector<uint8_t> need;
  need.reserve(ids.size());
  for (size_t first = 0; first < ids.size(); first += kMaxMissingIds) {
    const size_t n = std::min(kMaxMissingIds, ids.size() - first);
    Bytes body;
    body.reserve(32 * n);
    for (size_t i = first; i < first + n; ++i)
      body.insert(body.end(), ids[i].bytes.begin(), ids[i].bytes.end());
    HAVEN_ASSIGN_OR_RETURN(HttpReply r,
                           client_.Post("/api/v1/agent/chunks/missing", kOctets,
                                        AsText(body), 120, Retry()));
    if (r.status != 200)
      return ReplyStatus(r, "asking which chunks the appliance needs");
    if (r.body.size() != n)
      return DataLoss("the appliance answered " +
                      std::to_string(r.body.size()) + " bytes for " +
                      std::to_string(n) + " chunk ids (/agent/chunks/missing)");
    for (char c : r.body) {
      if (c != 0 && c != 1)
        return DataLoss(
            "the appliance's answer to /agent/chunks/missing holds "
            "a byte other than 0 or 1");
      need.push_back(static_cast<uint8_t>(c));
    }
  }
  return need;
}

// Uploads what the appliance lacks of `batch`. A transport failure or a
// 502/503/504 retries with backoff, asking again first: chunks that did
// arrive before the connection broke are not sent twice.
Status UploadSink::Send(const Batch& batch) {
  Status last;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    if (attempt > 0) HAVEN_RETURN_IF_ERROR(BackoffSleep(Retry(), attempt - 1));
    HAVEN_ASSIGN_OR_RETURN(std::vector<uint8_t> need, AskMissing(batch.ids));
    Bytes body;
    uint64_t count = 0, raw = 0;
    for (size_t i = 0; i < batch.ids.size(); ++i) {
      if (!need[i]) continue;
      size_t end = i + 1 < batch.offsets.size() ? batch.offsets[i + 1]
                                                : batch.frames.size();
      body.insert(body.end(), batch.frames.begin() + batch.offsets[i],
                  batch.frames.begin() + end);
      ++count;
      raw += batch.raw_lens[i];
    }
    if (count == 0) {
      skipped_chunks_ += batch.ids.size();
      return OkStatus();
    }
    RetryPolicy once;
    once.cancel = cancel_;
    Result<HttpReply> r =
        client_.Post("/api/v1/agent/chunks", kOctets, AsText(body), 600, once);
    if (!r.ok()) {
      if (r.status().code() != Code::kUnavailable) return r.status();
      last = r.status();
      continue;
    }
    if (r->status == 502 || r->status == 503 || r->status == 504) {
      last = ReplyStatus(*r, "uploading chunks");
      continue;
    }
    if (r->status == 409 && mode_ == Mode::kImage && IsMissingReply(*r))
      return LostChunks(*r, "uploading tree nodes");
    if (!IsOk2xx(r->status)) return ReplyStatus(*r, "uploading chunks");
    auto j = nlohmann::json::parse(r->body, nullptr, false);
    uint64_t stored = body.size();
    uint64_t fresh = count;
    if (!j.is_discarded() && j.is_object()) {
      if (j.contains("new_stored_bytes") &&
          j["new_stored_bytes"].is_number_unsigned())
        stored = j["new_stored_bytes"].get<uint64_t>();
      if (j.contains("new") && j["new"].is_number_unsigned())
        fresh = std::min<uint64_t>(count, j["new"].get<uint64_t>());
    }
    uploaded_chunks_ += count;
    uploaded_bytes_ += body.size();
    skipped_chunks_ += batch.ids.size() - count;
    new_chunks_ += fresh;
    new_raw_bytes_ += raw;
    new_stored_bytes_ += stored;
    return OkStatus();
  }
  return Unavailable(last.message() + " (gave up after " +
                     std::to_string(kAttempts) + " attempts)");
}

Status UploadSink::OnCatalogChunk(ByteSpan bytes) {
  if (!catalog_fd_.valid()) {
    HAVEN_RETURN_IF_ERROR(MakeDirs(dir_, 0700));
    HAVEN_ASSIGN_OR_RETURN(
        catalog_fd_, OpenFile(CatalogTemp(),
                              O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  }
  HAVEN_RETURN_IF_ERROR(PWriteAll(catalog_fd_.get(), bytes.data(), bytes.size(),
                                  catalog_written_, CatalogTemp()));
  catalog_written_ += bytes.size();
  return OkStatus();
}

Result<std::optional<Manifest>> UploadSink::LatestPoint(
    const std::string& name, const std::string& kind) {
  const std::optional<Manifest> kNoParent;
  if (mode_ == Mode::kImage)
    return kind == "vm" ? LatestVmPoint(name) : kNoParent;
  (void)name;  // the cache directory is this name's already
  if (kind != "files") return kNoParent;
  auto text = ReadFile(dir_ + "/manifest.json", 64 << 20);
  // No cache, or one that cannot be read: the files are all read again.
  if (!text.ok()) return kNoParent;
  auto parsed = Manifest::FromJson(AsText(*text), dir_ + "/manifest.json");
  if (!parsed.ok()) return kNoParent;
  Manifest m = std::move(parsed).value();
  const repository::DiskManifest* content = m.FindStream("content");
  const repository::DiskManifest* catalog = m.FindStream("catalog");
  if (content == nullptr || catalog == nullptr || m.kind != "files")
    return kNoParent;
  if (m.agent_key != agent_key_) return kNoParent;  // agent-key

  // Used only while the appliance still lists it for this agent.
  HAVEN_ASSIGN_OR_RETURN(bool listed, Listed(m.id));
  if (!listed) return kNoParent;

  // The content list, rebuilt into nodes as the run that wrote it made
  // them; the root must be the manifest's.
  auto ids = ReadFile(dir_ + "/" + m.id + ".content", 1ull << 36);
  struct stat st;
  if (!ids.ok() || ids->size() != 32 * content->tree.count ||
      stat((dir_ + "/" + m.id + ".catalog").c_str(), &st) != 0 ||
      static_cast<uint64_t>(st.st_size) != catalog->size)
    return kNoParent;
  std::unordered_map<ChunkId, Bytes, ChunkIdHash> nodes;
  std::unordered_set<ChunkId, ChunkIdHash> leaves;
  repository::TreeWriter writer([&](ByteSpan node) -> Result<ChunkId> {
    ChunkId id = IdFor(ChunkType::kTree, node);
    nodes.emplace(id, Bytes(node.begin(), node.end()));
    return id;
  });
  for (size_t off = 0; off < ids->size(); off += 32) {
    ChunkId id;
    std::memcpy(id.bytes.data(), ids->data() + off, 32);
    leaves.insert(id);
    HAVEN_RETURN_IF_ERROR(writer.Add(id));
  }
  HAVEN_ASSIGN_OR_RETURN(repository::TreeRoot root, writer.Finish());
  if (!(root.root == content->tree.root) || root.height != content->tree.height)
    return kNoParent;
  parent_nodes_ = std::move(nodes);
  parent_ids_ = std::move(leaves);
  had_parent_ = true;
  return std::optional<Manifest>(std::move(m));
}

Result<bool> UploadSink::Listed(const std::string& id) {
  HAVEN_ASSIGN_OR_RETURN(HttpReply r,
                         client_.Get("/api/v1/agent/points", 120, Retry()));
  if (r.status != 200) return ReplyStatus(r, "listing this agent's points");
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  const nlohmann::json* list = nullptr;
  if (!j.is_discarded() && j.is_array()) list = &j;
  if (!j.is_discarded() && j.is_object() && j.contains("points") &&
      j["points"].is_array())
    list = &j["points"];
  if (list == nullptr)
    return DataLoss(
        "the appliance's list of this agent's points is not "
        "a JSON list");
  for (const auto& p : *list)
    if (p.is_object() && p.contains("id") && p["id"].is_string() &&
        p["id"].get<std::string>() == id)
      return true;
  return false;
}

// The cached last point of this VM: its manifest (upload-id roots) and
// nodes.bin, whose frames are indexed here and read on demand.
Result<std::optional<Manifest>> UploadSink::LatestVmPoint(
    const std::string& name) {
  const std::optional<Manifest> kNoParent;
  const std::string path = dir_ + "/manifest.json";
  auto text = ReadFile(path, 64 << 20);
  // No cache, or one that cannot be read: the VM is read fully.
  if (!text.ok()) return kNoParent;
  auto parsed = Manifest::FromJson(AsText(*text), path);
  if (!parsed.ok()) return kNoParent;
  Manifest m = std::move(parsed).value();
  if (m.kind != "vm" || m.name != name || !repository::IsSnapshotId(m.id))
    return kNoParent;
  const std::string nodes_path = dir_ + "/nodes.bin";
  auto fd = OpenFile(nodes_path, O_RDONLY | O_CLOEXEC);
  if (!fd.ok()) return kNoParent;
  struct stat st;
  if (fstat(fd->get(), &st) != 0) return kNoParent;
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  std::unordered_map<ChunkId, std::pair<uint64_t, uint32_t>, ChunkIdHash> index;
  for (uint64_t off = 0; off < size;) {
    uint8_t head[36];
    if (size - off < sizeof head ||
        !PReadExact(fd->get(), head, sizeof head, off, nodes_path).ok())
      return kNoParent;
    uint32_t len = 0;
    for (int i = 0; i < 4; ++i) len |= uint32_t{head[32 + i]} << (8 * i);
    if (len == 0 || len % 32 != 0 || len > kMaxNodeBytes ||
        size - off - sizeof head < len)
      return kNoParent;
    ChunkId id;
    std::memcpy(id.bytes.data(), head, 32);
    index.emplace(id, std::pair(off + sizeof head, len));
    off += sizeof head + len;
  }
  // A root's node was written by the run that made it, and so was every
  // node under it (TreeWriter stores them all).
  for (const auto& d : m.disks)
    if (!d.tree.root.IsZero() && !index.count(d.tree.root)) return kNoParent;
  // Used only while the appliance still lists it for this agent.
  HAVEN_ASSIGN_OR_RETURN(bool listed, Listed(m.id));
  if (!listed) return kNoParent;
  cached_nodes_ = std::move(index);
  cached_fd_ = std::move(fd).value();
  had_parent_ = true;
  return std::optional<Manifest>(std::move(m));
}

repository::LoadNodeFn UploadSink::CachedNodeLoader() {
  return [this](const ChunkId& id) -> Result<Bytes> {
    const std::string path = dir_ + "/nodes.bin";
    auto it = cached_nodes_.find(id);
    if (it == cached_nodes_.end() || !cached_fd_.valid())
      return DataLoss("node " + id.Hex() +
                      " of the last point's disk is not in the local cache " +
                      path);
    Bytes node(it->second.second);
    HAVEN_RETURN_IF_ERROR(PReadExact(cached_fd_.get(), node.data(), node.size(),
                                     it->second.first, path));
    if (!(IdFor(ChunkType::kTree, node) == id))
      return DataLoss("node " + id.Hex() + " in the local cache " + path +
                      " does not match its id");
    return node;
  };
}

bool UploadSink::IsMissingReply(const HttpReply& r) {
  auto e = nlohmann::json::parse(r.body, nullptr, false);
  return !e.is_discarded() && e.is_object() && e.contains("missing") &&
         e["missing"].is_array();
}

Status UploadSink::LostChunks(const HttpReply& r, const std::string& doing) {
  lost_chunks_ = true;
  DropCache();
  size_t missing = 0;
  auto e = nlohmann::json::parse(r.body, nullptr, false);
  if (!e.is_discarded() && e.is_object() && e.contains("missing") &&
      e["missing"].is_array())
    missing = e["missing"].size();
  return FailedPrecondition(
      "the appliance no longer holds " +
      (missing ? std::to_string(missing) : std::string("some")) +
      " chunks of the last point of " + name_ + " (" + doing + ": " +
      r.ErrorText() +
      "); no point was written and the local cache was dropped: the next "
      "run reads the VM fully");
}

Status UploadSink::ForEachRecord(
    const Manifest& parent,
    const std::function<Status(repository::FileRecord&&)>& fn) {
  const std::string path = dir_ + "/" + parent.id + ".catalog";
  HAVEN_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_RDONLY | O_CLOEXEC));
  repository::CatalogParser parser(parent.FindStream("content")->tree.count);
  Bytes buf(1 << 20);
  while (true) {
    ssize_t n = read(fd.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("read " + path, errno);
    if (n == 0) break;
    HAVEN_RETURN_IF_ERROR(
        parser.Feed(ByteSpan(buf.data(), static_cast<size_t>(n)), fn));
  }
  return parser.Finish();
}

Result<std::vector<ChunkId>> UploadSink::Leaves(const Manifest& m,
                                                const char* kind,
                                                uint64_t* bytes) {
  const repository::DiskManifest* stream = m.FindStream(kind);
  if (stream == nullptr)
    return Internal(std::string("the point has no ") + kind + " stream");
  *bytes = stream->size;
  std::vector<ChunkId> out;
  out.reserve(stream->tree.count);
  auto load = [this](const ChunkId& id) -> Result<Bytes> {
    std::lock_guard<std::mutex> l(mu_);
    auto it = nodes_.find(id);
    if (it == nodes_.end())
      return Internal("the list node " + id.Hex() + " was not kept");
    return it->second;
  };
  HAVEN_RETURN_IF_ERROR(repository::WalkTree(
      stream->tree, load, [&](uint64_t, const ChunkId& id) -> Status {
        out.push_back(id);
        return OkStatus();
      }));
  if (out.size() != stream->tree.count)
    return Internal(std::string("the ") + kind + " list has holes");
  return out;
}

Status UploadSink::CommitVm(Manifest& m) {
  HAVEN_RETURN_IF_ERROR(Flush());
  auto manifest = nlohmann::ordered_json::parse(m.ToJson(), nullptr, false);
  if (manifest.is_discarded())
    return Internal("the point's manifest is not JSON");
  nlohmann::ordered_json j;
  j["upload_id"] = upload_id_;
  j["manifest"] = std::move(manifest);
  const std::string body = j.dump();
  if (body.size() > kMaxVmPointBody)
    return FailedPrecondition("the point's manifest is " +
                              std::to_string(body.size()) +
                              " bytes, more than the appliance takes (1 MiB)");
  // The same upload_id on every retry: a lost answer does not make two
  // points.
  HAVEN_ASSIGN_OR_RETURN(
      HttpReply r, client_.Post("/api/v1/agent/vm-points", "application/json",
                                body, 600, Retry()));
  if (r.status == 409 && IsMissingReply(r))
    return LostChunks(r, "committing the point");
  if (!IsOk2xx(r.status)) return ReplyStatus(r, "committing the VM point");
  auto a = nlohmann::json::parse(r.body, nullptr, false);
  if (a.is_discarded() || !a.is_object() || !a.contains("id") ||
      !a["id"].is_string() ||
      !repository::IsSnapshotId(a["id"].get<std::string>()))
    return DataLoss("the appliance's answer to the VM point has no point id");
  if (!a.contains("time") || !a["time"].is_string() ||
      a["time"].get<std::string>().empty())
    return DataLoss("the appliance's answer to the VM point has no time");
  m.id = a["id"].get<std::string>();
  m.time = a["time"].get<std::string>();
  // The point is committed; the cache only saves the next run reading.
  if (Status s = InstallNodeCache(m); !s.ok()) DropCache();
  return OkStatus();
}

// This run's nodes and manifest become the name's cache. The old manifest
// goes first: a crash in between leaves no cache, never a manifest with
// another run's nodes.
Status UploadSink::InstallNodeCache(const Manifest& m) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!nodes_fd_.valid()) {
      // No node was Put (every disk a hole, no config): an empty file.
      HAVEN_RETURN_IF_ERROR(MakeDirs(dir_, 0700));
      HAVEN_ASSIGN_OR_RETURN(
          nodes_fd_, OpenFile(NodesTemp(),
                              O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    }
    HAVEN_RETURN_IF_ERROR(FsyncFd(nodes_fd_.get(), NodesTemp()));
    nodes_fd_.reset();
  }
  const std::string manifest = dir_ + "/manifest.json";
  if (unlink(manifest.c_str()) != 0 && errno != ENOENT)
    return ErrnoStatus("unlink " + manifest, errno);
  const std::string nodes = dir_ + "/nodes.bin";
  if (rename(NodesTemp().c_str(), nodes.c_str()) != 0)
    return ErrnoStatus("rename " + NodesTemp(), errno);
  const std::string json = m.ToJson();
  return WriteFileAtomic(manifest, AsSpan(json), 0600);
}

Status UploadSink::Commit(Manifest& m) {
  if (mode_ == Mode::kImage) return CommitVm(m);
  HAVEN_RETURN_IF_ERROR(Flush());
  uint64_t catalog_bytes = 0, content_bytes = 0;
  HAVEN_ASSIGN_OR_RETURN(std::vector<ChunkId> catalog,
                         Leaves(m, "catalog", &catalog_bytes));
  HAVEN_ASSIGN_OR_RETURN(std::vector<ChunkId> content,
                         Leaves(m, "content", &content_bytes));
  nlohmann::ordered_json j;
  j["upload_id"] = upload_id_;
  j["name"] = m.name;
  j["time"] = m.time;
  j["hostname"] = m.hostname;
  j["consistency"] = m.consistency;
  j["consistency_reason"] = m.consistency_reason;
  j["paths"] = m.file_paths;
  j["entries"] = m.file_entries;
  j["partial"] = m.partial;
  j["notes"] = m.notes;
  if (!m.agent_key.empty()) j["agent_key"] = m.agent_key;  // agent-key
  j["stats"] = {{"logical_bytes", m.stats.logical_bytes},
                {"read_bytes", m.stats.read_bytes},
                {"hole_bytes", m.stats.hole_bytes},
                {"new_chunks", m.stats.new_chunks},
                {"new_raw_bytes", m.stats.new_raw_bytes},
                {"new_stored_bytes", m.stats.new_stored_bytes},
                {"duration_seconds", m.stats.duration_seconds}};
  j["catalog"] = {{"count", catalog.size()}, {"bytes", catalog_bytes}};
  j["content"] = {{"count", content.size()}, {"bytes", content_bytes}};
  const std::string json = j.dump();
  const size_t size = 4 + json.size() + 32 * (catalog.size() + content.size());
  if (size > kMaxPointBody)
    return FailedPrecondition(
        "the point lists " + std::to_string(catalog.size() + content.size()) +
        " chunks, more than the appliance takes in one request (64 MiB)");
  Bytes body;
  body.reserve(size);
  PutU32(body, static_cast<uint32_t>(json.size()));
  body.insert(body.end(), json.begin(), json.end());
  for (const auto* list : {&catalog, &content})
    for (const ChunkId& id : *list)
      body.insert(body.end(), id.bytes.begin(), id.bytes.end());
  // The same upload_id on every retry: a lost answer does not make two
  // points.
  HAVEN_ASSIGN_OR_RETURN(
      HttpReply r, client_.Post("/api/v1/agent/points", kOctets, AsText(body),
                                600, Retry()));
  // Chunks gone since: the same handling as a VM point's commit. Another
  // 409 (the name is another agent's) is an error as it is.
  if (r.status == 409 && IsMissingReply(r))
    return LostChunks(r, "committing the point");
  if (!IsOk2xx(r.status)) return ReplyStatus(r, "committing the point");
  auto a = nlohmann::json::parse(r.body, nullptr, false);
  if (a.is_discarded() || !a.is_object() || !a.contains("id") ||
      !a["id"].is_string() ||
      !repository::IsSnapshotId(a["id"].get<std::string>()))
    return DataLoss("the appliance's answer to the point has no point id");
  m.id = a["id"].get<std::string>();
  // The point is committed; the cache only saves the next run reading.
  // A cache that cannot be written costs that, not this point.
  if (Status s = WriteCache(m, content); !s.ok()) DropCache();
  return OkStatus();
}

Status UploadSink::WriteCache(const Manifest& m,
                              const std::vector<ChunkId>& content) {
  if (!catalog_fd_.valid()) return FailedPrecondition("no catalog was kept");
  HAVEN_RETURN_IF_ERROR(FsyncFd(catalog_fd_.get(), CatalogTemp()));
  catalog_fd_.reset();
  const std::string catalog = dir_ + "/" + m.id + ".catalog";
  if (rename(CatalogTemp().c_str(), catalog.c_str()) != 0)
    return ErrnoStatus("rename " + CatalogTemp(), errno);
  Bytes ids;
  ids.reserve(32 * content.size());
  for (const ChunkId& id : content)
    ids.insert(ids.end(), id.bytes.begin(), id.bytes.end());
  HAVEN_RETURN_IF_ERROR(
      WriteFileAtomic(dir_ + "/" + m.id + ".content", ids, 0600));
  // Written last: it names the two files above.
  const std::string json = m.ToJson();
  HAVEN_RETURN_IF_ERROR(
      WriteFileAtomic(dir_ + "/manifest.json", AsSpan(json), 0600));
  // Older points' files go.
  if (DIR* d = opendir(dir_.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n == "." || n == ".." || n == "manifest.json" ||
          n.rfind(m.id + ".", 0) == 0)
        continue;
      unlink((dir_ + "/" + n).c_str());
    }
    closedir(d);
  }
  return OkStatus();
}

void UploadSink::DropCache() {
  // Image mode: a sender thread may be here; this run's node file is
  // unlinked with the rest (its fd stays open until the sink goes).
  if (mode_ == Mode::kFiles) catalog_fd_.reset();
  if (DIR* d = opendir(dir_.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") unlink((dir_ + "/" + n).c_str());
    }
    closedir(d);
  }
}

}  // namespace

std::unique_ptr<UploadPointSink> NewVmUploadSink(ApplianceClient& client,
                                                 const std::string& state_dir,
                                                 const std::string& name,
                                                 CancelToken cancel) {
  return std::make_unique<UploadSink>(client, state_dir, name,
                                      std::move(cancel), Mode::kImage);
}

Result<AgentBackupResult> BackupFilesToAppliance(
    ApplianceClient& client, const std::string& state_dir,
    const FileBackupOptions& options) {
  HAVEN_RETURN_IF_ERROR(SayHello(client, options.cancel).status());
  // agent-key: with STATE_DIR/agent-key, data chunks are sealed with it.
  HAVEN_ASSIGN_OR_RETURN(std::optional<AgentKey> key,
                         AgentKey::LoadIfPresent(AgentKeyPath(state_dir)));
  for (int run = 0;; ++run) {
    UploadSink sink(client, state_dir, options.name, options.cancel);
    // agent-key: the sealing decorator around the upload sink.
    std::optional<KeyedSink> keyed;
    if (key) {
      sink.set_agent_key(key->id());
      keyed.emplace(*key, sink);
    }
    Result<FileBackupResult> files =
        keyed ? BackupFiles(*keyed, options) : BackupFiles(sink, options);
    if (!files.ok()) {
      // The parent's chunks are gone from the appliance (repaired, or its
      // points pruned): once more without a parent reads and sends all.
      if (run == 0 && sink.lost_chunks() && sink.had_parent()) continue;
      return files.status();
    }
    AgentBackupResult r;
    r.files = std::move(files).value();
    sink.AddTo(r);
    return r;
  }
}

}  // namespace haven::agent
