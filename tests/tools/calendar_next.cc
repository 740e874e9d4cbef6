// Test driver for base/calendar.h: prints, for each calendar event, the
// lines `systemd-analyze calendar` prints that carry facts (the normalized
// form, the next elapse and the further iterations, in local time with the
// zone's abbreviation), so tests/integration/calendar_test.sh can compare
// the two outputs line by line.
//
//   calendar_next [--iterations=N] [--base-time=@EPOCH] EXPRESSION...
//
// Exit code 1 if an expression does not parse (its error is printed).
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <string_view>

#include "base/calendar.h"

namespace {

std::string Local(int64_t seconds) {
  time_t t = static_cast<time_t>(seconds);
  struct tm tm {};
  localtime_r(&t, &tm);
  char buf[64];
  strftime(buf, sizeof buf, "%a %Y-%m-%d %H:%M:%S %Z", &tm);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  int iterations = 1;
  int64_t base = static_cast<int64_t>(time(nullptr));
  int rc = 0;
  tzset();
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg.rfind("--iterations=", 0) == 0) {
      iterations = std::atoi(argv[i] + 13);
      continue;
    }
    if (arg.rfind("--base-time=@", 0) == 0) {
      base = std::strtoll(argv[i] + 13, nullptr, 10);
      continue;
    }
    auto event = haven::ParseCalendar(arg);
    if (!event.ok()) {
      std::printf("Error: %s\n", event.status().message().c_str());
      rc = 1;
      continue;
    }
    std::printf("Normalized form: %s\n", haven::Normalized(*event).c_str());
    int64_t after = base;
    for (int k = 1; k <= iterations; ++k) {
      auto next = haven::NextElapse(*event, after);
      if (!next) {
        if (k == 1) std::printf("Next elapse: never\n");
        break;
      }
      if (k == 1)
        std::printf("Next elapse: %s\n", Local(*next).c_str());
      else
        std::printf("Iter. #%d: %s\n", k, Local(*next).c_str());
      after = *next;
    }
  }
  return rc;
}
