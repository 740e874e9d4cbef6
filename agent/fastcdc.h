// Content-defined chunking for file backups (issue 7's building block):
// FastCDC — a gear rolling hash with normalized chunking (Xia et al.,
// USENIX ATC 2016). A cut depends only on the bytes just before it, so
// inserting or deleting bytes in a file moves the cuts near the edit and
// leaves every later chunk as it was: they deduplicate against the
// previous backup. Fixed-size chunks (image backups) would all shift.
//
//   fp = (fp << 1) + kGear[byte]            for each byte after min_size
//   cut when  fp & mask_s == 0  before avg_size  (harder: mask_s has two
//                                                 more bits than log2(avg))
//        or   fp & mask_l == 0  from avg_size    (easier: two fewer bits)
//        or   at max_size
//
// The gear table (256 values from SplitMix64 seeded with
// kFastCdcGearSeed) and the masks (the high bits of fp) are fixed: the
// same file content must cut at the same places in every Haven version,
// or deduplication against older backups is lost.
#ifndef HAVEN_AGENT_FASTCDC_H_
#define HAVEN_AGENT_FASTCDC_H_

#include <cstddef>
#include <cstdint>

#include "base/status.h"

namespace haven::agent {

inline constexpr uint64_t kFastCdcGearSeed =
    0x6861'7665'6e43'4443;  // "havenCDC"

struct CdcParams {
  uint32_t min_size = 64 << 10;
  uint32_t avg_size = 256 << 10;  // a power of two
  uint32_t max_size = 1 << 20;
};

class FastCdc {
 public:
  // InvalidArgument unless 64 <= min < avg < max <= 64 MiB and avg is a
  // power of two (at least 256).
  static Result<FastCdc> Create(const CdcParams& params);

  // The length of the chunk that starts at `data`, given `len` bytes
  // available: a cut point in (0, len]. When no cut is found in the bytes
  // given and fewer than max_size are available, returns 0 unless `last`
  // (the stream ends at data + len), in which case it returns `len`.
  size_t NextCut(const uint8_t* data, size_t len, bool last) const;

  const CdcParams& params() const { return params_; }

 private:
  explicit FastCdc(const CdcParams& p);
  CdcParams params_;
  uint64_t mask_s_ = 0, mask_l_ = 0;
};

}  // namespace haven::agent

#endif  // HAVEN_AGENT_FASTCDC_H_
