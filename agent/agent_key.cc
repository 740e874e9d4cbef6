#include "agent/agent_key.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <cstring>

#include "base/file.h"
#include "repository/crypto.h"
#include "repository/repository.h"

namespace haven::agent {
namespace {

using repository::ChunkId;
using repository::ChunkType;

constexpr uint8_t kVersion = 1;
constexpr uint8_t kFlagZstd = 0x01;
constexpr size_t kNonceBytes = 12, kTagBytes = 16, kHeaderBytes = 2 + 12;
constexpr char kAad[] = "haven-agent-chunk";
// A sealed chunk never opens to more (the appliance takes 16 MiB chunks).
constexpr uint64_t kMaxPlainBytes = 16u << 20;

struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;
struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;

ChunkId Sha256(ByteSpan data) {
  ChunkId id;
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), id.bytes.data(), &len, EVP_sha256(),
             nullptr);
  return id;
}

}  // namespace

std::string AgentKeyPath(const std::string& state_dir) {
  return state_dir + "/agent-key";
}

// The two keys and HMAC's keyed prefixes (hashed once, copied per call).
struct AgentKey::State {
  std::array<uint8_t, 32> enc{}, mac{};
  MdCtx inner{EVP_MD_CTX_new()}, outer{EVP_MD_CTX_new()};
  ~State() {
    OPENSSL_cleanse(enc.data(), enc.size());
    OPENSSL_cleanse(mac.data(), mac.size());
  }
};

AgentKey::AgentKey(std::unique_ptr<State> state) : state_(std::move(state)) {
  ChunkId h = Sha256(state_->mac);
  id_ = HexEncode(ByteSpan(h.bytes.data(), 8));
}
AgentKey::AgentKey(AgentKey&&) noexcept = default;
AgentKey& AgentKey::operator=(AgentKey&&) noexcept = default;
AgentKey::~AgentKey() = default;

Result<AgentKey> AgentKey::FromBytes(ByteSpan key) {
  if (key.size() != kAgentKeyFileBytes)
    return InvalidArgument("an agent key is " +
                           std::to_string(kAgentKeyFileBytes) + " bytes, not " +
                           std::to_string(key.size()));
  auto s = std::make_unique<State>();
  std::memcpy(s->enc.data(), key.data(), 32);
  std::memcpy(s->mac.data(), key.data() + 32, 32);
  uint8_t ipad[64], opad[64];
  for (size_t i = 0; i < 64; ++i) {
    const uint8_t k = i < 32 ? s->mac[i] : 0;
    ipad[i] = k ^ 0x36;
    opad[i] = k ^ 0x5c;
  }
  const bool ok =
      s->inner && s->outer &&
      EVP_DigestInit_ex(s->inner.get(), EVP_sha256(), nullptr) == 1 &&
      EVP_DigestUpdate(s->inner.get(), ipad, 64) == 1 &&
      EVP_DigestInit_ex(s->outer.get(), EVP_sha256(), nullptr) == 1 &&
      EVP_DigestUpdate(s->outer.get(), opad, 64) == 1;
  OPENSSL_cleanse(ipad, sizeof ipad);
  OPENSSL_cleanse(opad, sizeof opad);
  if (!ok) return Internal("OpenSSL could not set up HMAC-SHA256");
  return AgentKey(std::move(s));
}

Result<AgentKey> AgentKey::Create(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) == 0)
    return AlreadyExists(
        path +
        " exists already: an agent key is never replaced, since the points "
        "it sealed cannot be read without it");
  uint8_t bytes[kAgentKeyFileBytes];
  repository::RandomBytes(bytes, sizeof bytes);
  Status written =
      WriteFileExclusive(path, ByteSpan(bytes, sizeof bytes), 0600);
  Result<AgentKey> key = FromBytes(ByteSpan(bytes, sizeof bytes));
  OPENSSL_cleanse(bytes, sizeof bytes);
  HAVEN_RETURN_IF_ERROR(written);
  return key;
}

Result<AgentKey> AgentKey::Load(const std::string& path) {
  auto fd = OpenFile(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (!fd.ok()) {
    if (fd.status().code() == Code::kNotFound) return fd.status();
    return fd.status().WithContext("the agent key " + path);
  }
  struct stat st;
  if (fstat(fd->get(), &st) != 0) return ErrnoStatus("stat " + path, errno);
  if (!S_ISREG(st.st_mode))
    return InvalidArgument("the agent key " + path + " is not a regular file");
  if ((st.st_mode & 0177) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", st.st_mode & 07777);
    return InvalidArgument(
        "the agent key " + path + " has mode " + mode +
        ": others may read or change it; it must be 0600 (chmod 600 " + path +
        ")");
  }
  if (st.st_size != static_cast<off_t>(kAgentKeyFileBytes))
    return InvalidArgument("the agent key " + path + " is " +
                           std::to_string(st.st_size) + " bytes, not " +
                           std::to_string(kAgentKeyFileBytes) +
                           ": it is not a key `haven agent key create` made "
                           "(or it was damaged)");
  uint8_t bytes[kAgentKeyFileBytes];
  Status read = PReadExact(fd->get(), bytes, sizeof bytes, 0, path);
  Result<AgentKey> key = read.ok() ? FromBytes(ByteSpan(bytes, sizeof bytes))
                                   : Result<AgentKey>(read);
  OPENSSL_cleanse(bytes, sizeof bytes);
  return key;
}

Result<std::optional<AgentKey>> AgentKey::LoadIfPresent(
    const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return std::optional<AgentKey>();
    return ErrnoStatus("stat " + path, errno);
  }
  HAVEN_ASSIGN_OR_RETURN(AgentKey key, Load(path));
  return std::optional<AgentKey>(std::move(key));
}

