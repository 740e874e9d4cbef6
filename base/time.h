#ifndef HAVEN_BASE_TIME_H_
#define HAVEN_BASE_TIME_H_

#include <string>

namespace haven {

// Current UTC time as "2026-11-22T20:03:35.123456Z".
std::string NowIso8601();
// Monotonic seconds, for durations and rates.
double MonotonicSeconds();

}  // namespace haven

#endif  // HAVEN_BASE_TIME_H_
