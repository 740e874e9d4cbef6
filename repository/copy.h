// Copying recovery points between repositories (docs/copies.md): `haven
// copy`, `haven seed export|import` and havend's sync jobs all run
// CopyPoints.
//
// Both repositories must share their chunk-id keys (`haven init
// --copy-params-from SRC`), so a chunk has the same id in both and a copy
// sends only the chunks the target lacks, without re-chunking. Chunks cross
// in plain form (over TLS when a side is a remote appliance) and each side
// encrypts with its own data key; the target checks every chunk's bytes
// against its keyed id before storing it.
//
// Order, per point (the rules of a backup): the data chunks the target
// lacks, then the chunk-list nodes above them (children before parents),
// then Flush (durable), then the manifest, last: the commit point. A copy
// killed at any moment leaves the target as after a killed backup; the next
// run skips the points the target has and every chunk that arrived. A tree
// node the target has stands for its whole subtree (nodes are only ever
// stored after their children).
//
// Every chunk read from the source is authenticated; one that fails is
// reported with the points it affects, is not sent, and those points are
// not committed (the copy goes on with the others and ends partial).
#ifndef HAVEN_REPOSITORY_COPY_H_
#define HAVEN_REPOSITORY_COPY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/bytes.h"
#include "base/progress.h"
#include "base/status.h"
#include "repository/catalog.h"
#include "repository/chunk_codec.h"
#include "repository/crypto.h"
#include "repository/manifest.h"
#include "repository/retention.h"

namespace haven::repository {

class Repository;
class ReadContext;
class ChunkWriter;
struct WriteContext;

// One chunk crossing between the two sides: its raw (plain, decompressed)
// bytes, or why it could not be read.
struct CopyChunk {
  ChunkId id{};
  Status status;  // not OK: `raw` is empty and the chunk is damaged
  Bytes raw;
};

// What the two sides compare before copying: the chunk-id keys' fingerprint
// (IdKeyCheck below) and the image chunk size.
struct CopyParams {
  std::string repository_id;
  std::string id_check;  // 64 hex digits
  uint32_t chunk_size = 0;
};

// HMAC of a fixed probe under the data and the tree chunk-id keys: equal in
// two repositories exactly when they share those keys. Reveals nothing else.
std::string IdKeyCheck(const Repository& repo);
CopyParams LocalCopyParams(const Repository& repo);

// Where points are copied from. Implementations: LocalCopySource (a
// Repository) and agent/appliance_copy.h (a remote havend).
class CopySource {
 public:
  virtual ~CopySource() = default;
  virtual std::string Describe() const = 0;
  virtual Result<CopyParams> Params() = 0;
  // Every readable point, oldest first; unreadable ones go to `errors`.
  virtual Result<std::vector<PointSummary>> Points(
      std::vector<std::string>* errors) = 0;
  // The manifest of point `id`, authenticated.
  virtual Result<Manifest> LoadPoint(const std::string& id) = 0;
  // Reads chunks of one type; `out` gets one entry per id, in order, with
  // its own status (a damaged chunk does not fail the others). The Status
  // returned is for the whole request (the source cannot be reached).
  virtual Status ReadChunks(ChunkType type, const std::vector<ChunkId>& ids,
                            std::vector<CopyChunk>& out) = 0;
  // The raw sizes of data chunks, for a dry run (-1 where a chunk cannot be
  // read). By default reads them; a source with an index answers from it.
  virtual Status ChunkSizes(ChunkType type, const std::vector<ChunkId>& ids,
                            std::vector<int64_t>& sizes);
};

// Where points are copied to. Implementations: LocalCopyTarget and
// agent/appliance_copy.h.
class CopyTarget {
 public:
  virtual ~CopyTarget() = default;
  virtual std::string Describe() const = 0;
  virtual Result<CopyParams> Params() = 0;
  // Ids of the points the target holds.
  virtual Result<std::vector<std::string>> PointIds() = 0;
  // One flag per id: whether the target holds that chunk.
  virtual Result<std::vector<bool>> HasChunks(
      ChunkType type, const std::vector<ChunkId>& ids) = 0;
  // Stores chunks (every entry OK), each checked against its id first.
  // Durable when this returns (the target flushes).
  virtual Status PutChunks(ChunkType type,
                           const std::vector<CopyChunk>& chunks) = 0;
  // Writes the manifest under its own id, after checking that the target
  // holds every tree root it names. AlreadyExists if that point is there.
  virtual Status CommitPoint(const Manifest& m) = 0;
};

class LocalCopySource : public CopySource {
 public:
  explicit LocalCopySource(const Repository& repo);
  ~LocalCopySource() override;
  std::string Describe() const override;
  Result<CopyParams> Params() override;
  Result<std::vector<PointSummary>> Points(
      std::vector<std::string>* errors) override;
  Result<Manifest> LoadPoint(const std::string& id) override;
  Status ReadChunks(ChunkType type, const std::vector<ChunkId>& ids,
                    std::vector<CopyChunk>& out) override;
  Status ChunkSizes(ChunkType type, const std::vector<ChunkId>& ids,
                    std::vector<int64_t>& sizes) override;

