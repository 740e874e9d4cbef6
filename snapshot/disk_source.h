// snapshot/: capture a point in time from a source. This file: what the
// backup pipeline reads a disk from. Implementations: a raw file or block
// device (image_source.h), an NBD export (nbd_source.h: a libvirt pull-mode
// backup job, or qemu-nbd serving a qcow2 chain), and the Hyper-V / VMware
// formats read natively (foreign_image.h).
#ifndef HAVEN_SNAPSHOT_DISK_SOURCE_H_
#define HAVEN_SNAPSHOT_DISK_SOURCE_H_

#include <cstdint>
#include <string>

#include "base/status.h"

namespace haven::snapshot {

// A configuration file captured with a recovery point: a relative name
// ("domain.xml", "networks/default.xml", "vm/win.vmx") and its bytes.
struct ConfigFile {
  std::string name;
  std::string data;
};

// Larger files are not taken as configuration (NVRAM is at most a few MiB).
inline constexpr size_t kMaxConfigFileBytes = 64 << 20;

// What the backup does with one chunk-sized range of the disk.
enum class RangeState {
  kHole,  // certainly all zeros (unallocated): stored as a hole, not read
  kRead,  // may hold data: read it
  kKeep,  // unchanged since the parent recovery point: reuse its chunk ids
          // (only from a source reading an incremental job's dirty map)
};

class DiskSource {
 public:
  virtual ~DiskSource() = default;
  // Names the source in messages (a path, "vda of vm1", ...).
  virtual const std::string& description() const = 0;
  // Virtual size in bytes.
  virtual uint64_t size() const = 0;
  // State of [begin, end), a range inside the disk. Called from one thread,
  // with `begin` increasing. kKeep only if the whole range is unchanged;
  // kHole only if the whole range reads as zeros.
  virtual Result<RangeState> Classify(uint64_t begin, uint64_t end) = 0;
  // Reads exactly `len` bytes at `offset` (inside the disk). Called from one
  // thread at a time.
  virtual Status Read(uint64_t offset, uint8_t* buf, size_t len) = 0;
  // After the read: whether the source changed while it was read (a file
  // written to meanwhile). Sources that serve a frozen point in time say no.
  virtual Result<bool> ChangedDuringRead() { return false; }
  // How the recovery point's consistency is described when this source is
  // read on its own (`haven backup image`).
  virtual std::string consistency_reason() const = 0;
};

}  // namespace haven::snapshot

#endif  // HAVEN_SNAPSHOT_DISK_SOURCE_H_
