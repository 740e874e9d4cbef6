// agent/: drive a capture into the repository. This file: read one disk
// into the repository (CaptureDisk), and back up one disk image file or
// block device as a recovery point (BackupImage).
//
// Pipeline (both cores busy; memory bounded by a few 1 MiB batch buffers):
//
//   reader thread:  for each batch of chunks (~1 MiB): classify each chunk
//                   (hole / read / unchanged since the parent); read the
//                   runs to read into a free buffer -> work queue
//   worker threads: all zeros? -> zero id; else id = sink.IdFor(chunk);
//                   sink.Put(id) (local: compress, encrypt, append to a
//                   pack; upload: queue for the appliance)
//   this thread:    consume results in offset order, unchanged chunks'
//                   ids from the parent's tree -> chunk-list tree
//   end:            flush packs + index, write the manifest (commit point)
#ifndef HAVEN_AGENT_IMAGE_BACKUP_H_
#define HAVEN_AGENT_IMAGE_BACKUP_H_

#include <memory>
#include <string>
#include <vector>

#include "agent/point_sink.h"
#include "base/io_pressure.h"
#include "base/progress.h"
#include "base/rate_limiter.h"
#include "repository/repository.h"
#include "snapshot/disk_source.h"
#include "snapshot/foreign_image.h"

namespace haven::agent {

struct CaptureOptions {
  int threads = 0;                 // 0: one per core
  ProgressFn progress;             // called with the whole job's figures:
  double progress_interval = 0.2;  //   seconds between progress calls
  uint64_t done_before = 0;        //   bytes of earlier disks of the job
  uint64_t total_bytes = 0;        //   bytes of all disks of the job
  uint64_t new_before = 0;         //   bytes stored by earlier disks
  double started = 0;              //   MonotonicSeconds() at the job's start
  std::string item;                //   what progress events name (disk)
  CancelToken cancel;              // checked before each ~1 MiB batch
  // Bytes read from the source wait for this budget (shared by the job's
  // disks and VMs); null: no limit.
  std::shared_ptr<RateLimiter> limit_read;
};

// What reading one disk did.
struct DiskCapture {
  uint64_t read_bytes = 0;     // bytes read from the source
  uint64_t changed_bytes = 0;  // bytes not kept from the parent (read + holes)
  uint64_t hole_bytes = 0;     // bytes stored as holes (kept ones included)
  double seconds = 0;
};

// Reads `src` into `sink` (not flushed) in chunks of sink.chunk_size() and
// returns the disk's entry with size, chunk size and tree set (name and
// source are the caller's); the tree's nodes are Put as ChunkType::kTree.
// With a `parent` (the same disk in the previous point, same size and chunk
// size; its tree read through sink.NodeLoader), ranges the source reports
// unchanged reuse the parent's chunk ids: the new point is the parent's
// image with the changed ranges replaced. Once options.cancel is cancelled
// it stops within a batch and returns Code::kCancelled (the sink keeps what
// it stored; nothing is committed).
Result<repository::DiskManifest> CaptureDisk(
    PointSink& sink, snapshot::DiskSource& src,
    const repository::DiskManifest* parent, const CaptureOptions& options,
    DiskCapture& capture);

// Stores each file as a config entry of `m` (see manifest.h); a file with an
// unsafe name is skipped and noted in m.notes.
Status StoreConfigFiles(PointSink& sink,
                        const std::vector<snapshot::ConfigFile>& files,
                        repository::Manifest& m);

// Opens an image file or block device in its own format: raw (allocation
// map), qcow2 with its backing chain (qemu-nbd), VHD/VHDX with differencing
// parents (libvhdi), VMDK (libvmdk). `format` "auto" tells it from the
// file's magic bytes; `used` receives the format read.
Result<std::unique_ptr<snapshot::DiskSource>> OpenImage(
    const std::string& path, const std::string& format,
    snapshot::ImageFormat& used);

std::string HostName();

// Returns `why`. When it is a cancellation, first seals the writer's open
// pack and indexes it (best effort), so a cancelled job's chunks are
// reused by the next run like a finished job's; a failed job's open pack is
// simply dropped (it may hold what failed).
Status KeepStoredChunks(repository::ChunkWriter& writer, Status why);

struct ImageBackupOptions {
  std::string name;  // backup name (VM or image name)
  std::string disk_name = "disk0";
  std::string time;             // recorded time; empty: now
  std::string format = "auto";  // auto | raw | qcow2 | vhd | vhdx | vmdk
  bool config_files = true;     // store a Hyper-V/VMware VM's config
  int threads = 0;              // 0: one per core
  ProgressFn progress;
  CancelToken cancel;  // checked between chunks
  double progress_interval = 0.2;  // seconds between progress calls
  double limit_read_bytes_per_second = 0;  // 0: no limit
  // Slow the reads down while the host's I/O pressure is high
  // (base/io_pressure.h); `log` hears each change of rate.
  bool adaptive = false;
  AdaptiveOptions adaptive_options;
  std::function<void(const std::string&)> log;
  // Run at background priority (base/priority.h): every thread of this
  // process and everything it starts. False: as the caller runs.
  bool low_priority = true;
};

// On success the recovery point is committed and returned. On failure no
// manifest is written; packs already finished stay and are reused next time.
// Cancelled (Code::kCancelled), it also seals the chunks read so far into
// packs first, so the next run does not read or store them again.
Result<repository::Manifest> BackupImage(repository::Repository& repo,
                                         const std::string& path,
                                         const ImageBackupOptions& options);

}  // namespace haven::agent

#endif  // HAVEN_AGENT_IMAGE_BACKUP_H_
