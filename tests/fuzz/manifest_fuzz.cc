// Fuzzes the snapshot manifest parser (JSON after decryption; a key holder
// or a bug could still write anything).
#include <string_view>

#include "repository/manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto m = haven::repository::Manifest::FromJson(
      std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
  if (m.ok()) {
    for (const auto& d : m->disks) {
      // Whatever parses must describe a walkable tree.
      if (d.tree.height < 1 || d.tree.count > haven::repository::TreeCapacity(d.tree.height))
        __builtin_trap();
      // Lost ranges must be sorted, disjoint and inside the disk.
      uint64_t end = 0;
      for (const auto& [offset, length] : d.lost) {
        if (offset < end || length == 0 || offset + length > d.size)
          __builtin_trap();
        end = offset + length;
      }
    }
    (void)m->ToJson();
  }
  return 0;
}
