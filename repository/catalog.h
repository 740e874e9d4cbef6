// The catalog of recovery points: a cache in the index (chunk_index.h), so
// that listing points, resolving NAME:latest and choosing a backup's parent
// cost one listing of snapshots/ and a scan of the index, not a read of
// every manifest file.
//
// For each point id (16 raw bytes in the key) two entries, always written
// in one batch:
//   "s" | id  ->  file size (u64) | file mtime (u64, ns since the epoch) |
//                 when the entry was written (u64, ns since the epoch) |
//                 Seal(data key, aad = "haven-catalog:" + id in hex,
//                      version (u8, 1) | name | kind | time)
//                 name, kind and time each as u16 length (little endian)
//                 then the bytes: enough to sort and resolve NAME:latest.
//                 Size and mtime are of snapshots/<id> when it was read.
//   "t" | id  ->  the point's manifest file, verbatim (manifest_file.h).
// The index is not encrypted; names, host names and paths appear in it only
// sealed, and an entry copied to another id fails authentication.
//
// Rules:
//   - snapshots/ is the truth. Every use lists it once through the backend
//     (Backend::List: names, sizes and change markers, ObjectInfo.mtime_ns).
//     An entry whose id is not listed is ignored (forgotten, or never
//     committed); a listed id without an entry, or whose size or mtime
//     differ from the entry's, is read from its object (ReadFileFn, which
//     reads through the backend). A listed mtime of 0 (a backend with no
//     change marker) makes no entry fresh: an equal size alone does not
//     show that the object was not replaced, so it is always read. Manifests are never
//     modified in place, so that is all it takes to stay up to date, and a
//     file damaged in place is read (and reported) again rather than hidden
//     behind its good copy. An entry written within 2 s of its file's mtime
//     is "racy" (mtimes come from a coarse clock: an in-place change in the
//     same tick keeps the mtime) and is not trusted: the file is read, and a
//     writer rewrites the entry. Damage that keeps size and mtime is for
//     'haven check', which always reads the files.
//   - Writers (ChunkIndex::writable(): held for writing, or a view with
//     write sessions, where each catalog batch is one short session like a
//     backup's chunk entries) bring the catalog up to date as they go: they
//     add what they had to read from files and delete entries of ids no
//     longer listed. A batch that cannot be written is dropped (the next
//     writer fills it). Read-only opens never write.
//   - An entry that does not authenticate is DataLoss for that point, as a
//     damaged manifest file is: it is never returned. 'haven rebuild-index'
//     drops the catalog and builds it again from the files.
//   - The catalog is a cache: losing it, or any entry, loses nothing.
#ifndef HAVEN_REPOSITORY_CATALOG_H_
#define HAVEN_REPOSITORY_CATALOG_H_

#include <functional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"
#include "repository/chunk_index.h"
#include "repository/compression.h"
#include "repository/crypto.h"
#include "repository/manifest.h"

namespace haven::repository {

// What the catalog knows of a point without opening its manifest.
struct PointSummary {
  std::string id;
  std::string name;
  std::string kind;
  std::string time;
};

// One object of snapshots/ as listed (backend.h, ObjectInfo).
struct ListedPoint {
  std::string id;
  uint64_t size = 0;
  int64_t mtime_ns = 0;  // 0: the backend cannot tell; never fresh
};

// Oldest first; equal times by id. The order of ListSnapshots.
bool PointBefore(const std::string& time_a, const std::string& id_a,
                 const std::string& time_b, const std::string& id_b);

// A view of the catalog for one call; cheap to make, holds no state but a
// decompression context. Not thread-safe (one per thread).
class Catalog {
 public:
  // Reads snapshots/<id>; NotFound if it is gone.
  using ReadFileFn = std::function<Result<Bytes>(const std::string& id)>;
  Catalog(ChunkIndex& index, const Key& data_key, ReadFileFn read_file)
      : index_(index), key_(data_key), read_file_(std::move(read_file)) {}

  // Summaries of `points` (a listing of snapshots/), oldest first.
  // A point that cannot be read goes to `errors` (one message each).
  Result<std::vector<PointSummary>> Summaries(
      const std::vector<ListedPoint>& points, std::vector<std::string>* errors);
  // The manifests of `points`, oldest first; unreadable ones go to `errors`.
  Result<std::vector<Manifest>> Manifests(
      const std::vector<ListedPoint>& points, std::vector<std::string>* errors);
  // One point's manifest, from its entry or else its file. With `expect`,
  // a manifest whose name, kind or time differ from it is DataLoss.
  Result<Manifest> Load(const ListedPoint& point,
                        const PointSummary* expect = nullptr);

  // Writers: records the manifest file just committed for `m.id`.
  Status Add(const Manifest& m, ByteSpan file, const ListedPoint& listed);
  // Writers: drops the entries of a deleted point.
  Status Remove(const std::string& id);
  // Drops every entry (rebuild-index).
  static Status Clear(ChunkIndex& index);

 private:
  using Batch = std::vector<std::pair<std::string, std::string>>;
  using Listing = std::unordered_map<std::string, const ListedPoint*>;
  Result<Manifest> FromFile(const ListedPoint& point, Batch* add);
  // Reads the manifest file of every listed point not in `have`, hands
  // each to `add` (an unreadable one goes to `errors`), and writes the
  // catalog entries of what it read, with `deletes`. A failed catalog write
  // costs speed, never an answer.
  void FromFiles(const std::vector<ListedPoint>& points,
                 const std::unordered_set<std::string>& have,
                 std::vector<std::string>& deletes,
                 std::vector<std::string>* errors,
                 const std::function<void(Manifest&&)>& add);
  // Scans the summaries: ids listed with a matching size and mtime go to
  // `fresh` (and, if `out`, their summaries to it); entries of ids no longer
  // listed go to `deletes`.
  Status ScanSummaries(const Listing& listed,
                       std::unordered_set<std::string>& fresh,
                       std::vector<PointSummary>* out,
                       std::vector<std::string>& deletes,
                       std::vector<std::string>* errors) const;
  Result<PointSummary> OpenSummary(const std::string& id,
                                   std::string_view sealed) const;
  // Appends the two entries of manifest `m`, whose file is `file`.
  Status Entries(const Manifest& m, ByteSpan file, const ListedPoint& listed,
                 Batch& out) const;
  // Writers only; empties both lists.
  Status Write(Batch& puts, std::vector<std::string>& deletes);

  ChunkIndex& index_;
  const Key& key_;
  ReadFileFn read_file_;
  Decompressor decompressor_;  // one for every manifest this view opens
};

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_CATALOG_H_
