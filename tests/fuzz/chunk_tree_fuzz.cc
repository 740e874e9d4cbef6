// Fuzzes chunk-list tree walking: the input supplies the root's height and
// count and the bytes of every node; the walk must reject what is
// inconsistent and never visit an index beyond the count.
#include <cstring>
#include <map>

#include "repository/chunk_tree.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace haven::repository;
  if (size < 10) return 0;
  TreeRoot root;
  root.height = static_cast<int8_t>(data[0]);
  root.count = haven::GetU64(data + 1) % (1ull << 40);
  root.root.bytes[0] = data[9] | 1;  // never the zero id
  // Node k's bytes: the input after the header, cut into pieces by its
  // first byte; node ids are (k+1) in their first byte.
  std::map<uint8_t, haven::Bytes> nodes;
  size_t pos = 10;
  for (uint8_t k = 1; pos < size && k < 255; ++k) {
    size_t len = std::min<size_t>(size - pos, (data[pos] + 1) * 32u);
    nodes[k] = haven::Bytes(data + pos, data + pos + len);
    pos += len;
  }
  uint64_t visits = 0;
  (void)WalkTree(
      root,
      [&](const ChunkId& id) -> haven::Result<haven::Bytes> {
        auto it = nodes.find(id.bytes[0]);
        if (it == nodes.end()) return haven::DataLoss("no such node");
        return it->second;
      },
      [&](uint64_t index, const ChunkId&) -> haven::Status {
        if (index >= root.count) __builtin_trap();
        if (++visits > 4096) return haven::DataLoss("enough");
        return haven::OkStatus();
      },
      4096);
  return 0;
}
