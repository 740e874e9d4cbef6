// The in-guest file agent: back up directory trees as a recovery point of
// kind "files" (repository/file_tree.h has the format).
//
//   pre hook (abort on failure)
//   walker (this thread): depth first, children sorted by name; lstat,
//     xattrs, owner names; excludes; unchanged files (size, mtime, ctime,
//     inode as in the parent point) take the parent's chunk ids
//   workers: open, read the data ranges, FastCDC, id = HMAC(chunk), Put;
//     fstat before and after: a file that changed is read again once,
//     then kept and flagged "changed while read"
//   in order (this thread): record -> catalog bytes (FastCDC -> chunks),
//     chunk ids -> content list
//   post hook; flush packs + index; manifest (the commit point)
//
// An entry that cannot be read is a warning: the backup goes on and the
// point is committed marked partial.
#ifndef HAVEN_AGENT_FILE_BACKUP_H_
#define HAVEN_AGENT_FILE_BACKUP_H_

#include <functional>
#include <string>
#include <vector>

#include "agent/fastcdc.h"
#include "agent/point_sink.h"
#include "base/progress.h"
#include "repository/repository.h"

namespace haven::agent {

// Chunk sizes of file content (bench/README.md, "file chunk sizes").
inline constexpr CdcParams kFileCdc{256 << 10, 1 << 20, 4 << 20};
// The catalog is cut finer so a change in one directory re-stores little.
inline constexpr CdcParams kCatalogCdc{8 << 10, 32 << 10, 128 << 10};

// --exclude globs. A glob without '/' matches an entry's name; one with
// '/' matches its absolute path (fnmatch, '*' does not cross '/').
class ExcludeRules {
 public:
  // Adds globs; `file` (may be empty) holds one per line, '#' comments.
  static Result<ExcludeRules> Create(const std::vector<std::string>& globs,
                                     const std::string& file);
  // Whether the entry at absolute `path` is excluded.
  bool Excluded(const std::string& path) const;
  const std::vector<std::string>& globs() const { return globs_; }

 private:
  std::vector<std::string> globs_;
};

struct FileBackupOptions {
  std::string name;                // the series; its last point is the parent
  std::vector<std::string> paths;  // files or directories to back up
  std::vector<std::string> excludes;
  std::string exclude_file;
  bool exclude_caches = false;   // skip what a CACHEDIR.TAG directory holds
  bool one_file_system = false;  // do not descend into other mounts
  std::string pre, post;         // shell commands around the backup
  double hook_timeout = 300;     // seconds; a pre hook over it aborts
  std::string time;              // recorded time; empty: now
  int threads = 0;               // readers; 0: one per core
  CdcParams cdc = kFileCdc;
  ProgressFn progress;  // done_bytes: file bytes handled so far
  CancelToken cancel;   // checked between files and between chunks
  double progress_interval = 0.2;
  std::function<void(const std::string&)> on_warning;  // as they happen
};

struct FileBackupResult {
  repository::Manifest manifest;
  uint64_t entries = 0, files = 0, dirs = 0, symlinks = 0, other = 0;
  uint64_t bytes = 0;            // regular file sizes, summed
  uint64_t files_read = 0;       // files whose content was read this run
  uint64_t files_unchanged = 0;  // took the parent's chunks unread
  uint64_t bytes_read = 0;
  std::vector<std::string> warnings;  // "PATH: why"; the point is partial
};

// Backs up `options.paths` (made absolute; their parent directories are
// recorded too). Fails without writing a point when a path does not exist,
// the pre hook fails, or the repository cannot be written; packs already
// finished stay and are reused by the next run.
Result<FileBackupResult> BackupFiles(repository::Repository& repo,
                                     const FileBackupOptions& options);
// The same into any sink (an appliance the agent uploads to: upload_sink.h).
Result<FileBackupResult> BackupFiles(PointSink& sink,
                                     const FileBackupOptions& options);

// The latest point of kind "files" named `name`, if any.
Result<std::optional<repository::Manifest>> LatestFilePoint(
    const repository::Repository& repo, const std::string& name);

}  // namespace haven::agent

#endif  // HAVEN_AGENT_FILE_BACKUP_H_