std::array<uint8_t, 12> AgentKey::Nonce(ChunkType type, ByteSpan data) const {
  MdCtx in(EVP_MD_CTX_new()), out(EVP_MD_CTX_new());
  uint8_t digest[32];
  unsigned int len = 0;
  const uint8_t t = static_cast<uint8_t>(type);
  if (!in || !out || EVP_MD_CTX_copy_ex(in.get(), state_->inner.get()) != 1 ||
      EVP_DigestUpdate(in.get(), &t, 1) != 1 ||
      EVP_DigestUpdate(in.get(), data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(in.get(), digest, &len) != 1 ||
      EVP_MD_CTX_copy_ex(out.get(), state_->outer.get()) != 1 ||
      EVP_DigestUpdate(out.get(), digest, 32) != 1 ||
      EVP_DigestFinal_ex(out.get(), digest, &len) != 1)
    std::abort();  // only out of memory; a wrong nonce would break GCM
  std::array<uint8_t, 12> nonce;
  std::memcpy(nonce.data(), digest, nonce.size());
  return nonce;
}

Status AgentKey::Seal(ChunkType type, ByteSpan plain,
                      repository::Compressor& compressor, Bytes& out) const {
  const std::array<uint8_t, 12> nonce = Nonce(type, plain);
  Bytes z;
  HAVEN_RETURN_IF_ERROR(compressor.Compress(plain, z));
  const bool zstd = z.size() < plain.size();
  ByteSpan body = zstd ? ByteSpan(z) : plain;
  out.assign(kHeaderBytes + body.size() + kTagBytes, 0);
  out[0] = kVersion;
  out[1] = zstd ? kFlagZstd : 0;
  std::memcpy(out.data() + 2, nonce.data(), kNonceBytes);
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  int n = 0;
  uint8_t* ct = out.data() + kHeaderBytes;
  if (!ctx ||
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr,
                         state_->enc.data(), nonce.data()) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &n,
                        reinterpret_cast<const uint8_t*>(kAad),
                        sizeof kAad - 1) != 1 ||
      EVP_EncryptUpdate(ctx.get(), ct, &n, body.data(),
                        static_cast<int>(body.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), ct + n, &n) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes,
                          ct + body.size()) != 1)
    return Internal("AES-256-GCM failed sealing a chunk with the agent key");
  return OkStatus();
}

Status AgentKey::Open(ChunkType type, ByteSpan sealed,
                      repository::Decompressor& decompressor, Bytes& out,
                      const std::string& what) const {
  if (sealed.size() < kSealedOverhead)
    return DataLoss(what + " is " + std::to_string(sealed.size()) +
                    " bytes, too short to be sealed with an agent key");
  if (sealed[0] != kVersion || (sealed[1] & ~kFlagZstd) != 0)
    return DataLoss(what + " is not sealed with an agent key (version " +
                    std::to_string(sealed[0]) + ", flags " +
                    std::to_string(sealed[1]) + ")");
  const uint8_t* nonce = sealed.data() + 2;
  const size_t body = sealed.size() - kSealedOverhead;
  Bytes opened(body);
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  int n = 0;
  if (!ctx ||
      EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr,
                         state_->enc.data(), nonce) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &n,
                        reinterpret_cast<const uint8_t*>(kAad),
                        sizeof kAad - 1) != 1 ||
      EVP_DecryptUpdate(ctx.get(), opened.data(), &n,
                        sealed.data() + kHeaderBytes,
                        static_cast<int>(body)) != 1)
    return Internal("AES-256-GCM failed opening " + what);
  // The tag is const for OpenSSL; the API takes a non-const pointer.
  uint8_t tag[kTagBytes];
  std::memcpy(tag, sealed.data() + kHeaderBytes + body, kTagBytes);
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, tag) !=
          1 ||
      EVP_DecryptFinal_ex(ctx.get(), opened.data() + n, &n) != 1)
    return DataLoss(what + " does not open with agent key " + id_ +
                    ": it was sealed with another key, or changed since");
  if (sealed[1] & kFlagZstd) {
    const unsigned long long size =
        ZSTD_getFrameContentSize(opened.data(), opened.size());
    if (size == ZSTD_CONTENTSIZE_UNKNOWN || size == ZSTD_CONTENTSIZE_ERROR ||
        size > kMaxPlainBytes)
      return DataLoss(what + ": its zstd frame names no size up to 16 MiB");
    out.resize(static_cast<size_t>(size));
    HAVEN_RETURN_IF_ERROR(
        decompressor.Decompress(opened, out.size(), out.data(), what));
  } else {
    out = std::move(opened);
  }
  // The nonce binds the type and the plain bytes; one that does not match
  // is a chunk sealed by something else than Seal.
  if (std::memcmp(Nonce(type, out).data(), nonce, kNonceBytes) != 0)
    return DataLoss(what + " opens with agent key " + id_ +
                    " but does not match its nonce (not sealed as a chunk "
                    "of this type)");
  return OkStatus();
}

