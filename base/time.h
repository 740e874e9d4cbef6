#ifndef HAVEN_BASE_TIME_H_
#define HAVEN_BASE_TIME_H_

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace haven {

// Current UTC time as "2026-11-22T20:03:35.123456Z".
std::string NowIso8601();
// Monotonic seconds, for durations and rates.
double MonotonicSeconds();

// The one time formatter. `ns` is nanoseconds since the epoch.
enum class TimeStyle {
  kRfc3339Utc,    // "2026-11-22T20:03:35Z": JSON and the API
  kLocal,         // "2026-11-22 21:03:35" in the local zone (TZ): people
  kLocalMinutes,  // "2026-11-22 21:03": people, narrow tables
  kUtcSpaced,     // "2026-11-22 20:03:35" UTC: older JSON fields kept as
                  // they were (ls --json "mtime")
};
std::string FormatTime(int64_t ns, TimeStyle style);

// A recovery point's recorded time for people: kLocal of the parsed
// instant; text that does not parse is shown as it is (to 19 bytes).
std::string PointTimeForPeople(std::string_view iso);

// A recovery point's time as parsed. The fraction is kept so that two
// points taken within one second still sort in the order they were taken.
struct IsoInstant {
  int64_t seconds = 0;  // since the epoch, UTC
  int32_t nanos = 0;
  auto operator<=>(const IsoInstant&) const = default;
};

// Parses Haven's "YYYY-MM-DDTHH:MM:SS[.fraction]Z" (UTC; years 0000-9999;
// no leap second; a fraction of 1 to 9 digits). Times come from manifests
// and --time, so the text is untrusted: InvalidArgument quoting it
// (shortened, escaped) for anything else.
Result<IsoInstant> ParseIsoInstant(std::string_view text);
// The same, to whole seconds since the epoch.
Result<int64_t> ParseIsoTime(std::string_view text);

// Whether point time `a` is earlier than `b`, as instants (fractions of any
// length count: "...00Z" < "...00.5Z"); text that does not parse sorts as
// text.
bool TimeBefore(std::string_view a, std::string_view b);

}  // namespace haven

#endif  // HAVEN_BASE_TIME_H_
