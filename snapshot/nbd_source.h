// snapshot/: a disk read over NBD with libnbd: the export of a libvirt
// pull-mode backup job (a frozen point in time, with the job's dirty bitmap
// for incremental runs), or qemu-nbd started by libnbd (socket activation)
// to read an image file natively — a qcow2 with its backing chain.
//
// At open, the whole allocation map ("base:allocation") and, for an
// incremental job, the dirty bitmap ("qemu:dirty-bitmap:NAME") are fetched
// into sorted extent lists; Classify answers from them. The server's replies
// are checked (extent lengths, ranges, sizes) before use.
#ifndef HAVEN_SNAPSHOT_NBD_SOURCE_H_
#define HAVEN_SNAPSHOT_NBD_SOURCE_H_

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "snapshot/disk_source.h"
#include "snapshot/image_source.h"

struct nbd_handle;

namespace haven::snapshot {

struct NbdSpec {
  std::string description;           // for messages: "vda of vm1"
  std::string socket;                // unix socket of a running server, or
  std::vector<std::string> command;  // a server started by socket activation
  std::string export_name;           // with `socket`
  std::string dirty_bitmap;  // bitmap to export as dirty map; empty: full
  std::string consistency_reason;
  // Files whose size and times are compared before and after the read
  // (an image served by qemu-nbd); empty for a backup job's export.
  std::vector<std::string> watch_files;
};

// Intervals [begin, end), sorted, disjoint, merged.
using Extents = std::vector<std::pair<uint64_t, uint64_t>>;

class NbdSource : public DiskSource {
 public:
  static Result<std::unique_ptr<NbdSource>> Open(const NbdSpec& spec);
  ~NbdSource() override;

  const std::string& description() const override { return spec_.description; }
  uint64_t size() const override { return size_; }
  Result<RangeState> Classify(uint64_t begin, uint64_t end) override;
  Status Read(uint64_t offset, uint8_t* buf, size_t len) override;
  Result<bool> ChangedDuringRead() override;
  std::string consistency_reason() const override {
    return spec_.consistency_reason;
  }

  const Extents& zero_extents() const { return zero_; }
  const Extents& dirty_extents() const { return dirty_; }
  bool incremental() const { return !spec_.dirty_bitmap.empty(); }

 private:
  NbdSource() = default;
  Status Connect();
  Status FetchMaps();
  Status Fail(const std::string& what) const;

  NbdSpec spec_;
  nbd_handle* h_ = nullptr;
  uint64_t size_ = 0;
  Extents zero_, dirty_;
  size_t zero_at_ = 0, dirty_at_ = 0;  // cursors for increasing queries
  std::vector<std::optional<SourceFingerprint>> fingerprints_;
};

// Adds [begin, end) to sorted, merged `extents` (begin >= the last begin).
void AddExtent(Extents& extents, uint64_t begin, uint64_t end);

}  // namespace haven::snapshot

#endif  // HAVEN_SNAPSHOT_NBD_SOURCE_H_
