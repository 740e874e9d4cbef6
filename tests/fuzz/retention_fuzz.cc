// Fuzzes the time and duration parsers behind `haven forget`: manifest times
// come from repository bytes, durations from the command line. Whatever
// parses must round-trip sanely and feed ApplyRetention without trouble.
#include <string>
#include <string_view>

#include "repository/retention.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  using namespace haven::repository;
  auto t = ParseIsoTime(text);
  auto d = ParseRetentionDuration(text);
  if (d.ok()) {
    if (*d <= 0) __builtin_trap();
    auto again = ParseRetentionDuration(FormatRetentionDuration(*d));
    if (!again.ok() || *again != *d) __builtin_trap();
  }
  std::vector<RetentionItem> items = {
      {"0123456789abcdef0123456789abcdef", "vm", std::string(text), false},
      {"fedcba9876543210fedcba9876543210", "vm", "2026-11-22T02:00:00Z", false}};
  RetentionPolicy p;
  p.last = 1;
  p.daily = 2;
  p.weekly = 1;
  p.within_seconds = d.ok() ? *d : 0;
  auto r = ApplyRetention(items, p);
  if (r.ok() != t.ok()) __builtin_trap();  // the only bad input is the time
  return 0;
}
