// A recovery point of kind "files" (haven backup files) read back: its
// catalog as a tree for `haven ls` and `haven restore files` (through
// file_restore.h, with all its protections against hostile names), and
// the comparison of two points for `haven diff`.
#ifndef HAVEN_RESTORE_FILE_POINT_H_
#define HAVEN_RESTORE_FILE_POINT_H_

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "repository/chunk_tree.h"
#include "repository/file_tree.h"
#include "repository/point_reader.h"
#include "repository/repository.h"
#include "restore/guest_fs.h"

namespace haven::restore {

// A point an agent sealed with its own key (manifest "agent_key") holds
// sealed data chunks: only a reader that opens them (the agent's
// KeyedPointReader, agent/agent_key.h) can read it.
enum class AgentKeyed {
  kRefuse,  // FailedPrecondition naming the key (what the appliance does)
  kOpenedByReader,
};

class FilePoint : public GuestTree {
 public:
  // Reads the whole catalog (memory: about 150 bytes per entry) through
  // `reader` (a Repository, or a point read through the appliance), which
  // must outlive the result.
  static Result<std::unique_ptr<FilePoint>> Open(
      const repository::PointReader& reader, const repository::Manifest& m,
      AgentKeyed keyed = AgentKeyed::kRefuse);

  // Restricts List() to the subtrees `patterns` name and their parent
  // directories. A pattern with '*', '?' or '[' is a glob (matched like
  // --exclude: by name without '/', else by path); a plain path must be
  // in the point. NotFound names a path not found or a glob that matched
  // nothing. An empty list selects everything.
  Status Select(const std::vector<std::string>& patterns);

  Result<GuestEntry> Lookup(const std::string& path) override;
  Result<std::vector<GuestEntry>> List(const GuestEntry& dir) override;
  // DataLoss for a file whose content was not captured (unreadable at
  // backup time) or whose chunks are damaged or lost.
  Status ReadFile(const GuestEntry& file,
                  const std::function<Status(uint64_t offset,
                                             const uint8_t* data, size_t len)>&
                      sink,
                  size_t block = 1 << 20) override;
  // The data ranges the backup recorded (what it read; the rest were
  // holes); nullopt for a file without captured content.
  std::optional<std::vector<std::pair<uint64_t, uint64_t>>> DataRanges(
      const GuestEntry& file) override;
  bool has_unix_metadata() const override { return true; }
  // Decrypts and decompresses the content of the selected files ahead of
  // ReadFile, in catalog order (the order a restore visits them), on
  // `threads` threads, holding at most `window` chunks. Call after
  // Select(); without it ReadFile reads chunk by chunk.
  Status Prefetch(int threads, size_t window = 16);
  uint64_t max_file_size() const override { return max_size_; }
  // Records whose parent path is not a directory record of the catalog
  // (only a damaged or crafted catalog has them), among the selected ones.
  std::vector<std::pair<std::string, std::string>> Unreachable()
      const override;

  const std::vector<repository::FileRecord>& records() const {
    return records_;
  }
  // The record at `path`, or null.
  const repository::FileRecord* Find(const std::string& path) const;
  uint64_t chunks_read() const { return chunks_read_; }
  // The content chunk ids of a file record (a hard link's: its first's).
  Result<std::vector<repository::ChunkId>> ContentIds(
      const repository::FileRecord& r);

 private:
  FilePoint(const repository::PointReader& repo, const repository::Manifest& m);
  GuestEntry Entry(size_t index) const;

  const repository::PointReader& repo_;
  repository::DiskManifest content_;
  std::vector<repository::FileRecord> records_;
  std::unordered_map<std::string, size_t> by_path_;
  std::unordered_map<std::string, std::vector<size_t>> children_;
  std::vector<bool> selected_;  // empty: everything
  uint64_t max_size_ = 0;
  uint64_t chunks_read_ = 0;
  // The content list's ids, for ReadFile and ContentIds; one reader and
  // one read context for the point, not one per file.
  repository::TreeReader& Ids();
  std::shared_ptr<repository::ReadContext> ctx_;
  std::unique_ptr<repository::TreeReader> ids_;
  class Prefetcher;
  std::unique_ptr<Prefetcher> prefetcher_;
  std::unordered_map<size_t, size_t> plan_start_;  // record -> plan position

 public:
  ~FilePoint() override;
};

// What changed between two file points, path by path.
struct FileDiff {
  std::vector<std::string> added, removed, modified, metadata, type;
};
// `M` (content: data, size, symlink target, device) and `m` (mode,
// owner, mtime, xattrs only) are told apart by the chunk ids.
Result<FileDiff> DiffPoints(FilePoint& a, FilePoint& b);

}  // namespace haven::restore

#endif  // HAVEN_RESTORE_FILE_POINT_H_
