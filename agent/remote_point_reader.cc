#include "agent/remote_point_reader.h"

#include <algorithm>
#include <cstring>

#include "repository/repository.h"

namespace haven::agent {
namespace {

using repository::ChunkId;
using repository::ChunkType;

constexpr size_t kMaxIdsPerRequest = 256;
constexpr size_t kFrameHeader = 1 + 32 + 4;
// Larger than any chunk a repository writes (config.h: 8 MiB), with room.
constexpr uint32_t kMaxChunkBytes = 16u << 20;
constexpr uint32_t kMaxNodeBytes = 32 * repository::kTreeFanout;
constexpr char kOctets[] = "application/octet-stream";

uint32_t LoadU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<uint32_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}

const char* TypeName(ChunkType t) {
  return t == ChunkType::kTree ? "chunk-list node" : "data chunk";
}

}  // namespace

RemotePointReader::RemotePointReader(ApplianceClient& client, int64_t job_id,
                                     RemotePointReaderOptions options)
    : client_(client),
      base_("/api/v1/agent/jobs/" + std::to_string(job_id)),
      manifest_path_(base_ + "/point"),
      what_("job " + std::to_string(job_id)),
      options_(std::move(options)) {}

RemotePointReader::RemotePointReader(ApplianceClient& client, OwnPoint point,
                                     RemotePointReaderOptions options)
    : client_(client),
      base_("/api/v1/agent/points/" + UrlEncode(point.id)),
      manifest_path_(base_ + "/manifest"),
      what_("point " + point.id.substr(0, 8)),
      options_(std::move(options)) {}

Result<repository::Manifest> RemotePointReader::Point() const {
  {
    std::lock_guard lock(mu_);
    if (point_) return *point_;
  }
  RetryPolicy retry;
  retry.attempts = options_.attempts;
  retry.cancel = options_.cancel;
  HAVEN_ASSIGN_OR_RETURN(HttpReply r, client_.Get(manifest_path_, 120, retry));
  ++requests_;
  if (r.status != 200)
    return ReplyStatus(r, "reading the recovery point of " + what_);
  HAVEN_ASSIGN_OR_RETURN(
      repository::Manifest m,
      repository::Manifest::FromJson(r.body, "the recovery point of " + what_));
  std::lock_guard lock(mu_);
  if (!point_) point_ = std::move(m);
  return *point_;
}

Result<repository::Manifest> RemotePointReader::FindSnapshot(
    const std::string& ref) const {
  HAVEN_ASSIGN_OR_RETURN(repository::Manifest m, Point());
  if (ref != m.id)
    return NotFound(what_ + " reads point " + m.id + ", not " +
                    QuoteUntrusted(ref));
  return m;
}

ChunkId RemotePointReader::IdFor(ChunkType, ByteSpan) const {
  return ChunkId{};
}

Result<RemotePointReader::Frames> RemotePointReader::Fetch(
    ChunkType type, const std::vector<ChunkId>& ids) const {
  Frames out;
  out.reserve(ids.size());
  RetryPolicy retry;
  retry.attempts = options_.attempts;
  retry.cancel = options_.cancel;
  const std::string path = base_ + "/chunks";
  size_t next = 0;
  while (next < ids.size()) {
    const size_t n = std::min(kMaxIdsPerRequest, ids.size() - next);
    std::string body(32 * n, '\0');
    for (size_t i = 0; i < n; ++i)
      std::memcpy(body.data() + 32 * i, ids[next + i].bytes.data(), 32);
    HAVEN_ASSIGN_OR_RETURN(HttpReply r,
                           client_.Post(path, kOctets, body, 300, retry));
    ++requests_;
    if (r.status != 200)
      return ReplyStatus(r, "reading " + std::string(TypeName(type)) + " " +
                                ids[next].Hex() + " through the appliance");
    // Frames in the order asked; at least one, at most n.
    size_t pos = 0, got = 0;
    const std::string& b = r.body;
    while (pos < b.size()) {
      if (got == n)
        return DataLoss("the appliance answered more chunks than asked for");
      if (b.size() - pos < kFrameHeader)
        return DataLoss("the appliance's answer ends inside a frame header");
      const ChunkId& want = ids[next + got];
      const auto t = static_cast<uint8_t>(b[pos]);
      if (t != static_cast<uint8_t>(type))
        return DataLoss("the appliance answered chunk " + want.Hex() +
                        " with type " + std::to_string(t) + ", not a " +
                        TypeName(type));
      if (std::memcmp(b.data() + pos + 1, want.bytes.data(), 32) != 0)
        return DataLoss("the appliance answered another chunk where " +
                        want.Hex() + " was asked for");
      const uint32_t len = LoadU32(b.data() + pos + 33);
      if (len > kMaxChunkBytes || b.size() - pos - kFrameHeader < len)
        return DataLoss(
            "the appliance's frame of chunk " + want.Hex() + " claims " +
            std::to_string(len) + " bytes, more than " +
            (len > kMaxChunkBytes ? "a chunk holds" : "the answer carries"));
      const auto* p =
          reinterpret_cast<const uint8_t*>(b.data() + pos + kFrameHeader);
      out.emplace_back(want, Bytes(p, p + len));
      bytes_ += len;
      pos += kFrameHeader + len;
      ++got;
    }
    if (got == 0)
      return DataLoss("the appliance answered no chunk of " +
                      std::to_string(n) + " asked for");
    next += got;
  }
  return out;
}

