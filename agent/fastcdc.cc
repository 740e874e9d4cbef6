#include "agent/fastcdc.h"

#include <array>
#include <bit>
#include <string>

namespace haven::agent {
namespace {

constexpr std::array<uint64_t, 256> MakeGear() {
  std::array<uint64_t, 256> g{};
  uint64_t x = kFastCdcGearSeed;
  for (auto& v : g) {  // SplitMix64
    x += 0x9e3779b97f4a7c15ull;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    v = z ^ (z >> 31);
  }
  return g;
}

constexpr std::array<uint64_t, 256> kGear = MakeGear();

// `bits` one-bits at the top of a 64-bit word: the fingerprint's high bits
// depend on the last 64 bytes, its low bits only on the last few.
constexpr uint64_t HighMask(int bits) {
  return bits <= 0 ? 0 : bits >= 64 ? ~0ull : ~0ull << (64 - bits);
}

}  // namespace

Result<FastCdc> FastCdc::Create(const CdcParams& p) {
  if (p.min_size < 64 || p.min_size >= p.avg_size || p.avg_size >= p.max_size ||
      p.max_size > (64u << 20) || p.avg_size < 256 ||
      !std::has_single_bit(p.avg_size))
    return InvalidArgument(
        "chunk sizes must satisfy 64 <= min < avg < max <= 64 MiB with avg a "
        "power of two (got " +
        std::to_string(p.min_size) + "/" + std::to_string(p.avg_size) + "/" +
        std::to_string(p.max_size) + ")");
  return FastCdc(p);
}

FastCdc::FastCdc(const CdcParams& p) : params_(p) {
  const int bits = std::countr_zero(p.avg_size);
  mask_s_ = HighMask(bits + 2);
  mask_l_ = HighMask(bits - 2);
}

size_t FastCdc::NextCut(const uint8_t* data, size_t len, bool last) const {
  if (len <= params_.min_size) return last ? len : 0;
  const size_t end = len < params_.max_size ? len : params_.max_size;
  const size_t normal = end < params_.avg_size ? end : params_.avg_size;
  uint64_t fp = 0;
  size_t i = params_.min_size;
  for (; i < normal; ++i) {
    fp = (fp << 1) + kGear[data[i]];
    if ((fp & mask_s_) == 0) return i + 1;
  }
  for (; i < end; ++i) {
    fp = (fp << 1) + kGear[data[i]];
    if ((fp & mask_l_) == 0) return i + 1;
  }
  if (end == params_.max_size) return end;
  return last ? len : 0;
}

}  // namespace haven::agent
