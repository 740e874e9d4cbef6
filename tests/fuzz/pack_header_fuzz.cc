// Fuzzes pack parsing: the header plaintext decoder (entries must stay inside
// the data area) and the trailer of a whole pack file (lengths from disk).
#include <string>

#include "fuzz_util.h"
#include "repository/pack_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace haven::repository;
  if (size < 8) return 0;
  uint64_t data_end = haven::GetU64(data);
  haven::ByteSpan rest(data + 8, size - 8);
  auto entries = DecodePackHeader(rest, data_end, "fuzz");
  if (entries.ok()) {
    for (const auto& e : *entries)
      if (e.offset + e.stored_len > data_end || e.offset < 8) __builtin_trap();
  }
  const std::string path = haven::fuzz::ScratchDir() + "/pack";
  haven::fuzz::WriteWhole(path, rest.data(), rest.size());
  Key key{};
  (void)ReadPackHeader(path, "00112233445566778899aabbccddeeff", key);
  return 0;
}
