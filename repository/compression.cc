#include "repository/compression.h"

#include <zstd.h>

#include <cstdlib>

namespace haven::repository {

Compressor::Compressor(int level) : ctx_(ZSTD_createCCtx()), level_(level) {
  if (!ctx_) std::abort();
  ZSTD_CCtx_setParameter(ctx_, ZSTD_c_compressionLevel, level_);
  ZSTD_CCtx_setParameter(ctx_, ZSTD_c_checksumFlag, 0);  // GCM authenticates
}

Compressor::~Compressor() { ZSTD_freeCCtx(ctx_); }

Status Compressor::Compress(ByteSpan in, Bytes& out) {
  size_t start = out.size();
  out.resize(start + ZSTD_compressBound(in.size()));
  size_t n = ZSTD_compress2(ctx_, out.data() + start, out.size() - start,
                            in.data(), in.size());
  if (ZSTD_isError(n))
    return Internal(std::string("zstd compress: ") + ZSTD_getErrorName(n));
  out.resize(start + n);
  return OkStatus();
}

Decompressor::Decompressor() : ctx_(ZSTD_createDCtx()) {
  if (!ctx_) std::abort();
}

Decompressor::~Decompressor() { ZSTD_freeDCtx(ctx_); }

Status Decompressor::Decompress(ByteSpan in, size_t expected, uint8_t* out,
                                const std::string& what) {
  size_t n = ZSTD_decompressDCtx(ctx_, out, expected, in.data(), in.size());
  if (ZSTD_isError(n))
    return DataLoss(what + ": zstd: " + ZSTD_getErrorName(n));
  if (n != expected)
    return DataLoss(what + ": decompressed to " + std::to_string(n) +
                    " bytes, expected " + std::to_string(expected));
  return OkStatus();
}

}  // namespace haven::repository
