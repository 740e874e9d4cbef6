// zstd contexts (RAII). One per thread; contexts are reused across chunks.
#ifndef HAVEN_REPOSITORY_COMPRESSION_H_
#define HAVEN_REPOSITORY_COMPRESSION_H_

#include <memory>

#include "base/bytes.h"
#include "base/status.h"

struct ZSTD_CCtx_s;
struct ZSTD_DCtx_s;

namespace haven::repository {

class Compressor {
 public:
  explicit Compressor(int level);
  ~Compressor();
  Compressor(const Compressor&) = delete;
  Compressor& operator=(const Compressor&) = delete;
  // Appends the zstd frame of `in` to `out`.
  Status Compress(ByteSpan in, Bytes& out);

 private:
  ZSTD_CCtx_s* ctx_;
  int level_;
};

class Decompressor {
 public:
  Decompressor();
  ~Decompressor();
  Decompressor(const Decompressor&) = delete;
  Decompressor& operator=(const Decompressor&) = delete;
  // Decompresses a frame that must expand to exactly `expected` bytes;
  // anything else is DataLoss naming `what`.
  Status Decompress(ByteSpan in, size_t expected, uint8_t* out,
                    const std::string& what);

 private:
  ZSTD_DCtx_s* ctx_;
};

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_COMPRESSION_H_
