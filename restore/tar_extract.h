// Extracting a tar that arrives from the appliance (`haven agent restore`)
// into a directory, with the same distrust of names as a file restore
// (file_restore.h): nothing is written outside the directory and
// nothing is written through a symlink, not even one the archive made.
//
//   Write(bytes)  from the download, as they arrive (blocks while 16 MiB
//                 wait; fails once the extraction stopped on an error)
//   extraction    its own thread: libarchive's reader; each entry's name
//                 checked (relative, no "." / ".." / control characters,
//                 see InvalidNameReason), then written by libarchive's
//                 disk writer with SECURE_NODOTDOT | SECURE_SYMLINKS |
//                 SECURE_NOABSOLUTEPATHS | NO_OVERWRITE, under the
//                 directory's real path
//   Finish()      end of input; the counts and the entries not written
#ifndef HAVEN_RESTORE_TAR_EXTRACT_H_
#define HAVEN_RESTORE_TAR_EXTRACT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace haven::restore {

struct TarExtractResult {
  uint64_t entries = 0, bytes = 0;
  // Entries not written, "NAME: why" (printable): a refused name, a file
  // that exists already (kept), a path through a symlink.
  std::vector<std::string> problems;
};

class TarExtractor {
 public:
  // `dir` must exist. Owners are restored when running as root.
  static Result<std::unique_ptr<TarExtractor>> Start(const std::string& dir);
  ~TarExtractor();
  TarExtractor(const TarExtractor&) = delete;
  TarExtractor& operator=(const TarExtractor&) = delete;

  Status Write(std::string_view bytes);
  // After the last Write. DataLoss for an archive that is damaged or cut
  // off; what was written before stays (complete entries only).
  Result<TarExtractResult> Finish();

  struct Impl;

 private:
  explicit TarExtractor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace haven::restore

#endif  // HAVEN_RESTORE_TAR_EXTRACT_H_
