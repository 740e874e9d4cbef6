#include "snapshot/nbd_source.h"

#include <libnbd.h>

#include <algorithm>
#include <cerrno>
#include <optional>

#include "snapshot/image_source.h"

namespace haven::snapshot {
namespace {

constexpr char kAllocation[] = "base:allocation";
constexpr char kBitmapPrefix[] = "qemu:dirty-bitmap:";
constexpr uint64_t kStatusSpan = uint64_t{1} << 30;  // per block-status call
constexpr uint64_t kMaxRead = 32 << 20;              // qemu's request limit
constexpr uint32_t kDirtyFlag = 1;                   // NBD_STATE_DIRTY

// A watched file's fingerprint; a file that is gone has none.
std::optional<SourceFingerprint> Watch(const std::string& path) {
  auto f = FingerprintPath(path);
  if (!f.ok()) return std::nullopt;
  return *f;
}

// What one block-status reply said, per meta context.
struct StatusReply {
  uint64_t size;
  bool want_dirty;
  Extents* zero;
  Extents* dirty;
  uint64_t zero_end = 0, dirty_end = 0;  // how far each context answered
  std::string error;
};

int OnExtents(void* user, const char* context, uint64_t offset,
              uint32_t* entries, size_t n, int* error) {
  auto* r = static_cast<StatusReply*>(user);
  const bool alloc = std::string_view(context) == kAllocation;
  const bool dirty = !alloc && r->want_dirty &&
                     std::string_view(context).starts_with(kBitmapPrefix);
  if (!alloc && !dirty) return 0;  // a context we did not ask for
  if (n % 2 != 0) {
    r->error = std::string("odd number of extent entries for ") + context;
    return 0;
  }
  uint64_t at = offset;
  for (size_t i = 0; i + 1 < n; i += 2) {
    const uint64_t len = entries[i], flags = entries[i + 1];
    if (len == 0 || at >= r->size) break;
    const uint64_t end = std::min(r->size, at + len);
    if (alloc && (flags & LIBNBD_STATE_ZERO)) AddExtent(*r->zero, at, end);
    if (dirty && (flags & kDirtyFlag)) AddExtent(*r->dirty, at, end);
    at = end;
  }
  (alloc ? r->zero_end : r->dirty_end) = at;
  return 0;
}

}  // namespace

void AddExtent(Extents& extents, uint64_t begin, uint64_t end) {
  if (begin >= end) return;
  if (!extents.empty() && begin <= extents.back().second) {
    extents.back().second = std::max(extents.back().second, end);
    return;
  }
  extents.push_back({begin, end});
}

Status NbdSource::Fail(const std::string& what) const {
  const char* msg = nbd_get_error();
  return IoError(spec_.description + ": " + what + ": " +
                 (msg ? msg : "unknown NBD error"));
}

Result<std::unique_ptr<NbdSource>> NbdSource::Open(const NbdSpec& spec) {
  std::unique_ptr<NbdSource> s(new NbdSource);
  s->spec_ = spec;
  for (const auto& f : spec.watch_files) s->fingerprints_.push_back(Watch(f));
  HAVEN_RETURN_IF_ERROR(s->Connect());
  HAVEN_RETURN_IF_ERROR(s->FetchMaps());
  return s;
}

NbdSource::~NbdSource() {
  if (h_) {
    nbd_shutdown(h_, 0);
    nbd_close(h_);  // also reaps a server started by socket activation
  }
}

Status NbdSource::Connect() {
  h_ = nbd_create();
  if (!h_) return Fail("cannot create an NBD handle");
  if (nbd_add_meta_context(h_, kAllocation) == -1)
    return Fail("requesting " + std::string(kAllocation));
  if (!spec_.dirty_bitmap.empty() &&
      nbd_add_meta_context(h_, (kBitmapPrefix + spec_.dirty_bitmap).c_str()) ==
          -1)
    return Fail("requesting the dirty bitmap");
  if (!spec_.command.empty()) {
    std::vector<char*> argv;
    for (const auto& a : spec_.command)
      argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    if (nbd_connect_systemd_socket_activation(h_, argv.data()) == -1)
      return Fail("starting " + spec_.command[0]);
  } else {
    if (nbd_set_export_name(h_, spec_.export_name.c_str()) == -1)
      return Fail("export name");
    if (nbd_connect_unix(h_, spec_.socket.c_str()) == -1)
      return Fail("connecting to " + spec_.socket);
  }
  int64_t size = nbd_get_size(h_);
  if (size < 0) return Fail("reading the export size");
  size_ = static_cast<uint64_t>(size);
  if (nbd_can_meta_context(h_, kAllocation) != 1)
    return IoError(spec_.description +
                   ": the NBD server does not report allocation");
  if (!spec_.dirty_bitmap.empty() &&
      nbd_can_meta_context(h_, (kBitmapPrefix + spec_.dirty_bitmap).c_str()) !=
          1)
    return NotFound(spec_.description +
                    ": the backup job exports no dirty "
                    "bitmap '" +
                    spec_.dirty_bitmap + "'");
  return OkStatus();
}

Status NbdSource::FetchMaps() {
  StatusReply r{size_, !spec_.dirty_bitmap.empty(), &zero_, &dirty_, 0, 0, {}};
  uint64_t offset = 0;
  while (offset < size_) {
    r.zero_end = r.dirty_end = offset;
    nbd_extent_callback cb{OnExtents, &r, nullptr};
    if (nbd_block_status(h_, std::min(kStatusSpan, size_ - offset), offset, cb,
                         0) == -1)
      return Fail("block status at offset " + std::to_string(offset));
    if (!r.error.empty()) return IoError(spec_.description + ": " + r.error);
    uint64_t next = r.zero_end;
    if (r.want_dirty) next = std::min(next, r.dirty_end);
    if (next <= offset)
      return IoError(spec_.description +
                     ": the NBD server described no extent at offset " +
                     std::to_string(offset));
    offset = next;
  }
  return OkStatus();
}

Result<RangeState> NbdSource::Classify(uint64_t begin, uint64_t end) {
  if (begin >= end || end > size_)
    return InvalidArgument(spec_.description + ": range past the disk end");
  // Queries come in increasing order; restart the cursors if one does not.
  auto advance = [](const Extents& ex, size_t& at, uint64_t begin) {
    if (at > 0 && at <= ex.size() && ex[at - 1].second > begin) at = 0;
    while (at < ex.size() && ex[at].second <= begin) ++at;
  };
  if (!spec_.dirty_bitmap.empty()) {
    advance(dirty_, dirty_at_, begin);
    if (dirty_at_ == dirty_.size() || dirty_[dirty_at_].first >= end)
      return RangeState::kKeep;
  }
  advance(zero_, zero_at_, begin);
  if (zero_at_ < zero_.size() && zero_[zero_at_].first <= begin &&
      zero_[zero_at_].second >= end)
    return RangeState::kHole;
  return RangeState::kRead;
}

Status NbdSource::Read(uint64_t offset, uint8_t* buf, size_t len) {
  if (offset > size_ || len > size_ - offset)
    return InvalidArgument(spec_.description + ": read past the disk end");
  while (len > 0) {
    size_t n = std::min<uint64_t>(len, kMaxRead);
    if (nbd_pread(h_, buf, n, offset, 0) == -1)
      return Fail("reading " + std::to_string(n) + " bytes at offset " +
                  std::to_string(offset));
    buf += n;
    offset += n;
    len -= n;
  }
  return OkStatus();
}

Result<bool> NbdSource::ChangedDuringRead() {
  for (size_t i = 0; i < spec_.watch_files.size(); ++i)
    if (Watch(spec_.watch_files[i]) != fingerprints_[i]) return true;
  return false;
}

}  // namespace haven::snapshot
