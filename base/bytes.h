// Little-endian encoding and hex helpers for on-disk formats.
#ifndef HAVEN_BASE_BYTES_H_
#define HAVEN_BASE_BYTES_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace haven {

using Bytes = std::vector<uint8_t>;
using ByteSpan = std::span<const uint8_t>;

inline ByteSpan AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

void PutU32(Bytes& out, uint32_t v);
void PutU64(Bytes& out, uint64_t v);
uint32_t GetU32(const uint8_t* p);
uint64_t GetU64(const uint8_t* p);

std::string HexEncode(ByteSpan data);
// Returns nullopt unless `hex` is an even-length string of [0-9a-f].
std::optional<Bytes> HexDecode(std::string_view hex);

bool IsAllZero(const uint8_t* data, size_t len);

// Formats 1536 as "1.5 KiB".
std::string HumanBytes(uint64_t n);

}  // namespace haven

#endif  // HAVEN_BASE_BYTES_H_
