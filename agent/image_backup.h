// agent/: drive a capture into the repository. This file: back up one disk
// image (raw file or block device) as a recovery point.
//
// Pipeline (both cores busy; memory bounded by a few 1 MiB batch buffers):
//
//   reader thread:  for each batch of chunks (~1 MiB): unallocated? -> zero
//                   ids; else one pread into a free buffer -> work queue
//   worker threads: all zeros? -> zero id; else id = HMAC(chunk);
//                   writer.Put(id) (compress, encrypt, append to a pack)
//   this thread:    consume results in offset order -> chunk-list tree
//   end:            flush packs + index, write the manifest (commit point)
#ifndef HAVEN_AGENT_IMAGE_BACKUP_H_
#define HAVEN_AGENT_IMAGE_BACKUP_H_

#include <string>

#include "agent/progress.h"
#include "repository/repository.h"

namespace haven::agent {

struct ImageBackupOptions {
  std::string name;                // backup name (VM or image name)
  std::string disk_name = "disk0";
  std::string time;                // recorded time; empty: now
  int threads = 0;                 // 0: one per core
  ProgressFn progress;
  double progress_interval = 0.2;  // seconds between progress calls
};

// On success the recovery point is committed and returned. On failure no
// manifest is written; packs already finished stay and are reused next time.
Result<repository::Manifest> BackupImage(repository::Repository& repo,
                                         const std::string& path,
                                         const ImageBackupOptions& options);

}  // namespace haven::agent

#endif  // HAVEN_AGENT_IMAGE_BACKUP_H_
