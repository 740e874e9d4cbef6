// Fuzzes key slot files (unauthenticated JSON in keys/): listing parses
// every slot; unlocking must not crash or run away on hostile parameters.
#include <string>

#include "fuzz_util.h"
#include "repository/key_slots.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string dir = haven::fuzz::ScratchDir();
  const std::string slot = "0123456789abcdef";
  haven::fuzz::WriteWhole(dir + "/" + slot, data, size);
  haven::repository::KeySlots slots(dir, "00112233445566778899aabbccddeeff");
  (void)slots.List();
  return 0;
}
