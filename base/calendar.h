// Calendar events as systemd.time(7) writes them ("daily", "Mon..Fri 02:00",
// "*-*-* 00/6:00:00"): the appliance's schedules. Parsing, the normalized
// form systemd-analyze prints, and the next time an event elapses, computed
// by the same rules as systemd's timers so that an admin who checks a
// schedule with `systemd-analyze calendar` sees the same run times.
#ifndef HAVEN_BASE_CALENDAR_H_
#define HAVEN_BASE_CALENDAR_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace haven {

// One element of a field's comma list: `start`, `start..stop` or
// `start[..stop]/repeat`. A range without a repetition has repeat 1; stop is
// -1 when there is no range. For the day field of an end-of-month event
// ("~") the values count days back from the month's end (1 = last day).
struct CalendarComponent {
  int start = 0;
  int stop = -1;
  int repeat = 0;
  bool operator==(const CalendarComponent&) const = default;
};

// A parsed, normalized event. An empty field list means "*" (any value);
// lists are sorted and free of duplicates.
struct CalendarEvent {
  uint8_t weekdays = 0;  // bit 0 = Monday .. bit 6 = Sunday; 0 = any day
  std::vector<CalendarComponent> year, month, day, hour, minute, second;
  bool end_of_month = false;  // "~": day counts back from the month's end
  bool utc = false;           // trailing " UTC": computed in UTC, not TZ
  bool operator==(const CalendarEvent&) const = default;
};

// Parses a calendar event. The text is untrusted (it comes from the API):
// at most 256 bytes; anything malformed or out of range (year 1970..2199,
// month 1..12, day 1..31, or 1..28 after "~", hour 0..23, minute and second
// 0..59, repetitions that can repeat) is InvalidArgument naming what is
// wrong and the column where it is. Supported: the shorthands minutely,
// hourly, daily, weekly, monthly, yearly/annually, quarterly and
// semiannually/biannually; an optional weekday list ("Mon..Fri", "Sat,Sun",
// full or short names, any case); an optional date "[Y-]M-D" or "[Y-]M~D";
// an optional time "H:M[:S]"; lists, ranges "a..b" and repetitions "a/r",
// "a..b/r" in every field; and an optional trailing "UTC". Other time
// zones, fractional seconds and "@epoch" are refused.
Result<CalendarEvent> ParseCalendar(std::string_view text);

// The normalized form, as `systemd-analyze calendar` prints it
// ("Mon..Fri *-*-* 02:00:00").
std::string Normalized(const CalendarEvent& event);

// The first time (seconds since the epoch) strictly after `after_unix_seconds`
// at which the event elapses, reckoned in the process's local time zone (TZ)
// unless the event says UTC. Times that do not exist because of a DST jump
// are skipped and repeated wall-clock times fire as systemd's timers do.
// nullopt if the event never elapses again (e.g. "*-02-30", or a year that
// has passed), if `after` is negative or past the year 9999, or if the
// search gives up (it is bounded: a thousand steps of a few mktime calls).
// Reads the TZ rules through mktime/localtime_r: not safe against another
// thread changing TZ at the same time.
std::optional<int64_t> NextElapse(const CalendarEvent& event,
                                  int64_t after_unix_seconds);

}  // namespace haven

#endif  // HAVEN_BASE_CALENDAR_H_