 private:
  const Repository& repo_;
  std::unique_ptr<ReadContext> ctx_;
};

// The repository must be opened with OpenOptions::write.
class LocalCopyTarget : public CopyTarget {
 public:
  explicit LocalCopyTarget(Repository& repo);
  ~LocalCopyTarget() override;
  std::string Describe() const override;
  Result<CopyParams> Params() override;
  Result<std::vector<std::string>> PointIds() override;
  Result<std::vector<bool>> HasChunks(ChunkType type,
                                      const std::vector<ChunkId>& ids) override;
  Status PutChunks(ChunkType type,
                   const std::vector<CopyChunk>& chunks) override;
  Status CommitPoint(const Manifest& m) override;

 private:
  Repository& repo_;
  std::unique_ptr<ChunkWriter> writer_;
  std::unique_ptr<WriteContext> wctx_;
};

// Which points to copy. Empty everything: every point of the source.
struct CopySelection {
  // Id prefixes, "latest", "NAME:latest" (as everywhere else).
  std::vector<std::string> refs;
  // Only points of these backup names (VM or backup name).
  std::vector<std::string> names;
  // ISO 8601 UTC bounds on the point's time; "" = open.
  std::string since, until;
  // Only the points this policy keeps ("last 7 daily": daily = 7), applied
  // per name after the filters above. Empty: all of them.
  RetentionPolicy keep;
};

struct CopyOptions {
  CopySelection select;
  // Says what would be sent (points, chunks, bytes) and sends nothing.
  bool dry_run = false;
  // Raw bytes per second of chunks sent; 0: no limit.
  double bytes_per_second = 0;
  // Chunks per request to either side.
  size_t batch_chunks = 256;
  ProgressFn progress;
  CancelToken cancel;
};

struct CopyPointResult {
  std::string id, name, kind, time;
  // "copied", "present" (the target had it), "would copy" (dry run),
  // "failed" (see status).
  std::string outcome;
  Status status;
  uint64_t chunks_sent = 0;  // chunks this point added to the target
  uint64_t bytes_sent = 0;   // their raw bytes
};

struct DamagedChunk {
  ChunkId id{};
  std::string error;
  std::vector<std::string> points;  // ids of the selected points it affects
};

struct CopyReport {
  std::string from, to;
  bool dry_run = false;
  std::vector<CopyPointResult> points;  // oldest first
  uint64_t chunks_checked = 0;  // ids asked of the target
  uint64_t chunks_sent = 0;
  uint64_t bytes_sent = 0;  // raw bytes of the chunks sent (or to send)
  std::vector<DamagedChunk> damaged;
  std::vector<std::string> source_errors;  // unreadable source points
  double duration_seconds = 0;
  int copied() const;
  int failed() const;
};

// Resolves a selection over the source's points (oldest first).
// InvalidArgument for a bad time or a policy count; NotFound for a ref that
// names no point.
Result<std::vector<PointSummary>> SelectPoints(
    const std::vector<PointSummary>& points, const CopySelection& select);

// Copies the selected points. Fails as a whole (nothing reported as
// copied that was not) when the sides do not share their chunk-id keys or
// chunk size, when either side cannot be reached, or when cancelled; a
// damaged source chunk fails only the points that need it.
Result<CopyReport> CopyPoints(CopySource& from, CopyTarget& to,
                              const CopyOptions& options);

nlohmann::ordered_json CopyReportJson(const CopyReport& report);

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_COPY_H_
