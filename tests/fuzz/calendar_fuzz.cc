// Fuzzes base/calendar.h: schedules arrive as text through the appliance's
// API. Whatever parses must print a normalized form that parses back to the
// same event, and its next elapses (in a zone with DST) must come strictly
// after their base and be found without hanging.
#include <cstdlib>
#include <ctime>
#include <string_view>

#include "base/calendar.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool tz_set = [] {
    setenv("TZ", "Europe/Berlin", 1);
    tzset();
    return true;
  }();
  (void)tz_set;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto event = haven::ParseCalendar(text);
  if (!event.ok()) {
    if (event.status().code() != haven::Code::kInvalidArgument)
      __builtin_trap();
    return 0;
  }
  auto again = haven::ParseCalendar(haven::Normalized(*event));
  if (!again.ok() || !(*again == *event)) __builtin_trap();
  // 2024-03-30 12:00 UTC (a DST change ahead) and 2024-10-27 00:30 UTC
  // (inside the repeated hour).
  for (int64_t base : {int64_t{1711800000}, int64_t{1729989000}}) {
    int64_t t = base;
    for (int i = 0; i < 3; ++i) {
      auto next = haven::NextElapse(*event, t);
      if (!next) break;
      if (*next <= t) __builtin_trap();
      t = *next;
    }
  }
  return 0;
}