// ---------------------------------------------------------------- KeyedSink

namespace {

// This thread's last sealed chunks: Put follows IdFor on the same thread,
// so each chunk is sealed once. Keyed by id (the SHA-256 of the sealed
// bytes), which names one plain chunk under one key.
struct SealedCache {
  static constexpr size_t kEntries = 2;
  std::array<ChunkId, kEntries> ids{};
  std::array<Bytes, kEntries> sealed;
  size_t next = 0;
  std::unique_ptr<repository::Compressor> compressor;
};
thread_local SealedCache t_sealed;

}  // namespace

KeyedSink::KeyedSink(const AgentKey& key, PointSink& inner)
    : key_(key), inner_(inner) {}

ChunkId KeyedSink::IdFor(ChunkType type, ByteSpan raw) const {
  if (type == ChunkType::kTree) return inner_.IdFor(type, raw);
  SealedCache& c = t_sealed;
  if (!c.compressor)
    c.compressor =
        std::make_unique<repository::Compressor>(inner_.compression_level());
  Bytes sealed;
  // Sealing fails only when zstd or OpenSSL fails: the zero id then makes
  // Put seal again and report it.
  if (!key_.Seal(type, raw, *c.compressor, sealed).ok()) return ChunkId{};
  ChunkId id = Sha256(sealed);
  c.ids[c.next] = id;
  c.sealed[c.next] = std::move(sealed);
  c.next = (c.next + 1) % SealedCache::kEntries;
  return id;
}

Status KeyedSink::SealedFor(ChunkType type, const ChunkId& id, ByteSpan raw,
                            repository::Compressor& compressor,
                            Bytes& out) const {
  SealedCache& c = t_sealed;
  for (size_t i = 0; i < SealedCache::kEntries; ++i) {
    if (c.ids[i] == id && !id.IsZero() && !c.sealed[i].empty()) {
      out = std::move(c.sealed[i]);
      c.ids[i] = ChunkId{};
      return OkStatus();
    }
  }
  HAVEN_RETURN_IF_ERROR(key_.Seal(type, raw, compressor, out));
  if (!(Sha256(out) == id))
    return Internal("a chunk's id is not the SHA-256 of its sealed bytes");
  return OkStatus();
}

Result<bool> KeyedSink::Put(ChunkType type, const ChunkId& id, ByteSpan raw,
                            repository::WriteContext& ctx) {
  if (type == ChunkType::kTree) return inner_.Put(type, id, raw, ctx);
  Bytes sealed;
  HAVEN_RETURN_IF_ERROR(SealedFor(type, id, raw, ctx.compressor, sealed));
  return inner_.Put(type, id, sealed, ctx);
}

Result<std::optional<repository::Manifest>> KeyedSink::LatestPoint(
    const std::string& name, const std::string& kind) {
  HAVEN_ASSIGN_OR_RETURN(auto parent, inner_.LatestPoint(name, kind));
  // A parent sealed with another key (or none) names chunks this key
  // cannot stand for: every file is read and sealed again.
  if (parent && parent->agent_key != key_.id()) parent.reset();
  return parent;
}

Status KeyedSink::Commit(repository::Manifest& m) {
  m.agent_key = key_.id();
  return inner_.Commit(m);
}

// --------------------------------------------------------- KeyedPointReader

KeyedPointReader::KeyedPointReader(const AgentKey& key,
                                   const repository::PointReader& inner)
    : key_(key), inner_(inner) {}

Status KeyedPointReader::ReadChunk(ChunkType type, const ChunkId& id,
                                   Bytes& out,
                                   repository::ReadContext& ctx) const {
  if (type == ChunkType::kTree) return inner_.ReadChunk(type, id, out, ctx);
  Bytes sealed;
  HAVEN_RETURN_IF_ERROR(inner_.ReadChunk(type, id, sealed, ctx));
  return key_.Open(type, sealed, ctx.decompressor, out,
                   "data chunk " + id.Hex());
}

Result<repository::Manifest> KeyedPointReader::FindSnapshot(
    const std::string& ref) const {
  HAVEN_ASSIGN_OR_RETURN(repository::Manifest m, inner_.FindSnapshot(ref));
  if (m.agent_key.empty())
    return FailedPrecondition("point " + m.id.substr(0, 8) +
                              " is not sealed with an agent key");
  if (m.agent_key != key_.id())
    return FailedPrecondition("point " + m.id.substr(0, 8) +
                              " is sealed with agent key " + m.agent_key +
                              ", not with this agent's key " + key_.id() +
                              ": restore it where that key file is");
  return m;
}

}  // namespace haven::agent
