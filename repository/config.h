// The repository's `config` file: plain JSON, read before any key is known.
//
//   {"format": "haven-repository", "version": 1, "id": "<32 hex>",
//    "chunk_size": 65536, "pack_size": 16777216,
//    "compression": "zstd", "compression_level": 1, "created": "<ISO 8601>",
//    "object_lock": {"mode": "GOVERNANCE", "seconds": 2592000}}
//
// "object_lock" is present only for a repository made with --object-lock on
// an object store (docs/repository-format.md, "Object lock").
//
// It is untrusted input: every field is range-checked. Values that change how
// stored data is interpreted (the chunk size of an image) are also recorded in
// each authenticated snapshot manifest, which wins.
#ifndef HAVEN_REPOSITORY_CONFIG_H_
#define HAVEN_REPOSITORY_CONFIG_H_

#include <cstdint>
#include <string>

#include "base/status.h"

namespace haven::repository {

inline constexpr int kFormatVersion = 1;
inline constexpr uint32_t kDefaultChunkSize = 64 * 1024;
inline constexpr uint32_t kMinChunkSize = 4 * 1024;
inline constexpr uint32_t kMaxChunkSize = 8 * 1024 * 1024;
inline constexpr uint64_t kDefaultPackSize = 16 * 1024 * 1024;
inline constexpr int kDefaultCompressionLevel = 1;

struct Config {
  std::string id;  // 32 hex digits
  uint32_t chunk_size = kDefaultChunkSize;
  uint64_t pack_size = kDefaultPackSize;
  int compression_level = kDefaultCompressionLevel;
  std::string created;
  // 0: no object lock. Else every config, key, pack and manifest is written
  // retained for this long, in this mode ("GOVERNANCE" or "COMPLIANCE").
  int64_t object_lock_seconds = 0;
  std::string object_lock_mode;

  std::string ToJson() const;
  static Result<Config> FromJson(std::string_view json);
  // Checks the values a user or a file may have set.
  Status Validate() const;
};

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_CONFIG_H_
