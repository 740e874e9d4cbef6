// restore/: rebuild what a recovery point holds. This file: write one disk
// of a snapshot to an image file — raw (sparse), qcow2 or dynamic VHDX — or
// to a block device. Where the bytes go is an ImageWriter (image_writer.h);
// the walk below is the same for every target:
//
//   walk the chunk-list tree -> batches of (index, chunk id), holes skipped
//     -> N workers: read + authenticate + decompress -> ImageWriter::Write
//   -> all written and no damage: ImageWriter::Finish (sync, rename)
//   -> otherwise: ImageWriter::Discard (the partial file is removed)
//
// Every chunk is authenticated before a byte of it is written: AES-GCM with
// the chunk's id and type as associated data proves the blob was sealed for
// exactly this id by a holder of the key. `verify_ids` also recomputes each
// data chunk's keyed id (about a quarter more CPU); chunk-list nodes are
// always re-hashed. A damaged chunk does not stop the walk: every
// damaged range is collected so the error names all packs and image offsets
// affected, and then the restore fails — the target is never left looking
// complete. A regular-file target is written as PATH.haven-partial and
// renamed to PATH only when everything was written and synced; on failure
// nothing is left at PATH.haven-partial and PATH is untouched.
#ifndef HAVEN_RESTORE_IMAGE_RESTORE_H_
#define HAVEN_RESTORE_IMAGE_RESTORE_H_

#include <string>
#include <vector>

#include "base/progress.h"
#include "repository/point_reader.h"
#include "repository/repository.h"

namespace haven::restore {

struct ImageRestoreOptions {
  std::string disk;         // disk name; empty: the snapshot's only disk
  bool config = false;      // `disk` names a config file, not a disk
  bool overwrite = false;   // replace an existing file / write a block device
  int threads = 0;          // 0: one per core
  bool verify_ids = false;  // recompute every data chunk's keyed id
  // Output format of a file target: "raw" (sparse), "qcow2" or "vhdx"
  // (dynamic); anything else is InvalidArgument. qcow2 and vhdx are made
  // with qemu-img and written through qemu-nbd (both must be in PATH),
  // only the data chunks, so holes stay unallocated; their virtual size is
  // the disk's rounded up to 512 bytes. A block device takes only "raw".
  // Config files (`config`) are always written as stored ("raw").
  std::string format = "raw";
  ProgressFn progress;
  double progress_interval = 0.2;  // seconds between progress calls
  CancelToken cancel;  // checked between batches of chunks (~1 MiB)
};

struct ImageRestoreStats {
  uint64_t size = 0;
  uint64_t data_bytes = 0;  // bytes written from chunks
  uint64_t hole_bytes = 0;
  double duration_seconds = 0;
};

// The bytes a restore of `disk` writes from chunks, holes excluded: what
// its image needs on a file system that keeps holes. Reads only the disk's
// chunk-list tree (authenticated), not its data.
Result<uint64_t> DiskDataBytes(const repository::PointReader& repo,
                               const repository::DiskManifest& disk);

Result<ImageRestoreStats> RestoreImage(const repository::PointReader& repo,
                                       const repository::Manifest& snapshot,
                                       const std::string& target,
                                       const ImageRestoreOptions& options);

// A config file of a recovery point (domain XML, network XML, ...) read
// into memory, each chunk authenticated as a restore does; NotFound if the
// point has no such file, DataLoss if it claims more than `max_bytes`.
Result<std::string> ReadConfigFile(const repository::PointReader& repo,
                                   const repository::Manifest& snapshot,
                                   const std::string& name, size_t max_bytes);

// InvalidArgument for verify_ids with a reader that cannot compute keyed
// ids (a restore through the appliance), in words.
Status VerifyIdsRefused();

// Reads data chunk `id` into `data`, which must then hold `len` bytes.
// DataLoss when the chunk is damaged, missing or of the wrong size;
// `verify_id` also recomputes the keyed id. `data` is unspecified on error.
Status ReadDataChunk(const repository::PointReader& repo,
                     const repository::ChunkId& id, uint64_t len,
                     bool verify_id, repository::ReadContext& ctx, Bytes& data);

}  // namespace haven::restore

#endif  // HAVEN_RESTORE_IMAGE_RESTORE_H_