Status RemotePointReader::ReadChunk(ChunkType type, const ChunkId& id,
                                    Bytes& out,
                                    repository::ReadContext&) const {
  if (type == ChunkType::kTree) return ReadNode(id, out);
  return ReadData(id, out);
}

repository::LoadNodeFn RemotePointReader::TreeNodeLoader(
    repository::ReadContext&) const {
  return [this](const ChunkId& id) -> Result<Bytes> {
    Bytes node;
    HAVEN_RETURN_IF_ERROR(ReadNode(id, node));
    return node;
  };
}

Status RemotePointReader::ReadNode(const ChunkId& id, Bytes& out) const {
  {
    std::lock_guard lock(mu_);
    for (auto it = nodes_.begin(); it != nodes_.end(); ++it) {
      if (!(it->id == id)) continue;
      nodes_.splice(nodes_.begin(), nodes_, it);
      out = *nodes_.front().bytes;
      return OkStatus();
    }
  }
  HAVEN_ASSIGN_OR_RETURN(Frames f, Fetch(ChunkType::kTree, {id}));
  Bytes& node = f.front().second;
  if (node.empty() || node.size() % 32 != 0 || node.size() > kMaxNodeBytes)
    return DataLoss("chunk-list node " + id.Hex() +
                    " from the appliance holds " + std::to_string(node.size()) +
                    " bytes, not 1 to 1024 ids of 32 bytes");
  std::lock_guard lock(mu_);
  KeepNode(id, node);
  out = std::move(node);
  return OkStatus();
}

void RemotePointReader::KeepNode(const ChunkId& id, const Bytes& node) const {
  auto bytes = std::make_shared<const Bytes>(node);
  nodes_.push_front({id, bytes});
  for (uint32_t i = 0; i < bytes->size() / 32; ++i) {
    ChunkId child;
    std::memcpy(child.bytes.data(), bytes->data() + 32 * i, 32);
    if (!child.IsZero()) where_.try_emplace(child, bytes, i);
  }
  while (nodes_.size() > std::max<size_t>(1, options_.cached_nodes)) {
    const auto& gone = nodes_.back().bytes;
    for (uint32_t i = 0; i < gone->size() / 32; ++i) {
      ChunkId child;
      std::memcpy(child.bytes.data(), gone->data() + 32 * i, 32);
      auto w = where_.find(child);
      if (w != where_.end() && w->second.first == gone) where_.erase(w);
    }
    nodes_.pop_back();
  }
}

void RemotePointReader::KeepData(const ChunkId& id, Bytes data) const {
  if (data_.count(id)) return;
  data_bytes_ += data.size();
  data_.emplace(id, std::move(data));
  order_.push_back(id);
  // Over the cap: the oldest go (a later read fetches them again).
  while (data_bytes_ > options_.cache_bytes && !order_.empty()) {
    auto it = data_.find(order_.front());
    order_.pop_front();
    if (it == data_.end()) continue;  // read already
    data_bytes_ -= it->second.size();
    data_.erase(it);
  }
}

Status RemotePointReader::ReadData(const ChunkId& id, Bytes& out) const {
  std::vector<ChunkId> batch{id};
  {
    std::unique_lock lock(mu_);
    for (;;) {
      if (auto it = data_.find(id); it != data_.end()) {
        out = std::move(it->second);
        data_bytes_ -= out.size();
        data_.erase(it);
        if (order_.size() > 4 * data_.size() + 64)  // drop read ids
          std::erase_if(order_,
                        [&](const ChunkId& c) { return !data_.count(c); });
        return OkStatus();
      }
      if (!in_flight_.count(id)) break;
      fetched_.wait(lock);  // another thread is fetching it
    }
    // Read ahead: the ids after this one in its chunk-list node.
    if (auto w = where_.find(id); w != where_.end()) {
      const Bytes& node = *w->second.first;
      const size_t ahead =
          std::clamp<size_t>(options_.read_ahead, 1, kMaxIdsPerRequest);
      for (size_t i = w->second.second + 1;
           i < node.size() / 32 && batch.size() < ahead; ++i) {
        ChunkId c;
        std::memcpy(c.bytes.data(), node.data() + 32 * i, 32);
        if (c.IsZero() || data_.count(c) || in_flight_.count(c) ||
            std::find(batch.begin(), batch.end(), c) != batch.end())
          continue;
        batch.push_back(c);
      }
    }
    for (const ChunkId& c : batch) in_flight_.insert(c);
  }
  auto fetched = Fetch(ChunkType::kData, batch);
  if (!fetched.ok() && batch.size() > 1) {
    // A chunk read ahead may be the damaged one: this one alone decides.
    {
      std::lock_guard lock(mu_);
      for (size_t i = 1; i < batch.size(); ++i) in_flight_.erase(batch[i]);
      fetched_.notify_all();
    }
    batch.resize(1);
    fetched = Fetch(ChunkType::kData, batch);
  }
  std::lock_guard lock(mu_);
  for (const ChunkId& c : batch) in_flight_.erase(c);
  fetched_.notify_all();
  if (!fetched.ok()) return fetched.status();
  for (auto& [c, bytes] : *fetched) {
    if (c == id)
      out = std::move(bytes);
    else
      KeepData(c, std::move(bytes));
  }
  return OkStatus();
}

}  // namespace haven::agent
