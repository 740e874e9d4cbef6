// A recovery point's files as the API reads them: the file system inside
// a disk of an image or VM point (restore/guest_fs.h, as `haven ls` and
// `haven restore file` read it) or the catalog of a file point
// (restore/file_point.h), both as a restore::GuestTree.
//
// Paths come from clients and are checked here before any lookup
// (CheckGuestPath): absolute, no "." or ".." component, no NUL or control
// character, at most 4096 bytes. The tree itself is the point's, never the
// host's file system, so a path can only ever name something inside the
// point; the check makes a traversal attempt a clear 400 all the same.
#ifndef HAVEN_APPLIANCE_POINT_FILES_H_
#define HAVEN_APPLIANCE_POINT_FILES_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "appliance/api.h"
#include "appliance/point_access.h"
#include "restore/disk_reader.h"
#include "restore/file_point.h"
#include "restore/guest_fs.h"

namespace haven::appliance {

inline constexpr size_t kMaxGuestPath = 4096;

// `path` made canonical ("/etc/" -> "/etc"); InvalidArgument naming what
// is wrong ("path must start with '/'", "... holds a '..' component").
Result<std::string> CheckGuestPath(const std::string& path);

// An opened tree. Holds the repository, the manifest and the reader the
// tree reads through, so a stream may outlive the handler that made it.
// Used by one request (one thread) at a time.
struct PointTree {
  FoundPoint found;
  std::string repository;
  std::string disk;     // image/vm points: the disk read
  int partition = 0;    // image/vm points: the volume's number
  std::string fs_type;  // "ext4", ...; "files" for a file point
  std::unique_ptr<restore::DiskReader> reader;
  std::unique_ptr<restore::GuestFs> guest_fs;
  std::unique_ptr<restore::FilePoint> file_point;
  restore::GuestTree* tree = nullptr;
};

// Opens point `id` of `repo`. `disk` ("" : the only disk) and `partition`
// ("" : the only readable file system) choose the volume of an image/vm
// point and are refused for a file point. InvalidArgument lists the
// choices when they are needed or wrong.
Result<std::shared_ptr<PointTree>> OpenPointTree(RepositoryCache& cache,
                                                 const std::string& repo,
                                                 const std::string& id,
                                                 const std::string& disk,
                                                 const std::string& partition);

// The same for a point already found (FindPoint) in repository `repo`:
// for callers that check something of the point first (an agent may open
// only its own points, routes_agent_points.cc).
Result<std::shared_ptr<PointTree>> OpenPointTree(FoundPoint found,
                                                 const std::string& repo,
                                                 const std::string& disk,
                                                 const std::string& partition);

// What GET .../files and the archive routes do once they know how to open
// the point a request names (defined in routes_files.cc; the admin's
// routes under /api/v1/points/{repo}/{id} and an agent's under
// /api/v1/agent/points/{id} share them). `open` gets the request's disk and
// partition ("" when not given).
using PointTreeOpener = std::function<Result<std::shared_ptr<PointTree>>(
    const std::string& disk, const std::string& partition)>;
// Lists a directory: query path (default "/"), disk, partition, offset,
// limit; any other query parameter is 400.
Response ListPointFiles(const ApiCall& call, const PointTreeOpener& open);
// `paths` (checked with CheckGuestPath) of `tree` as a tar or zip archive
// made as it is sent; every path is looked up first (a missing one: 404).
Response PointArchive(std::shared_ptr<PointTree> tree,
                      const std::vector<std::string>& paths, bool zip);

// A guest entry as JSON: name (escaped where not printable UTF-8), type,
// size, mode ("-rw-r--r--"), mode_bits, uid/gid where the file system has
// them, mtime (RFC 3339 UTC), link target for symlinks.
nlohmann::ordered_json GuestEntryJson(const restore::GuestEntry& e,
                                      bool unix_metadata);

// Bounds of a search: results, entries looked at, depth below the start,
// and time. The first reached stops it.
struct SearchLimits {
  size_t results = 100;
  size_t visited = 200000;
  int depth = 64;
  double seconds = 20;
};
struct SearchHit {
  std::string path;  // the start's path + printable names ("/etc/passwd")
  restore::GuestEntry entry;
};
struct SearchResult {
  // A directory's matches (by name), then those below it, each
  // subdirectory in name order.
  std::vector<SearchHit> hits;
  size_t visited = 0;
  std::string truncated;  // which bound stopped it; "" when complete
};

// The entries under directory `start` (at `start_path`) whose name matches
// `glob` (base/glob.h, a glob without '/'). Directories already entered
// (same inode) are not entered again, so a looping guest file system
// ends; a directory that cannot be read is skipped; names that could not
// be restored (restore::InvalidNameReason) are not descended into.
SearchResult SearchTree(restore::GuestTree& tree,
                        const restore::GuestEntry& start,
                        const std::string& start_path, const std::string& glob,
                        const SearchLimits& limits);

// A file name safe in a Content-Disposition header's quoted string: the
// bytes [A-Za-z0-9._+-] kept, every other byte '_', at most 100 bytes;
// "download" when nothing is left.
std::string SafeDownloadName(std::string_view name);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_POINT_FILES_H_
