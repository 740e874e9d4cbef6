#include "base/time.h"

#include <chrono>
#include <cstdio>
#include <ctime>

#include "base/status.h"

namespace haven {
namespace {

constexpr int64_t kHour = 3600;
constexpr int64_t kDay = 24 * kHour;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Reads exactly `n` ASCII digits at text[pos]; false if any is not a digit.
bool ReadDigits(std::string_view text, size_t pos, size_t n, int* out) {
  if (pos + n > text.size()) return false;
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (!IsDigit(text[i])) return false;
    v = v * 10 + (text[i] - '0');
  }
  *out = v;
  return true;
}

bool IsLeapYear(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int DaysInMonth(int y, int m) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30,
                                  31, 31, 30, 31, 30, 31};
  return m == 2 && IsLeapYear(y) ? 29 : kDays[m - 1];
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
// days_from_civil), so no dependence on timegm() or the process's TZ.
int64_t DaysFromCivil(int64_t y, int m, int d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

}  // namespace

// Layout, by byte offset: YYYY-MM-DDTHH:MM:SS then an optional fraction
// ".d" to ".ddddddddd", then "Z" as the last byte.
Result<IsoInstant> ParseIsoInstant(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return InvalidArgument("bad time " + QuoteUntrusted(text) + ": " + std::string(why) +
                           " (want YYYY-MM-DDTHH:MM:SS[.fraction]Z)");
  };
  int year, month, day, hour, minute, second;
  if (text.size() < 20 || !ReadDigits(text, 0, 4, &year) || text[4] != '-' ||
      !ReadDigits(text, 5, 2, &month) || text[7] != '-' ||
      !ReadDigits(text, 8, 2, &day) || text[10] != 'T' ||
      !ReadDigits(text, 11, 2, &hour) || text[13] != ':' ||
      !ReadDigits(text, 14, 2, &minute) || text[16] != ':' ||
      !ReadDigits(text, 17, 2, &second)) {
    return bad("not in Haven's format");
  }
  int32_t nanos = 0;
  size_t pos = 19;
  if (text[pos] == '.') {
    size_t start = ++pos;
    while (pos < text.size() && IsDigit(text[pos])) {
      if (pos - start == 9) return bad("fraction longer than 9 digits");
      nanos = nanos * 10 + (text[pos] - '0');
      ++pos;
    }
    if (pos == start) return bad("empty fraction");
    for (size_t i = pos - start; i < 9; ++i) nanos *= 10;
  }
  if (pos >= text.size() || text[pos] != 'Z') return bad("missing Z (UTC)");
  if (pos + 1 != text.size()) return bad("trailing characters");
  if (month < 1 || month > 12) return bad("month out of range");
  if (day < 1 || day > DaysInMonth(year, month)) return bad("day out of range");
  if (hour > 23 || minute > 59 || second > 59)
    return bad("time of day out of range");
  IsoInstant t;
  t.seconds = DaysFromCivil(year, month, day) * kDay + hour * kHour +
              minute * 60 + second;
  t.nanos = nanos;
  return t;
}


std::string NowIso8601() {
  // Microseconds, fixed width: recovery points sort by this string, and two
  // backups can finish within the same second.
  auto now = std::chrono::system_clock::now();
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
  std::time_t t = static_cast<std::time_t>(us / 1000000);
  std::tm tm;
  gmtime_r(&t, &tm);
  char buf[48];
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%06lldZ", static_cast<long long>(us % 1000000));
  return buf;
}

double MonotonicSeconds() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string FormatTime(int64_t ns, TimeStyle style) {
  // Floor division: times before 1970 still print the right second.
  int64_t secs = ns / 1000000000;
  if (ns % 1000000000 < 0) --secs;
  const std::time_t s = static_cast<std::time_t>(secs);
  std::tm tm;
  const bool utc =
      style == TimeStyle::kRfc3339Utc || style == TimeStyle::kUtcSpaced;
  if (!(utc ? gmtime_r(&s, &tm) : localtime_r(&s, &tm))) return "?";
  const char* format = style == TimeStyle::kRfc3339Utc ? "%Y-%m-%dT%H:%M:%SZ"
                       : style == TimeStyle::kLocalMinutes ? "%Y-%m-%d %H:%M"
                                                           : "%Y-%m-%d %H:%M:%S";
  char buf[64];
  if (std::strftime(buf, sizeof buf, format, &tm) == 0) return "?";
  return buf;
}

std::string PointTimeForPeople(std::string_view iso) {
  Result<IsoInstant> t = ParseIsoInstant(iso);
  if (!t.ok()) return std::string(iso.substr(0, 19));
  return FormatTime(t->seconds * 1000000000, TimeStyle::kLocal);
}

bool TimeBefore(std::string_view a, std::string_view b) {
  Result<IsoInstant> x = ParseIsoInstant(a), y = ParseIsoInstant(b);
  if (x.ok() && y.ok()) return *x < *y;
  return a < b;
}

Result<int64_t> ParseIsoTime(std::string_view text) {
  HAVEN_ASSIGN_OR_RETURN(IsoInstant t, ParseIsoInstant(text));
  return t.seconds;
}

}  // namespace haven
