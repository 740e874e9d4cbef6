// The bytes of one recovery point's manifest, as stored in snapshots/<id>
// and, verbatim, in the catalog (catalog.h):
//
//   json length (u32, little endian; NOT authenticated, only a size hint) |
//   Seal(data key, aad = "haven-snapshot:" + id, codec (1 = zstd) | zstd(json))
//
// The id is in the associated data, so bytes moved to another id (another
// file name, another catalog key) fail authentication.
#ifndef HAVEN_REPOSITORY_MANIFEST_FILE_H_
#define HAVEN_REPOSITORY_MANIFEST_FILE_H_

#include <string>

#include "base/bytes.h"
#include "base/status.h"
#include "repository/compression.h"
#include "repository/crypto.h"
#include "repository/manifest.h"

namespace haven::repository {

// The largest manifest file Haven reads (64 MiB).
inline constexpr size_t kMaxManifestFile = 64u << 20;

// Encodes `m` (whose id must be set) as the bytes of snapshots/<m.id>.
Result<Bytes> SealManifest(const Key& data_key, const Manifest& m);

// Decodes untrusted bytes claimed to be manifest `id`. Authentication,
// length, codec and JSON errors are DataLoss naming `what`; a manifest that
// names another id is DataLoss too. `decompressor`, if given, is reused
// (making one per manifest was an eighth of listing 10,000 points).
Result<Manifest> OpenManifest(const Key& data_key, const std::string& id,
                              ByteSpan file, const std::string& what,
                              Decompressor* decompressor = nullptr);

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_MANIFEST_FILE_H_
