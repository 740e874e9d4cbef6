// An agent's own key (docs/agents.md, "An agent's own key"): a file backup
// whose data the appliance stores but cannot read.
//
// STATE_DIR/agent-key holds 64 random bytes, mode 0600: enc_key (32) then
// mac_key (32). It is the only copy: losing it loses every point it sealed.
//
// A data chunk (file content and catalog) is sealed deterministically, so
// that the same plain bytes under the same key give the same sealed bytes
// and this agent's points deduplicate with each other (and with nothing
// else):
//
//   nonce  = HMAC-SHA256(mac_key, type(1) || plain)[0..12)
//   sealed = version(1) = 1 || flags(1: bit 0 = zstd) || nonce(12)
//            || AES-256-GCM(enc_key, nonce, aad = "haven-agent-chunk",
//                           zstd(plain) if smaller, else plain)
//            || tag(16)
//
// The appliance sees only sealed bytes, named by their SHA-256 (the upload
// id it verifies). Chunk-list nodes are not sealed: they list ids only.
// The key's name in a manifest ("agent_key") is the first 8 bytes of
// SHA-256(mac_key) in hex; it reveals nothing of the key.
//
//   KeyedSink          a PointSink (point_sink.h) that seals data chunks
//                      on their way to the inner sink (the upload sink)
//   KeyedPointReader   a PointReader that opens them on the way back
#ifndef HAVEN_AGENT_AGENT_KEY_H_
#define HAVEN_AGENT_AGENT_KEY_H_

#include <array>
#include <memory>
#include <optional>
#include <string>

#include "agent/point_sink.h"
#include "base/bytes.h"
#include "base/status.h"
#include "repository/compression.h"
#include "repository/point_reader.h"

namespace haven::agent {

inline constexpr size_t kAgentKeyFileBytes = 64;
// version + flags + nonce before the ciphertext, tag after it.
inline constexpr size_t kSealedOverhead = 1 + 1 + 12 + 16;

// STATE_DIR/agent-key.
std::string AgentKeyPath(const std::string& state_dir);

class AgentKey {
 public:
  // 64 random bytes into `path` (mode 0600). AlreadyExists when the file
  // exists: a key is never replaced (the points it sealed need it).
  static Result<AgentKey> Create(const std::string& path);
  // The key in `path`. InvalidArgument, in words, for a file that is not
  // exactly 64 bytes or that others may read or write (mode not 0600 or
  // 0400); NotFound when there is none.
  static Result<AgentKey> Load(const std::string& path);
  // Load, or nullopt when `path` does not exist.
  static Result<std::optional<AgentKey>> LoadIfPresent(const std::string& path);
  // From 64 bytes (tests). InvalidArgument for another size.
  static Result<AgentKey> FromBytes(ByteSpan key);

  AgentKey(AgentKey&&) noexcept;
  AgentKey& operator=(AgentKey&&) noexcept;
  ~AgentKey();

  // 16 lower-case hex digits: the first 8 bytes of SHA-256(mac_key).
  const std::string& id() const { return id_; }

  // Seals `plain` (a chunk of `type`) into `out` (replaced). `compressor`
  // is the caller's (one per thread). Thread-safe.
  Status Seal(repository::ChunkType type, ByteSpan plain,
              repository::Compressor& compressor, Bytes& out) const;
  // Opens a sealed chunk into `out` (replaced): DataLoss naming `what`
  // when it is malformed, was sealed under another key, or was changed.
  // Thread-safe.
  Status Open(repository::ChunkType type, ByteSpan sealed,
              repository::Decompressor& decompressor, Bytes& out,
              const std::string& what) const;

 private:
  struct State;
  explicit AgentKey(std::unique_ptr<State> state);
  // HMAC-SHA256(mac_key, type || data), first 12 bytes.
  std::array<uint8_t, 12> Nonce(repository::ChunkType type,
                                ByteSpan data) const;
  std::unique_ptr<State> state_;
  std::string id_;
};

// Seals the data chunks Put into `inner`; tree nodes and everything else
// go through unchanged. IdFor of a data chunk is the SHA-256 of its sealed
// bytes (what the appliance verifies). A parent point is used only when it
// was sealed with the same key (so a point never names chunks sealed under
// another key, or plain ones). Commit names the key in the manifest.
// `key` and `inner` must outlive the sink.
class KeyedSink : public PointSink {
 public:
  KeyedSink(const AgentKey& key, PointSink& inner);

  repository::ChunkId IdFor(repository::ChunkType type,
                            ByteSpan raw) const override;
  int compression_level() const override { return inner_.compression_level(); }
  uint32_t chunk_size() const override { return inner_.chunk_size(); }
  Result<bool> Put(repository::ChunkType type, const repository::ChunkId& id,
                   ByteSpan raw, repository::WriteContext& ctx) override;
  Status Flush() override { return inner_.Flush(); }
  Status Abandon(Status why) override { return inner_.Abandon(why); }
  uint64_t new_chunks() const override { return inner_.new_chunks(); }
  uint64_t new_raw_bytes() const override { return inner_.new_raw_bytes(); }
  uint64_t new_stored_bytes() const override {
    return inner_.new_stored_bytes();
  }
  Result<std::optional<repository::Manifest>> LatestPoint(
      const std::string& name, const std::string& kind) override;
  Status ForEachRecord(
      const repository::Manifest& parent,
      const std::function<Status(repository::FileRecord&&)>& fn) override {
    return inner_.ForEachRecord(parent, fn);
  }
  repository::LoadNodeFn NodeLoader(repository::ReadContext& ctx) override {
    return inner_.NodeLoader(ctx);
  }
  Result<bool> Has(const repository::ChunkId& id) override {
    return inner_.Has(id);
  }
  // The inner sink keeps the plain catalog (the local cache of an upload
  // sink stays on this machine).
  Status OnCatalogChunk(ByteSpan bytes) override {
    return inner_.OnCatalogChunk(bytes);
  }
  // Sets m.agent_key, then the inner sink commits.
  Status Commit(repository::Manifest& m) override;

 private:
  // The sealed bytes of `raw`, from this thread's last IdFor when it was
  // of the same chunk, else sealed again.
  Status SealedFor(repository::ChunkType type, const repository::ChunkId& id,
                   ByteSpan raw, repository::Compressor& compressor,
                   Bytes& out) const;
  const AgentKey& key_;
  PointSink& inner_;
};

// Reads a point sealed with `key` through `inner` (RemotePointReader):
// ReadChunk of a data chunk opens it (tag checked, then decompressed);
// chunk-list nodes and the manifest go through. FindSnapshot refuses a
// point sealed with another key, or with none, naming both. `key` and
// `inner` must outlive the reader.
class KeyedPointReader : public repository::PointReader {
 public:
  KeyedPointReader(const AgentKey& key, const repository::PointReader& inner);

  Status ReadChunk(repository::ChunkType type, const repository::ChunkId& id,
                   Bytes& out, repository::ReadContext& ctx) const override;
  repository::LoadNodeFn TreeNodeLoader(
      repository::ReadContext& ctx) const override {
    return inner_.TreeNodeLoader(ctx);
  }
  Result<repository::Manifest> FindSnapshot(
      const std::string& ref) const override;
  bool CanComputeIds() const override { return false; }
  repository::ChunkId IdFor(repository::ChunkType type,
                            ByteSpan raw) const override {
    return inner_.IdFor(type, raw);
  }

 private:
  const AgentKey& key_;
  const repository::PointReader& inner_;
};

}  // namespace haven::agent

#endif  // HAVEN_AGENT_AGENT_KEY_H_
