#include "repository/chunk_codec.h"

#include <cstring>

namespace haven::repository {
namespace {

constexpr uint8_t kCodecStored = kChunkCodecStored;
constexpr uint8_t kCodecZstd = kChunkCodecZstd;

std::array<uint8_t, 33> Aad(ChunkType type, const ChunkId& id) {
  std::array<uint8_t, 33> aad;
  aad[0] = static_cast<uint8_t>(type);
  std::memcpy(aad.data() + 1, id.bytes.data(), 32);
  return aad;
}

}  // namespace

Status SealChunk(const Key& data_key, ChunkType type, const ChunkId& id,
                 ByteSpan raw, Compressor& compressor, Bytes& scratch,
                 Bytes& sealed) {
  scratch.clear();
  scratch.push_back(kCodecZstd);
  HAVEN_RETURN_IF_ERROR(compressor.Compress(raw, scratch));
  // Incompressible data (already-compressed files, random blocks) is stored
  // as is, so it costs neither space nor decompression time.
  if (scratch.size() >= raw.size() + 1) {
    scratch.resize(1 + raw.size());
    scratch[0] = kCodecStored;
    if (!raw.empty()) std::memcpy(scratch.data() + 1, raw.data(), raw.size());
  }
  auto aad = Aad(type, id);
  return Seal(data_key, aad, scratch, sealed);
}

Status SealEncodedChunk(const Key& data_key, ChunkType type, const ChunkId& id,
                        uint8_t codec, ByteSpan payload, Bytes& scratch,
                        Bytes& sealed) {
  if (codec > kCodecZstd)
    return InvalidArgument("unknown chunk codec " + std::to_string(codec));
  scratch.clear();
  scratch.push_back(codec);
  scratch.insert(scratch.end(), payload.begin(), payload.end());
  auto aad = Aad(type, id);
  return Seal(data_key, aad, scratch, sealed);
}

Status AuthenticateChunk(const Key& data_key, ChunkType type, const ChunkId& id,
                         ByteSpan sealed, Bytes& scratch,
                         const std::string& what) {
  auto aad = Aad(type, id);
  HAVEN_RETURN_IF_ERROR(Unseal(data_key, aad, sealed, scratch, what));
  if (scratch.empty() || scratch[0] > kCodecZstd)
    return DataLoss(what + ": unknown codec");
  return OkStatus();
}

Status OpenChunk(const Key& data_key, ChunkType type, const ChunkId& id,
                 ByteSpan sealed, uint32_t raw_len, Decompressor& decompressor,
                 Bytes& scratch, Bytes& out, const std::string& what) {
  auto aad = Aad(type, id);
  HAVEN_RETURN_IF_ERROR(Unseal(data_key, aad, sealed, scratch, what));
  if (scratch.empty()) return DataLoss(what + ": empty plaintext");
  ByteSpan payload(scratch.data() + 1, scratch.size() - 1);
  out.resize(raw_len);
  switch (scratch[0]) {
    case kCodecStored:
      if (payload.size() != raw_len)
        return DataLoss(what + ": holds " + std::to_string(payload.size()) +
                        " bytes, expected " + std::to_string(raw_len));
      if (raw_len > 0) std::memcpy(out.data(), payload.data(), raw_len);
      return OkStatus();
    case kCodecZstd:
      return decompressor.Decompress(payload, raw_len, out.data(), what);
    default:
      return DataLoss(what + ": unknown codec " + std::to_string(scratch[0]));
  }
}

}  // namespace haven::repository
