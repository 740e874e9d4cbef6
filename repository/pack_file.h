// Writing and reading pack files (layout in pack_format.h).
#ifndef HAVEN_REPOSITORY_PACK_FILE_H_
#define HAVEN_REPOSITORY_PACK_FILE_H_

#include <string>
#include <vector>

#include "base/file.h"
#include "repository/pack_format.h"

namespace haven::repository {

// Builds one pack in a temporary file under tmp/, holding an flock on it so a
// cleaner can tell a live writer from a dead one. Not thread-safe.
class PackWriter {
 public:
  static Result<std::unique_ptr<PackWriter>> Create(
      const std::string& repo_dir);
  ~PackWriter();  // removes the temporary file unless Finish() succeeded

  Status Append(ChunkType type, const ChunkId& id, uint32_t raw_len,
                ByteSpan sealed);
  uint64_t size() const { return offset_; }
  size_t count() const { return entries_.size(); }
  const std::string& name() const { return name_; }
  const std::vector<PackEntry>& entries() const { return entries_; }

  // Writes the header, fsyncs, renames into packs/ and fsyncs the directory.
  // After this returns OK the pack is durable and may be named by the index.
  Status Finish(const Key& data_key);

 private:
  PackWriter() = default;
  std::string repo_dir_, name_, tmp_path_;
  UniqueFd fd_;
  uint64_t offset_ = 0;   // logical end of the pack
  uint64_t written_ = 0;  // bytes already in the file
  Bytes buffer_;          // appended blobs not yet written
  std::vector<PackEntry> entries_;
  Status FlushBuffer();
  bool finished_ = false;
};

std::string PackPath(const std::string& repo_dir, const std::string& name);

// Reads and authenticates the header of a pack file.
Result<std::vector<PackEntry>> ReadPackHeader(const std::string& path,
                                              const std::string& name,
                                              const Key& data_key);

// Names of the pack files under packs/, sorted; files whose name is not a
// pack name, or that sit in the wrong packs/<xx>/ folder, are skipped.
std::vector<std::string> ListPackNames(const std::string& repo_dir);

// Removes temporary pack files whose writer has died (its flock is free).
void RemoveAbandonedTempPacks(const std::string& repo_dir);
// Also removes temp files of manifests and key slots whose writer has died.
void RemoveAbandonedTempFiles(const std::string& repo_dir);

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_PACK_FILE_H_
