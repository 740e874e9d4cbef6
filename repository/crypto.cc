#include "repository/crypto.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <memory>

namespace haven::repository {
namespace {

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;

struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

const EVP_CIPHER* Aes256Gcm() {
  static const EVP_CIPHER* cipher =
      EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  return cipher;
}

const EVP_MD* Sha256() {
  static const EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}

[[noreturn]] void CryptoAbort(const char* what) {
  // Only reachable when OpenSSL cannot allocate or is misbuilt.
  std::fprintf(stderr, "haven: fatal OpenSSL failure in %s\n", what);
  std::abort();
}

}  // namespace

void RandomBytes(uint8_t* out, size_t len) {
  if (RAND_bytes(out, static_cast<int>(len)) != 1) CryptoAbort("RAND_bytes");
}

// HMAC(K, m) = H((K ^ opad) | H((K ^ ipad) | m)); the two keyed prefixes are
// hashed once here and the digest states copied per call.
struct KeyedHasher::State {
  MdCtx inner{EVP_MD_CTX_new()};
  MdCtx outer{EVP_MD_CTX_new()};
};

KeyedHasher::KeyedHasher(const Key& key) : state_(new State) {
  uint8_t ipad[64], opad[64];
  for (size_t i = 0; i < 64; ++i) {
    uint8_t k = i < key.size() ? key[i] : 0;
    ipad[i] = k ^ 0x36;
    opad[i] = k ^ 0x5c;
  }
  if (!state_->inner || !state_->outer ||
      EVP_DigestInit_ex(state_->inner.get(), Sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(state_->inner.get(), ipad, 64) != 1 ||
      EVP_DigestInit_ex(state_->outer.get(), Sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(state_->outer.get(), opad, 64) != 1)
    CryptoAbort("HMAC init");
}

KeyedHasher::~KeyedHasher() { delete state_; }

ChunkId KeyedHasher::Hash(ByteSpan data) const {
  MdCtx ctx(EVP_MD_CTX_new());
  uint8_t inner[32];
  ChunkId id;
  unsigned int len = 0;
  if (!ctx || EVP_MD_CTX_copy_ex(ctx.get(), state_->inner.get()) != 1 ||
      EVP_DigestUpdate(ctx.get(), data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), inner, &len) != 1 ||
      EVP_MD_CTX_copy_ex(ctx.get(), state_->outer.get()) != 1 ||
      EVP_DigestUpdate(ctx.get(), inner, sizeof inner) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), id.bytes.data(), &len) != 1)
    CryptoAbort("HMAC");
  return id;
}

Key DeriveKey(const Key& master, std::string_view purpose) {
  Key out;
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), master.data(), static_cast<int>(master.size()),
           reinterpret_cast<const unsigned char*>(purpose.data()),
           purpose.size(), out.data(), &len) == nullptr)
    CryptoAbort("HMAC derive");
  return out;
}

Status Seal(const Key& key, ByteSpan aad, ByteSpan plaintext, Bytes& out) {
  out.resize(kNonceSize + plaintext.size() + kTagSize);
  RandomBytes(out.data(), kNonceSize);
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  uint8_t* ct = out.data() + kNonceSize;
  if (!ctx ||
      EVP_EncryptInit_ex2(ctx.get(), Aes256Gcm(), key.data(), out.data(),
                          nullptr) != 1 ||
      (aad.size() > 0 &&
       EVP_EncryptUpdate(ctx.get(), nullptr, &len, aad.data(),
                         static_cast<int>(aad.size())) != 1) ||
      EVP_EncryptUpdate(ctx.get(), ct, &len, plaintext.data(),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), ct + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagSize,
                          ct + plaintext.size()) != 1)
    return Internal("AES-GCM encryption failed");
  return OkStatus();
}

Status Unseal(const Key& key, ByteSpan aad, ByteSpan sealed, Bytes& out,
              const std::string& what) {
  if (sealed.size() < kSealOverhead)
    return DataLoss(what + ": encrypted blob is truncated (" +
                    std::to_string(sealed.size()) + " bytes)");
  size_t ct_len = sealed.size() - kSealOverhead;
  out.resize(ct_len);
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  const uint8_t* ct = sealed.data() + kNonceSize;
  Bytes tag(sealed.end() - kTagSize, sealed.end());
  if (!ctx ||
      EVP_DecryptInit_ex2(ctx.get(), Aes256Gcm(), key.data(), sealed.data(),
                          nullptr) != 1 ||
      (aad.size() > 0 &&
       EVP_DecryptUpdate(ctx.get(), nullptr, &len, aad.data(),
                         static_cast<int>(aad.size())) != 1) ||
      EVP_DecryptUpdate(ctx.get(), out.data(), &len, ct,
                        static_cast<int>(ct_len)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagSize,
                          tag.data()) != 1)
    return Internal("AES-GCM decryption setup failed");
  if (EVP_DecryptFinal_ex(ctx.get(), out.data() + len, &len) != 1) {
    out.clear();
    return DataLoss(what + ": authentication failed (bytes were changed)");
  }
  return OkStatus();
}

Result<Key> Scrypt(std::string_view passphrase, ByteSpan salt,
                   const ScryptParams& params) {
  // Key slot files are unauthenticated: bound the memory and time a planted
  // slot can make every Open spend: memory 128·N·r (default 32 MiB, cap
  // 256 MiB), time ~N·r·p (cap 16 times the default).
  if (params.n < 2 || (params.n & (params.n - 1)) != 0 ||
      params.n > (1u << 20) || params.r == 0 || params.r > 32 ||
      params.p == 0 || params.p > 16 ||
      128 * params.n * params.r > (256ull << 20) ||
      params.n * params.r * params.p > (1ull << 22))
    return DataLoss("scrypt parameters out of range");
  Key out;
  uint64_t maxmem = 128 * params.r * params.n * params.p + (64u << 20);
  if (EVP_PBE_scrypt(passphrase.data(), passphrase.size(), salt.data(),
                     salt.size(), params.n, params.r, params.p, maxmem,
                     out.data(), out.size()) != 1)
    return Internal("scrypt failed");
  return out;
}

}  // namespace haven::repository
