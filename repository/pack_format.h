// Pack file layout (all integers little-endian):
//
//   magic        8 bytes  "HAVENPK1"
//   blob*                 sealed chunks (see chunk_codec.h), back to back
//   header blob           Seal(data key, aad = "haven-pack-header:" + pack
//                         name, header plaintext)
//   header_len   4 bytes  length of the header blob
//   end magic    8 bytes  "HAVENEND"
//
// Header plaintext:
//   "HVPH" | count (u32) | count entries of 52 bytes:
//     type (u8) | 3 zero bytes | raw_len (u32) | offset (u64) |
//     stored_len (u32) | chunk id (32 bytes)
//
// A pack is self-describing: the index can always be rebuilt from packs.
// Pack names are 32 hex digits (16 random bytes); the file lives at
// packs/<first two hex digits>/<name>.
#ifndef HAVEN_REPOSITORY_PACK_FORMAT_H_
#define HAVEN_REPOSITORY_PACK_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "repository/chunk_codec.h"
#include "repository/crypto.h"

namespace haven::repository {

inline constexpr char kPackMagic[8] = {'H', 'A', 'V', 'E', 'N', 'P', 'K', '1'};
inline constexpr char kPackEndMagic[8] = {'H', 'A', 'V', 'E',
                                          'N', 'E', 'N', 'D'};
inline constexpr char kPackHeaderMagic[4] = {'H', 'V', 'P', 'H'};
inline constexpr size_t kPackTrailerSize = 4 + 8;
inline constexpr size_t kPackEntrySize = 52;
// A header larger than this is rejected before it is read (untrusted length).
inline constexpr uint32_t kMaxPackHeader = 64u << 20;

struct PackEntry {
  ChunkType type = ChunkType::kData;
  uint32_t raw_len = 0;
  uint64_t offset = 0;
  uint32_t stored_len = 0;
  ChunkId id;
};

std::string PackHeaderAad(const std::string& pack_name);
Bytes EncodePackHeader(const std::vector<PackEntry>& entries);
// Validates every entry against `data_end` (where blobs stop).
Result<std::vector<PackEntry>> DecodePackHeader(ByteSpan plaintext,
                                                uint64_t data_end,
                                                const std::string& what);

bool IsPackName(const std::string& name);

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_PACK_FORMAT_H_
