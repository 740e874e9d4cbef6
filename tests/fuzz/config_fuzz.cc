// Fuzzes the repository config parser (plain JSON, read before any key).
#include <string_view>

#include "repository/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto c = haven::repository::Config::FromJson(
      std::string_view(reinterpret_cast<const char*>(data), size));
  if (c.ok() && !c->Validate().ok()) __builtin_trap();  // parsed means valid
  return 0;
}
