// Fuzzes what reads a guest's disk: partition tables and file systems
// through The Sleuth Kit (restore/guest_fs), and the file restore's walk
// and tar export over whatever tree they yield. A guest's disk is
// untrusted; none of it may crash Haven or write outside the target.
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "restore/file_restore.h"
#include "restore/guest_fs.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

class MemoryDisk : public haven::restore::DiskBytes {
 public:
  MemoryDisk(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint64_t size() const override { return size_; }
  const std::string& name() const override { return name_; }
  haven::Result<size_t> Read(uint64_t off, uint8_t* buf, size_t len) override {
    if (off >= size_) return size_t{0};
    len = std::min<size_t>(len, size_ - off);
    std::memcpy(buf, data_ + off, len);
    return len;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  std::string name_ = "fuzz";
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace haven::restore;
  MemoryDisk disk(data, size);
  auto layout = ReadGuestLayout(disk);
  if (!layout.ok()) return 0;
  const std::string dir = haven::fuzz::ScratchDir();
  for (const GuestVolume& v : layout->volumes) {
    if (v.fs_type.empty()) continue;
    if (v.offset > size) __builtin_trap();
    auto fs = GuestFs::Open(disk, v);
    if (!fs.ok()) continue;
    // Symlink targets (read from data blocks for ext's slow symlinks): a
    // target or a reason, never more than kMaxLinkTarget bytes or a NUL.
    if (auto root = (*fs)->Lookup("/"); root.ok()) {
      if (auto list = (*fs)->List(*root); list.ok())
        for (const GuestEntry& e : *list) {
          if (e.type != GuestType::kSymlink) continue;
          if (e.link_target.size() > kMaxLinkTarget ||
              e.link_target.find('\0') != std::string::npos ||
              e.link_target.empty() == e.link_problem.empty())
            __builtin_trap();
        }
    }
    FileRestoreOptions opt;
    opt.target = FileTarget::kTar;
    opt.path = dir + "/out.tar";
    auto st = RestoreGuestFiles(**fs, {"/"}, opt);
    if (st.ok() && st->bytes > (*fs)->max_file_size() * (st->files + 1))
      __builtin_trap();
    std::filesystem::remove(opt.path);
    std::filesystem::remove(opt.path + ".haven-partial");
  }
  return 0;
}
