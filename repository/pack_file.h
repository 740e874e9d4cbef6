// Writing and reading pack files (layout in pack_format.h).
#ifndef HAVEN_REPOSITORY_PACK_FILE_H_
#define HAVEN_REPOSITORY_PACK_FILE_H_

#include <string>
#include <vector>

#include "base/file.h"
#include "repository/backend.h"
#include "repository/pack_format.h"

namespace haven::repository {

// Builds one pack as a streaming object of a backend (ObjectWriter): nothing
// is visible under packs/ until Finish() succeeds. Not thread-safe.
class PackWriter {
 public:
  static Result<std::unique_ptr<PackWriter>> Create(Backend& backend);
  // Destroying an unfinished writer discards the pack.
  ~PackWriter() = default;

  Status Append(ChunkType type, const ChunkId& id, uint32_t raw_len,
                ByteSpan sealed);
  uint64_t size() const { return offset_; }
  size_t count() const { return entries_.size(); }
  const std::string& name() const { return name_; }
  const std::vector<PackEntry>& entries() const { return entries_; }

  // Writes the header and commits the object (durable before it returns).
  // After this returns OK the pack may be named by the index.
  Status Finish(const Key& data_key);

 private:
  PackWriter() = default;
  std::string name_;
  std::unique_ptr<ObjectWriter> out_;
  uint64_t offset_ = 0;  // logical end of the pack
  std::vector<PackEntry> entries_;
};

// The backend key of a pack: packs/<first two hex digits>/<name>.
std::string PackKey(const std::string& name);
// The file of a pack in a local repository directory.
std::string PackPath(const std::string& repo_dir, const std::string& name);

// Reads and authenticates the header of a pack.
Result<std::vector<PackEntry>> ReadPackHeader(ObjectReader& pack,
                                              const std::string& name,
                                              const Key& data_key);
Result<std::vector<PackEntry>> ReadPackHeader(const Backend& backend,
                                              const std::string& name,
                                              const Key& data_key);
// The same for a pack file at `path` (tests, fuzzers, tools).
Result<std::vector<PackEntry>> ReadPackHeader(const std::string& path,
                                              const std::string& name,
                                              const Key& data_key);

// Names of the packs under packs/, sorted; objects whose name is not a pack
// name, or that sit in the wrong packs/<xx>/ folder, are skipped.
Result<std::vector<std::string>> ListPackNames(const Backend& backend);
// The same for a local repository directory; an unreadable one lists empty.
std::vector<std::string> ListPackNames(const std::string& repo_dir);

// Removes temporary pack files whose writer has died (its flock is free).
void RemoveAbandonedTempPacks(const std::string& repo_dir);
// Also removes temp files of manifests and key slots whose writer has died.
void RemoveAbandonedTempFiles(const std::string& repo_dir);

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_PACK_FILE_H_
