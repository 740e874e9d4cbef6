// Cryptography for the repository: keyed chunk ids (HMAC-SHA256), sealed
// blobs (AES-256-GCM) and passphrase stretching (scrypt). OpenSSL errors are
// converted to Status here and nowhere else.
//
// Sealed blob layout: nonce (12 bytes) | ciphertext | GCM tag (16 bytes).
// The nonce is fresh random bytes for every seal; the associated data names
// what the blob is (its chunk id and type, a pack id, a snapshot id) so a
// blob moved to another place fails authentication.
#ifndef HAVEN_REPOSITORY_CRYPTO_H_
#define HAVEN_REPOSITORY_CRYPTO_H_

#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>

#include "base/bytes.h"
#include "base/status.h"

namespace haven::repository {

inline constexpr size_t kKeySize = 32;
inline constexpr size_t kNonceSize = 12;
inline constexpr size_t kTagSize = 16;
inline constexpr size_t kSealOverhead = kNonceSize + kTagSize;

using Key = std::array<uint8_t, kKeySize>;

// 32-byte chunk id. All-zero is reserved: it means "hole" (a range of zeros
// that is not stored).
struct ChunkId {
  std::array<uint8_t, 32> bytes{};
  bool IsZero() const { return IsAllZero(bytes.data(), bytes.size()); }
  std::string Hex() const { return HexEncode(bytes); }
  bool operator==(const ChunkId&) const = default;
};

struct ChunkIdHash {
  size_t operator()(const ChunkId& id) const {
    size_t h;
    std::memcpy(&h, id.bytes.data(), sizeof h);
    return h;
  }
};

void RandomBytes(uint8_t* out, size_t len);

// HMAC-SHA256 with a fixed key. Thread-safe: the keyed state is computed once
// and copied for each call.
class KeyedHasher {
 public:
  explicit KeyedHasher(const Key& key);
  ~KeyedHasher();
  KeyedHasher(const KeyedHasher&) = delete;
  KeyedHasher& operator=(const KeyedHasher&) = delete;

  ChunkId Hash(ByteSpan data) const;

 private:
  struct State;
  State* state_;
};

// Derives a purpose-specific subkey from the master secret.
Key DeriveKey(const Key& master, std::string_view purpose);

// Encrypts `plaintext` into `out` (replacing its contents).
Status Seal(const Key& key, ByteSpan aad, ByteSpan plaintext, Bytes& out);
// Decrypts and authenticates; DataLoss if the tag does not verify or the blob
// is too short. `what` names the blob in the error.
Status Unseal(const Key& key, ByteSpan aad, ByteSpan sealed, Bytes& out,
              const std::string& what);

struct ScryptParams {
  uint64_t n = 1 << 15;
  uint32_t r = 8;
  uint32_t p = 1;
};
Result<Key> Scrypt(std::string_view passphrase, ByteSpan salt,
                   const ScryptParams& params);

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_CRYPTO_H_
