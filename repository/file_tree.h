// File backups (haven backup files): the catalog, the tree object that
// describes every entry of a point, and how file content is found.
//
// A point of kind "files" has two streams (manifest.h, kind "catalog" and
// "content"), each a chunk-list tree (chunk_tree.h) of variable-size data
// chunks:
//   catalog  the catalog bytes below, cut by content-defined chunking so
//            that an unchanged part of the tree stores nothing new;
//   content  every file's content chunks, file after file in catalog order.
//
// Catalog bytes (all integers little-endian):
//
//   "HVFT" | version (u8, = 1) | record*
//   record := body_len (u32, <= kMaxRecordBytes) | body
//   body   := type (u8) | flags (u8)
//             | path_len (u16) | path          absolute, "/" or "/a/b"
//             | mode (u32)                     st_mode & 07777
//             | uid (u32) | gid (u32)
//             | user_len (u8) | user | group_len (u8) | group
//             | atime_ns (i64) | mtime_ns (i64) | ctime_ns (i64)
//             | size (u64)                     logical size (files)
//             | inode (u64) | dev (u64) | nlink (u32) | rdev (u64)
//             | target_len (u32) | target      symlink target, or for a
//                                              hard link the path of the
//                                              entry that holds the content
//             | xattr_count (u16) | (name_len (u16) | name
//                                    | value_len (u32) | value)*
//             | extent_count (u32) | (offset (u64) | length (u64))*
//             | content_first (u64) | content_count (u64)
//
// Records are in depth-first order, each directory's children sorted by
// name bytes, so a directory's subtree is the run of records after it
// whose paths start with its path and '/'. A regular file's extents are
// its data ranges (sorted, disjoint, inside size); bytes outside them are
// holes. Its content is chunks [content_first, content_first +
// content_count) of the content stream: the extents' bytes concatenated,
// cut by FastCDC, so the chunk sizes sum to the extents' lengths.
//
// Everything decoded here is untrusted: lengths are bounded by the body,
// extents are checked against size, content ranges against the content
// stream. Names are raw bytes; restore/file_restore.h decides which can be
// written.
#ifndef HAVEN_REPOSITORY_FILE_TREE_H_
#define HAVEN_REPOSITORY_FILE_TREE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/bytes.h"
#include "base/glob.h"
#include "base/status.h"
#include "repository/manifest.h"

namespace haven::repository {

inline constexpr char kCatalogMagic[4] = {'H', 'V', 'F', 'T'};
inline constexpr uint8_t kCatalogVersion = 1;
inline constexpr uint32_t kMaxRecordBytes = 16u << 20;

enum class FileType : uint8_t {
  kFile = 1,
  kDir = 2,
  kSymlink = 3,
  kFifo = 4,
  kCharDev = 5,
  kBlockDev = 6,
};

enum FileFlags : uint8_t {
  // The content could not be read whole (unreadable, or changed while it
  // was read); the entry's metadata is kept, its content is not.
  kFlagPartial = 1,
  // A hard link to an earlier entry (target = its path): no own content.
  kFlagHardLink = 2,
  // The file changed while it was read (twice): the content kept is what
  // was read, which may mix old and new bytes.
  kFlagChanged = 4,
};

struct FileRecord {
  FileType type = FileType::kFile;
  uint8_t flags = 0;
  std::string path;
  uint32_t mode = 0;
  uint32_t uid = 0, gid = 0;
  std::string user, group;
  int64_t atime_ns = 0, mtime_ns = 0, ctime_ns = 0;
  uint64_t size = 0;
  uint64_t inode = 0, dev = 0;
  uint32_t nlink = 1;
  uint64_t rdev = 0;
  std::string target;
  std::vector<std::pair<std::string, std::string>> xattrs;
  std::vector<std::pair<uint64_t, uint64_t>> extents;  // offset, length
  uint64_t content_first = 0, content_count = 0;

  bool partial() const { return flags & kFlagPartial; }
  bool hard_link() const { return flags & kFlagHardLink; }
  bool changed() const { return flags & kFlagChanged; }
  uint64_t DataBytes() const;  // sum of extent lengths
};

const char* FileTypeName(FileType t);

// Appends the catalog header / one record to `out`. InvalidArgument when a
// field does not fit its length prefix.
void AppendCatalogHeader(Bytes& out);
Status AppendRecord(const FileRecord& r, Bytes& out);

// Reads a catalog record by record from bytes that arrive in pieces.
class CatalogParser {
 public:
  // `content_chunks`: the content stream's chunk count (ranges beyond it
  // are DataLoss).
  explicit CatalogParser(uint64_t content_chunks)
      : content_chunks_(content_chunks) {}
  // Adds bytes; complete records are handed to `on_record` in order.
  Status Feed(ByteSpan data,
              const std::function<Status(FileRecord&&)>& on_record);
  // DataLoss if the catalog ended inside a record or without a header.
  Status Finish() const;
  uint64_t records() const { return records_; }

 private:
  uint64_t content_chunks_;
  Bytes pending_;
  bool header_ = false;
  uint64_t records_ = 0;
};

// Decodes one record body (exposed for the fuzzer).
Result<FileRecord> DecodeRecord(ByteSpan body, uint64_t content_chunks);

// Whether `path` is a well-formed catalog path: "/" or "/" followed by
// non-empty components separated by single '/', no trailing '/'. (A
// component may still be "..": restore refuses those by name.)
bool IsCatalogPath(std::string_view path);
// The parent of a catalog path ("/" for "/a"); "" for "/".
std::string_view ParentPath(std::string_view path);
std::string_view BaseName(std::string_view path);

// The glob rule lives in base/glob.h; kept visible here for older callers.
using haven::MatchesGlob;

class Repository;

// Reads a stream's chunks (a catalog or content list, manifest.h) in order,
// each authenticated; `fn` gets each chunk's bytes. A hole (a chunk lost
// and cleared by `haven repair snapshots`) is DataLoss naming the chunk.
Status ReadStream(const Repository& repo, const DiskManifest& stream,
                  const std::function<Status(ByteSpan)>& fn);

// Calls `fn` for every record of a file backup's catalog, in order.
Status ForEachRecord(const Repository& repo, const Manifest& m,
                     const std::function<Status(FileRecord&&)>& fn);

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_FILE_TREE_H_
