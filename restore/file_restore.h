// Single files and directory trees out of a guest file system (guest_fs.h)
// into a directory, or exported as a tar (pax) or zip archive (libarchive).
//
//   for each PATH: Lookup -> walk (depth first, loops and depth bounded)
//     entry name valid?  no -> problem "invalid name", entry skipped
//     name already used in this directory? -> problem "name clash", skipped
//     file size <= volume?  no -> problem "size", skipped
//     -> sink: directory (openat under the target, O_NOFOLLOW everywhere,
//        content to a temporary name, renamed without replacing)
//        or archive (entries "BASENAME/...", never absolute or "..")
//
// Guest names are untrusted. A name is valid when it is not empty, not
// "." or "..", at most 255 bytes, and holds no '/', NUL, or control
// character (bytes 0x01-0x1f, 0x7f). Invalid names and clashes are
// reported, never renamed, so what is restored is exactly what the guest
// held under the same names. Nothing outside the target is written:
// every directory is entered with O_NOFOLLOW|O_DIRECTORY relative to its
// parent's descriptor, every file is created O_EXCL|O_NOFOLLOW, and
// symlinks are created but never followed. Existing files in the target
// are never replaced (reported as problems); existing directories are
// entered (not if they are symlinks). Set-user/group-id bits are dropped
// when restoring into a directory.
#ifndef HAVEN_RESTORE_FILE_RESTORE_H_
#define HAVEN_RESTORE_FILE_RESTORE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/progress.h"
#include "restore/guest_fs.h"

namespace haven::restore {

enum class FileTarget { kDirectory, kTar, kZip };

// What a directory restore does with a file that exists in the target.
// Directories are always entered (never if they are symlinks) and never
// replaced; replacing is atomic (a temporary name renamed over the file).
enum class Overwrite {
  kNever,    // keep it; reported as not restored
  kIfNewer,  // replace it when the backup's mtime is newer; else skipped
  kAlways,   // replace it
};

struct FileRestoreOptions {
  FileTarget target = FileTarget::kDirectory;
  // The directory (made if missing) or the archive file (must not exist;
  // written as PATH.haven-partial and renamed when complete).
  std::string path;
  // kTar/kZip: when set, the archive's bytes go through this, in order,
  // instead of to `path` (then unused): an export streamed to a client
  // (havend's downloads). A non-OK return stops the export with that
  // error; what was written before stays written (the caller ends the
  // stream so that the client does not take it as complete).
  std::function<Status(std::string_view bytes)> archive_writer;
  // Directory targets: restore owners (only as root, and only where the
  // file system carries them). Modes and times are always restored.
  bool owners = true;
  Overwrite overwrite = Overwrite::kNever;
  // Keep set-user/group-id bits (as root only). Off for guest images: a
  // guest's set-uid file must not become one on the host.
  bool keep_setid = false;
  // Make device nodes (as root). Off for guest images: a guest's device
  // node could open the host's own disks.
  bool devices = false;
  // Directory targets: wait until everything restored is on disk before
  // reporting success (syncfs; writeback of each file starts as soon as
  // it is written). Off: faster, but a crash soon after may lose files.
  bool sync = true;
  // done_bytes: file bytes written so far; total_bytes: 0 (unknown).
  ProgressFn progress;
  // Checked before each entry. A cancelled archive restore removes its
  // partial file; a folder keeps the entries completed before the cancel.
  CancelToken cancel;
  // Directory targets only: plan, write nothing. The walk is the restore's
  // own, and every decision — create, replace or keep per `overwrite`,
  // conflicts with what the target holds — is made against the target as
  // it is, stopped before the first write (the target folder is not even
  // made). The stats count what the run would do; `planned` lists it.
  bool dry_run = false;
  // With dry_run: at most this many entries in FileRestoreStats::planned
  // (the counts cover all of them).
  size_t max_planned = 10000;
};

struct FileRestoreProblem {
  std::string path;  // guest path, printable (see PrintableName)
  std::string what;
};

// One entry a dry run would restore.
struct PlannedFileEntry {
  std::string path;  // in the target, printable ("etc/hosts")
  std::string type;  // GuestTypeName: "file", "dir", "symlink", ...
  uint64_t size = 0;
  // create | replace (an existing file, as `overwrite` allows) | link (a
  // hard link to a file restored before) | skip (if-newer: the target's
  // is not older)
  std::string action;
};

struct FileRestoreStats {
  uint64_t files = 0, dirs = 0, symlinks = 0, fifos = 0, devices = 0;
  uint64_t hardlinks = 0;  // restored as links to a file restored before
  uint64_t skipped = 0;    // --overwrite if-newer: the target's was newer
  uint64_t bytes = 0;                        // file content restored
  std::vector<FileRestoreProblem> problems;  // anything not restored
  double seconds = 0;
  // Dry runs: the entries, in walk order, up to max_planned; how many more.
  std::vector<PlannedFileEntry> planned;
  uint64_t planned_more = 0;
  bool complete() const { return problems.empty(); }
};

// Why `name` cannot be restored as is; "" when it can.
std::string InvalidNameReason(std::string_view name);

// `name` for messages and listings: control characters (C0, C1, and the
// bidirectional overrides) and, in a name that is not strict UTF-8, every
// byte outside printable ASCII shown as \xHH; backslash as \\.
std::string PrintableName(std::string_view name);

// Restores each of `paths` (guest paths; "/" restores the whole volume)
// as its last component under the target: `/home/a/docs` becomes
// TARGET/docs/... . Entries that cannot be restored are skipped and
// listed in `problems`; the call still succeeds. An error is returned
// only when the target cannot be written (or a path is not found); a
// partial archive is then removed, and files already restored into a
// directory are left (they are complete).
Result<FileRestoreStats> RestoreGuestFiles(
    GuestTree& tree, const std::vector<std::string>& paths,
    const FileRestoreOptions& options);

}  // namespace haven::restore

#endif  // HAVEN_RESTORE_FILE_RESTORE_H_
