// Fuzzes the decoding of index records (RocksDB values are repository bytes).
#include <string_view>

#include "repository/chunk_index.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  haven::repository::ChunkId id;
  auto loc = haven::repository::DecodeIndexValue(
      std::string_view(reinterpret_cast<const char*>(data), size), id);
  if (loc.ok() && loc->pack.size() != 32) __builtin_trap();
  return 0;
}
