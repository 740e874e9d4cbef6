// How one chunk becomes a sealed blob and back.
//
//   plaintext = codec (1 byte: 0 = stored, 1 = zstd) | payload
//   blob      = Seal(data key, aad = type (1 byte) | chunk id (32), plaintext)
//
// The chunk id is HMAC-SHA256(id key, raw bytes). Binding the id and type in
// the associated data means a blob cannot be swapped for another one, even
// one from the same repository.
#ifndef HAVEN_REPOSITORY_CHUNK_CODEC_H_
#define HAVEN_REPOSITORY_CHUNK_CODEC_H_

#include <cstdint>

#include "base/bytes.h"
#include "base/status.h"
#include "repository/compression.h"
#include "repository/crypto.h"

namespace haven::repository {

enum class ChunkType : uint8_t {
  kData = 0,  // bytes of an image or file
  kTree = 1,  // a node of a chunk-list tree (see chunk_tree.h)
};

// Compresses (when it helps) and encrypts `raw`; `sealed` receives the blob.
Status SealChunk(const Key& data_key, ChunkType type, const ChunkId& id,
                 ByteSpan raw, Compressor& compressor, Bytes& scratch,
                 Bytes& sealed);

// The codec byte of a sealed chunk's plaintext.
inline constexpr uint8_t kChunkCodecStored = 0;
inline constexpr uint8_t kChunkCodecZstd = 1;
// Encrypts a chunk whose encoding was made elsewhere: `codec` and `payload`
// as the plaintext above (an agent's zstd frame, which the caller has
// already decoded to exactly the chunk's raw bytes: nothing here checks it).
Status SealEncodedChunk(const Key& data_key, ChunkType type, const ChunkId& id,
                        uint8_t codec, ByteSpan payload, Bytes& scratch,
                        Bytes& sealed);
// Authenticates, decrypts and decompresses a blob that must hold exactly
// `raw_len` bytes into `out` (resized). `what` names the chunk in errors.
Status OpenChunk(const Key& data_key, ChunkType type, const ChunkId& id,
                 ByteSpan sealed, uint32_t raw_len, Decompressor& decompressor,
                 Bytes& scratch, Bytes& out, const std::string& what);

// Only authenticates a blob (AES-GCM tag; no decompression): enough to know
// that it is the blob sealed for this type and id. `scratch` is clobbered.
Status AuthenticateChunk(const Key& data_key, ChunkType type, const ChunkId& id,
                         ByteSpan sealed, Bytes& scratch,
                         const std::string& what);

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_CHUNK_CODEC_H_
