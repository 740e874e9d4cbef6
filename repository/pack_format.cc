#include "repository/pack_format.h"

#include <cstring>

namespace haven::repository {

std::string PackHeaderAad(const std::string& pack_name) {
  return "haven-pack-header:" + pack_name;
}

Bytes EncodePackHeader(const std::vector<PackEntry>& entries) {
  Bytes out(kPackHeaderMagic, kPackHeaderMagic + 4);
  PutU32(out, static_cast<uint32_t>(entries.size()));
  for (const auto& e : entries) {
    out.push_back(static_cast<uint8_t>(e.type));
    out.insert(out.end(), 3, 0);
    PutU32(out, e.raw_len);
    PutU64(out, e.offset);
    PutU32(out, e.stored_len);
    out.insert(out.end(), e.id.bytes.begin(), e.id.bytes.end());
  }
  return out;
}

Result<std::vector<PackEntry>> DecodePackHeader(ByteSpan p, uint64_t data_end,
                                                const std::string& what) {
  if (p.size() < 8 || std::memcmp(p.data(), kPackHeaderMagic, 4) != 0)
    return DataLoss(what + ": pack header has a bad magic");
  uint32_t count = GetU32(p.data() + 4);
  if (p.size() != 8 + static_cast<uint64_t>(count) * kPackEntrySize)
    return DataLoss(what + ": pack header length does not match its count");
  std::vector<PackEntry> out(count);
  const uint8_t* q = p.data() + 8;
  for (uint32_t i = 0; i < count; ++i, q += kPackEntrySize) {
    PackEntry& e = out[i];
    if (q[0] > static_cast<uint8_t>(ChunkType::kTree))
      return DataLoss(what + ": entry " + std::to_string(i) +
                      " has unknown type");
    e.type = static_cast<ChunkType>(q[0]);
    e.raw_len = GetU32(q + 4);
    e.offset = GetU64(q + 8);
    e.stored_len = GetU32(q + 16);
    std::memcpy(e.id.bytes.data(), q + 20, 32);
    if (e.offset < sizeof kPackMagic || e.stored_len < kSealOverhead ||
        e.offset > data_end || e.stored_len > data_end - e.offset)
      return DataLoss(what + ": entry " + std::to_string(i) +
                      " points outside the pack");
  }
  return out;
}

bool IsPackName(const std::string& name) {
  return name.size() == 32 &&
         name.find_first_not_of("0123456789abcdef") == std::string::npos;
}

}  // namespace haven::repository
