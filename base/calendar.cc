#include "base/calendar.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <tuple>
#include <utility>

namespace haven {
namespace {

constexpr size_t kMaxText = 256;
constexpr int kMinYear = 1970;
constexpr int kMaxYear = 2199;
// systemd gives up after this many steps; so do we, and for the same
// expressions that keeps the answers identical.
constexpr int kMaxSteps = 1000;
constexpr int64_t kUsec = 1000000;
// The last second systemd can format (9999-12-30 23:59:59 UTC).
constexpr int64_t kMaxBase = 253402214399;

const char* const kDayNames[7][2] = {{"Mon", "Monday"},    {"Tue", "Tuesday"},
                                     {"Wed", "Wednesday"}, {"Thu", "Thursday"},
                                     {"Fri", "Friday"},    {"Sat", "Saturday"},
                                     {"Sun", "Sunday"}};

enum Field { kYear, kMonth, kDay, kHour, kMinute, kSecond };
const char* const kFieldNames[] = {"year", "month",  "day",
                                   "hour", "minute", "second"};
const int kFieldMin[] = {kMinYear, 1, 1, 0, 0, 0};
const int kFieldMax[] = {kMaxYear, 12, 31, 23, 59, 59};

bool EqualsNoCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  Result<CalendarEvent> Parse();

 private:
  // InvalidArgument quoting the whole text and naming the 1-based column.
  Status Error(size_t offset, std::string_view what) const {
    return InvalidArgument("calendar event " + QuoteUntrusted(text_) + ": " +
                           std::string(what) + " (column " +
                           std::to_string(offset + 1) + ")");
  }
  bool Shorthand(std::string_view word, CalendarEvent* event) const;
  Status ParseWeekdays(std::string_view token, size_t at, uint8_t* bits) const;
  Status ParseDate(std::string_view token, size_t at,
                   CalendarEvent* event) const;
  Status ParseTime(std::string_view token, size_t at,
                   CalendarEvent* event) const;
  Status ParseList(std::string_view part, size_t at, Field field, bool eom,
                   std::vector<CalendarComponent>* out) const;
  Status ParseNumber(std::string_view part, size_t* pos, size_t at, Field field,
                     int* value) const;
  Status Check(CalendarComponent* c, size_t at, Field field, bool eom) const;

  std::string_view text_;
};

// Fills in an event for the named shorthands; false if `word` is none.
bool Parser::Shorthand(std::string_view word, CalendarEvent* e) const {
  const std::vector<CalendarComponent> zero = {{0, -1, 0}};
  const std::vector<CalendarComponent> one = {{1, -1, 0}};
  auto midnight = [&] { e->hour = e->minute = e->second = zero; };
  if (EqualsNoCase(word, "minutely")) {
    e->second = zero;
  } else if (EqualsNoCase(word, "hourly")) {
    e->minute = e->second = zero;
  } else if (EqualsNoCase(word, "daily")) {
    midnight();
  } else if (EqualsNoCase(word, "weekly")) {
    e->weekdays = 1;
    midnight();
  } else if (EqualsNoCase(word, "monthly")) {
    e->day = one;
    midnight();
  } else if (EqualsNoCase(word, "yearly") || EqualsNoCase(word, "annually")) {
    e->month = e->day = one;
    midnight();
  } else if (EqualsNoCase(word, "quarterly")) {
    e->month = {{1, -1, 0}, {4, -1, 0}, {7, -1, 0}, {10, -1, 0}};
    e->day = one;
    midnight();
  } else if (EqualsNoCase(word, "semiannually") ||
             EqualsNoCase(word, "semi-annually") ||
             EqualsNoCase(word, "biannually") ||
             EqualsNoCase(word, "bi-annually")) {
    e->month = {{1, -1, 0}, {7, -1, 0}};
    e->day = one;
    midnight();
  } else {
    return false;
  }
  return true;
}

Status Parser::ParseWeekdays(std::string_view token, size_t at,
                             uint8_t* bits) const {
  size_t pos = 0;
  int range_from = -1;  // set after "Mon.." or "Mon-"
  while (pos < token.size()) {
    size_t end = pos;
    while (end < token.size() &&
           std::isalpha(static_cast<unsigned char>(token[end])))
      ++end;
    std::string_view name = token.substr(pos, end - pos);
    int day = -1;
    for (int d = 0; d < 7 && day < 0; ++d) {
      if (EqualsNoCase(name, kDayNames[d][0]) ||
          EqualsNoCase(name, kDayNames[d][1]))
        day = d;
    }
    if (day < 0) {
      return Error(at + pos,
                   name.empty() ? "expected a weekday name"
                                : "unknown weekday " + QuoteUntrusted(name) +
                                      " (expected Mon..Sun or Monday..Sunday)");
    }
    if (range_from >= 0) {
      if (range_from > day) {
        return Error(at + pos,
                     "weekday range ends before it starts (ranges "
                     "cannot wrap past Sunday; write Sat,Sun,Mon)");
      }
      for (int d = range_from; d <= day; ++d) *bits |= 1 << d;
    } else {
      *bits |= 1 << day;
    }
    pos = end;
    if (pos == token.size()) {
      range_from = -1;
      break;
    }
    if (token.substr(pos, 2) == ".." || token[pos] == '-') {
      if (range_from >= 0)
        return Error(at + pos, "a weekday range has two ends");
      range_from = day;
      pos += token[pos] == '-' ? 1 : 2;
      if (pos == token.size())
        return Error(at + pos, "weekday range has no end");
    } else if (token[pos] == ',') {
      range_from = -1;
      ++pos;  // a trailing comma is allowed, as systemd allows it
    } else {
      return Error(at + pos, "unexpected " +
                                 QuoteUntrusted(token.substr(pos, 1)) +
                                 " in the weekdays (expected ',' or '..')");
    }
  }
  return OkStatus();
}

Status Parser::ParseNumber(std::string_view part, size_t* pos, size_t at,
                           Field field, int* value) const {
  size_t start = *pos;
  while (*pos < part.size() && IsDigit(part[*pos])) ++*pos;
  if (*pos == start) {
    return Error(at + start,
                 std::string("expected a number in the ") + kFieldNames[field]);
  }
  if (*pos - start > 6) {
    return Error(at + start,
                 std::string("number too long in the ") + kFieldNames[field]);
  }
  *value = std::stoi(std::string(part.substr(start, *pos - start)));
  return OkStatus();
}

// Two-digit years as systemd reads them (24 → 2024, 89 → 1989), then the
// bounds systemd enforces, so that an accepted event always can elapse the
// way systemd would compute it.
Status Parser::Check(CalendarComponent* c, size_t at, Field field,
                     bool eom) const {
  if (field == kYear) {
    for (int* v : {&c->start, &c->stop}) {
      if (*v >= 0 && *v < 70)
        *v += 2000;
      else if (*v >= 70 && *v < 100)
        *v += 1900;
    }
  }
  // Make the range a whole number of repetitions, as systemd does.
  // A range left with one value is that value ("2..2", "1..3/5" → 1).
  if (c->stop > c->start && c->repeat > 0)
    c->stop -= (c->stop - c->start) % c->repeat;
  if (c->stop == c->start) c->stop = -1, c->repeat = 0;
  const char* name = kFieldNames[field];
  int lo = kFieldMin[field];
  int hi = kFieldMax[field] - (eom ? 3 : 0);
  auto range = [&] {
    return " (" + std::to_string(lo) + ".." + std::to_string(hi) +
           (eom ? " days before the month's end" : "") + ")";
  };
  if (c->start < lo || c->start > hi) {
    return Error(at, std::string(name) + " " + std::to_string(c->start) +
                         " is out of range" + range());
  }
  if (c->repeat > hi - lo) {
    return Error(at, std::string("repetition /") + std::to_string(c->repeat) +
                         " is too large for the " + name);
  }
  if (c->stop >= 0) {
    if (c->stop < lo || c->stop > hi) {
      return Error(at, std::string(name) + " " + std::to_string(c->stop) +
                           " is out of range" + range());
    }
    if (c->start + c->repeat > c->stop) {
      return Error(at, std::string("the ") + name + " range " +
                           std::to_string(c->start) + ".." +
                           std::to_string(c->stop) + " ends before it starts");
    }
  } else if (eom ? c->start - c->repeat < lo : c->start + c->repeat > hi) {
    return Error(at, std::string("repetition ") + std::to_string(c->start) +
                         "/" + std::to_string(c->repeat) +
                         " never repeats within the " + name + range());
  }
  return OkStatus();
}

Status Parser::ParseList(std::string_view part, size_t at, Field field,
                         bool eom, std::vector<CalendarComponent>* out) const {
  const char* name = kFieldNames[field];
  if (part.empty()) return Error(at, std::string("missing ") + name);
  if (part[0] == '*') {
    if (part.size() > 1) {
      return Error(at + 1, std::string("'*' stands alone in the ") + name +
                               " (for a repetition write 0/N or 1/N)");
    }
    if (field == kSecond) out->push_back({0, -1, 1});
    return OkStatus();
  }
  size_t pos = 0;
  for (;;) {
    size_t item_at = pos;
    CalendarComponent c;
    HAVEN_RETURN_IF_ERROR(ParseNumber(part, &pos, at, field, &c.start));
    if (part.substr(pos, 2) == "..") {
      pos += 2;
      HAVEN_RETURN_IF_ERROR(ParseNumber(part, &pos, at, field, &c.stop));
      c.repeat = 1;
    }
    if (pos < part.size() && part[pos] == '/') {
      ++pos;
      HAVEN_RETURN_IF_ERROR(ParseNumber(part, &pos, at, field, &c.repeat));
      if (c.repeat == 0)
        return Error(at + pos - 1, "a repetition must be at least 1");
    } else if (field == kSecond && c.stop >= 0 && c.start >= c.stop) {
      // systemd refuses a seconds range of one value ("5..5") unless it
      // has a repetition; so do we, to accept exactly what it accepts.
      return Error(at + item_at, "the second range " + std::to_string(c.start) +
                                     ".." + std::to_string(c.stop) +
                                     " needs an end after its start");
    }
    if (pos < part.size() && part[pos] != ',') {
      if (field == kSecond && part[pos] == '.')
        return Error(at + pos, "fractions of a second are not supported");
      return Error(at + pos, "unexpected " +
                                 QuoteUntrusted(part.substr(pos, 1)) +
                                 " in the " + name);
    }
    HAVEN_RETURN_IF_ERROR(Check(&c, at + item_at, field, eom));
    out->push_back(c);
    if (pos == part.size()) break;
    ++pos;  // ','
  }
  // Sorted and without duplicates, as the normalized form shows them.
  std::sort(out->begin(), out->end(), [](const auto& a, const auto& b) {
    return std::tie(a.start, a.stop, a.repeat) <
           std::tie(b.start, b.stop, b.repeat);
  });
  out->erase(std::unique(out->begin(), out->end()), out->end());
  if (eom) {
    // systemd 252 lowers the bound of a "~" day list by 3 for each element
    // after the first (the 1st element may reach 28, the 2nd 25, the 3rd
    // 22...) and refuses the event otherwise; we refuse the same events.
    for (size_t k = 1; k < out->size(); ++k) {
      const CalendarComponent& c = (*out)[k];
      int hi = kFieldMax[kDay] - 3 * static_cast<int>(k + 1);
      int highest = std::max(c.start, c.stop);
      bool fits = hi >= kFieldMin[kDay] && highest <= hi &&
                  c.repeat <= hi - kFieldMin[kDay];
      if (!fits) {
        return Error(at, "after '~', element " + std::to_string(k + 1) +
                             " of the sorted day list may reach at most " +
                             std::to_string(hi) +
                             " days before the month's end (28 for the "
                             "first element, 3 fewer for each further one)");
      }
    }
  }
  return OkStatus();
}

Status Parser::ParseDate(std::string_view token, size_t at,
                         CalendarEvent* e) const {
  if (token[0] == '@')
    return Error(at, "@TIMESTAMP is not supported in a schedule");
  std::vector<size_t> seps;
  for (size_t i = 0; i < token.size(); ++i) {
    if (token[i] == '-' || token[i] == '~') seps.push_back(i);
  }
  for (size_t k = 0; k + 1 < seps.size(); ++k) {
    if (token[seps[k]] == '~')
      return Error(at + seps[k], "'~' must come between the month and the day");
  }
  if (seps.empty() || seps.size() > 2) {
    return Error(at,
                 "a date is [YEAR-]MONTH-DAY (or MONTH~DAY for days "
                 "before the month's end)");
  }
  e->end_of_month = token[seps.back()] == '~';
  size_t month_at = seps.size() == 2 ? seps[0] + 1 : 0;
  if (seps.size() == 2) {
    HAVEN_RETURN_IF_ERROR(
        ParseList(token.substr(0, seps[0]), at, kYear, false, &e->year));
  }
  HAVEN_RETURN_IF_ERROR(
      ParseList(token.substr(month_at, seps.back() - month_at), at + month_at,
                kMonth, false, &e->month));
  HAVEN_RETURN_IF_ERROR(ParseList(token.substr(seps.back() + 1),
                                  at + seps.back() + 1, kDay, e->end_of_month,
                                  &e->day));
  // "~*" is every day: systemd drops the "~".
  if (e->day.empty()) e->end_of_month = false;
  return OkStatus();
}

Status Parser::ParseTime(std::string_view token, size_t at,
                         CalendarEvent* e) const {
  size_t c1 = token.find(':');
  size_t c2 = token.find(':', c1 + 1);
  if (c2 != std::string_view::npos &&
      token.find(':', c2 + 1) != std::string_view::npos) {
    return Error(at + token.find(':', c2 + 1),
                 "a time is HOUR:MINUTE[:SECOND]");
  }
  HAVEN_RETURN_IF_ERROR(
      ParseList(token.substr(0, c1), at, kHour, false, &e->hour));
  size_t minute_end = c2 == std::string_view::npos ? token.size() : c2;
  HAVEN_RETURN_IF_ERROR(ParseList(token.substr(c1 + 1, minute_end - c1 - 1),
                                  at + c1 + 1, kMinute, false, &e->minute));
  if (c2 == std::string_view::npos) {
    e->second = {{0, -1, 0}};
    return OkStatus();
  }
  return ParseList(token.substr(c2 + 1), at + c2 + 1, kSecond, false,
                   &e->second);
}

Result<CalendarEvent> Parser::Parse() {
  if (text_.empty()) return Error(0, "empty");
  if (text_.size() > kMaxText) {
    return Error(kMaxText,
                 "longer than " + std::to_string(kMaxText) + " bytes");
  }
  for (size_t i = 0; i < text_.size(); ++i) {
    unsigned char ch = text_[i];
    if (ch < 0x20 || ch >= 0x7f) return Error(i, "unexpected character");
  }
  if (text_.front() == ' ') return Error(0, "leading space");
  if (text_.back() == ' ') return Error(text_.size() - 1, "trailing space");

  CalendarEvent e;
  std::string_view body = text_;
  if (EqualsNoCase(body, "UTC"))
    return Error(0, "no event before the time zone");
  if (body.size() > 4 && EqualsNoCase(body.substr(body.size() - 4), " UTC")) {
    e.utc = true;
    body = body.substr(0, body.size() - 4);
    while (!body.empty() && body.back() == ' ') body.remove_suffix(1);
  }
  // Split on runs of spaces: [weekdays] [date] [time].
  std::vector<std::pair<std::string_view, size_t>> tokens;
  for (size_t i = 0; i < body.size();) {
    if (body[i] == ' ') {
      ++i;
      continue;
    }
    size_t end = body.find(' ', i);
    if (end == std::string_view::npos) end = body.size();
    tokens.emplace_back(body.substr(i, end - i), i);
    i = end;
  }
  if (tokens.empty()) return Error(0, "no event before the time zone");
  if (tokens.size() > 1) {
    const auto& [last, at] = tokens.back();
    if (std::isalpha(static_cast<unsigned char>(last[0]))) {
      uint8_t ignored = 0;
      if (ParseWeekdays(last, at, &ignored).ok())
        return Error(at, "weekdays come first");
      return Error(at, "time zone " + QuoteUntrusted(last) +
                           " is not supported (only UTC, or none for the "
                           "local time zone)");
    }
  }
  if (tokens.size() == 1 && Shorthand(tokens[0].first, &e)) return e;
  if (tokens.size() > 3) {
    return Error(tokens[3].second,
                 "too many parts (expected [WEEKDAYS] [DATE] [TIME])");
  }
  size_t next = 0;
  if (std::isalpha(static_cast<unsigned char>(tokens[0].first[0]))) {
    HAVEN_RETURN_IF_ERROR(
        ParseWeekdays(tokens[0].first, tokens[0].second, &e.weekdays));
    if (e.weekdays == 0x7f) e.weekdays = 0;
    next = 1;
  }
  size_t rest = tokens.size() - next;
  if (rest == 3) {
    return Error(tokens[0].second,
                 "too many parts (expected [WEEKDAYS] [DATE] [TIME])");
  }
  bool has_date = rest == 2 || (rest == 1 && tokens[next].first.find(':') ==
                                                 std::string_view::npos);
  bool has_time = rest == 2 || (rest == 1 && !has_date);
  if (has_date) {
    const auto& [token, at] = tokens[next++];
    if (token.find(':') != std::string_view::npos)
      return Error(at, "expected a date before the time");
    HAVEN_RETURN_IF_ERROR(ParseDate(token, at, &e));
  }
  if (has_time) {
    const auto& [token, at] = tokens[next];
    if (std::isalpha(static_cast<unsigned char>(token[0])))
      return Error(at, "weekdays come first");
    if (token.find(':') == std::string_view::npos)
      return Error(at, "a time is HOUR:MINUTE[:SECOND]");
    HAVEN_RETURN_IF_ERROR(ParseTime(token, at, &e));
  } else {
    e.hour = e.minute = e.second = {{0, -1, 0}};
  }
  return e;
}

void AppendWeekdays(uint8_t bits, std::string* out) {
  // Runs of three or more days as "Mon..Wed", shorter ones as a list.
  bool first = true;
  for (int d = 0; d < 7;) {
    if (!(bits & (1 << d))) {
      ++d;
      continue;
    }
    int end = d;
    while (end + 1 < 7 && (bits & (1 << (end + 1)))) ++end;
    if (!first) *out += ',';
    first = false;
    *out += kDayNames[d][0];
    if (end > d) {
      *out += end > d + 1 ? ".." : ",";
      *out += kDayNames[end][0];
    }
    d = end + 1;
  }
}

void AppendList(const std::vector<CalendarComponent>& list, int width,
                bool seconds, std::string* out) {
  if (list.empty() ||
      (seconds && list.size() == 1 && list[0] == CalendarComponent{0, -1, 1})) {
    *out += '*';
    return;
  }
  char buf[64];
  for (size_t i = 0; i < list.size(); ++i) {
    const CalendarComponent& c = list[i];
    if (i > 0) *out += ',';
    std::snprintf(buf, sizeof buf, "%0*d", width, c.start);
    *out += buf;
    if (c.stop > 0) {
      std::snprintf(buf, sizeof buf, "..%0*d", width, c.stop);
      *out += buf;
    }
    if (c.repeat > 0 && !(c.stop > 0 && c.repeat == 1))
      *out += "/" + std::to_string(c.repeat);
  }
}

// ------------------------------------------------------------ next elapse
//
// The search walks a broken-down time field by field, from the year down to
// the second, as systemd's timers do: each field moves to the earliest
// allowed value not before the current one (resetting the fields below it),
// and mktime (timegm for UTC) settles what the result means. A field that
// has no allowed value left carries into the field above. When settling
// moves the time (a day past the month's end, an hour inside a DST gap),
// the search restarts from the settled time; a repeated hour (DST ending)
// is taken as mktime resolves it with tm_isdst = -1. Seconds are carried
// in microseconds so that "strictly after" a whole second means the next
// second, exactly as systemd adds one microsecond to its base time.

time_t Settle(struct tm* t, bool utc) { return utc ? timegm(t) : mktime(t); }

enum class Fit { kNone, kSame, kMoved };

// Days in the month of `t` (year and month already valid).
int DaysInMonth(const struct tm& t) {
  static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int year = t.tm_year + 1900;
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return t.tm_mon == 1 && leap ? 29 : kDays[t.tm_mon];
}

// The day of the month that is `back` days before the month's end (1 = the
// last day), or -1 when there is no such day in this month.
int64_t FromMonthEnd(const struct tm& t, int back) {
  if (back <= 0) return -1;
  int day = DaysInMonth(t) + 1 - back;
  return day >= 1 ? day : -1;
}

// Moves *value to the earliest value >= *value that `list` allows (an empty
// list allows all). Values are in units of `scale` list units.
Fit Earliest(const std::vector<CalendarComponent>& list, int64_t scale,
             const struct tm* month_end, int64_t* value) {
  if (list.empty()) return Fit::kSame;
  std::optional<int64_t> best;
  for (const CalendarComponent& c : list) {
    int64_t start = c.start * scale;
    int64_t stop = c.stop < 0 ? -1 : c.stop * scale;
    if (month_end != nullptr) {
      start = FromMonthEnd(*month_end, c.start);
      stop = FromMonthEnd(*month_end, c.stop);
      if (stop > 0) std::swap(start, stop);
    }
    int64_t candidate;
    if (start >= *value) {
      candidate = start;
    } else if (c.repeat > 0) {
      int64_t step = c.repeat * scale;
      candidate = start + step * ((*value - start + step - 1) / step);
      if (stop >= 0 && candidate > stop) continue;
    } else {
      continue;
    }
    if (!best || candidate < *best) best = candidate;
  }
  if (!best) return Fit::kNone;
  Fit fit = *best == *value ? Fit::kSame : Fit::kMoved;
  *value = *best;
  return fit;
}

// Lets mktime settle a copy of `t`. kSame: `t` is a real time as it stands.
// kMoved: it was not (a day past the month's end, an hour in a DST gap), and
// `t` now holds the settled time with the field under the first one that
// changed restarted. kNone: settling went backwards, failed, or the year is
// past the last one an event can name.
Fit InBounds(struct tm* t, bool utc) {
  if (t->tm_year + 1900 > kMaxYear) return Fit::kNone;
  struct tm s = *t;
  if (Settle(&s, utc) < 0) return Fit::kNone;
  auto order = [](int a, int b) { return a < b ? -1 : a > b ? 1 : 0; };
  int cmp;
  // After a carry into another month the DST flag mktime left in `s` is
  // that of the settled month, not of the restarted one; systemd keeps it,
  // and a January restart with September's flag settles back into December
  // (systemd then gives up: "Infinite loop in calendar calculation", e.g.
  // "*-1/10-7" in Europe/Berlin). Here the restart is settled afresh.
  if ((cmp = order(s.tm_year, t->tm_year)) != 0) {
    s.tm_mon = 0;
    s.tm_isdst = -1;
  } else if ((cmp = order(s.tm_mon, t->tm_mon)) != 0) {
    s.tm_mday = 1;
    s.tm_isdst = -1;
  } else if ((cmp = order(s.tm_mday, t->tm_mday)) != 0) {
    s.tm_hour = 0;
  } else if ((cmp = order(s.tm_hour, t->tm_hour)) != 0) {
    s.tm_min = 0;
  } else if ((cmp = order(s.tm_min, t->tm_min)) != 0) {
    s.tm_sec = 0;
  } else {
    cmp = order(s.tm_sec, t->tm_sec);
  }
  if (cmp < 0) return Fit::kNone;
  if (cmp == 0) return Fit::kSame;
  *t = s;
  return Fit::kMoved;
}

bool WeekdayAllowed(uint8_t weekdays, const struct tm& t, bool utc) {
  if (weekdays == 0) return true;
  struct tm s = t;
  if (Settle(&s, utc) < 0) return false;
  return (weekdays & (1 << ((s.tm_wday + 6) % 7))) != 0;
}

}  // namespace

Result<CalendarEvent> ParseCalendar(std::string_view text) {
  return Parser(text).Parse();
}

std::string Normalized(const CalendarEvent& e) {
  std::string out;
  if (e.weekdays != 0 && e.weekdays != 0x7f) {
    AppendWeekdays(e.weekdays, &out);
    out += ' ';
  }
  AppendList(e.year, 4, false, &out);
  out += '-';
  AppendList(e.month, 2, false, &out);
  out += e.end_of_month ? '~' : '-';
  AppendList(e.day, 2, false, &out);
  out += ' ';
  AppendList(e.hour, 2, false, &out);
  out += ':';
  AppendList(e.minute, 2, false, &out);
  out += ':';
  AppendList(e.second, 2, true, &out);
  if (e.utc) out += " UTC";
  return out;
}

std::optional<int64_t> NextElapse(const CalendarEvent& e,
                                  int64_t after_unix_seconds) {
  if (after_unix_seconds < 0 || after_unix_seconds > kMaxBase)
    return std::nullopt;
  const bool utc = e.utc;
  time_t base = static_cast<time_t>(after_unix_seconds);
  struct tm c {};
  if ((utc ? gmtime_r(&base, &c) : localtime_r(&base, &c)) == nullptr)
    return std::nullopt;
  int64_t usec = 1;  // strictly after: one microsecond past the base
  auto clear_below_day = [&] { c.tm_hour = c.tm_min = c.tm_sec = 0, usec = 0; };
  for (int step = 0; step < kMaxSteps; ++step) {
    Settle(&c, utc);
    c.tm_isdst = -1;  // let mktime decide which side of a DST change

    int64_t v = c.tm_year + 1900;
    Fit fit = Earliest(e.year, 1, nullptr, &v);
    if (fit == Fit::kNone) return std::nullopt;  // no year left
    c.tm_year = static_cast<int>(v - 1900);
    if (fit == Fit::kMoved) {
      c.tm_mon = 0, c.tm_mday = 1;
      clear_below_day();
    }
    if (InBounds(&c, utc) != Fit::kSame) return std::nullopt;

    v = c.tm_mon + 1;
    fit = Earliest(e.month, 1, nullptr, &v);
    if (fit != Fit::kNone) c.tm_mon = static_cast<int>(v - 1);
    if (fit == Fit::kMoved) {
      c.tm_mday = 1;
      clear_below_day();
    }
    Fit bounds = fit == Fit::kNone ? Fit::kNone : InBounds(&c, utc);
    if (bounds == Fit::kNone) {  // no month left this year
      ++c.tm_year;
      c.tm_mon = 0, c.tm_mday = 1;
      clear_below_day();
      continue;
    }
    if (bounds == Fit::kMoved) continue;

    v = c.tm_mday;
    fit = Earliest(e.day, 1, e.end_of_month ? &c : nullptr, &v);
    if (fit != Fit::kNone) c.tm_mday = static_cast<int>(v);
    if (fit == Fit::kMoved) clear_below_day();
    bounds = fit == Fit::kNone ? Fit::kNone : InBounds(&c, utc);
    if (bounds == Fit::kNone) {  // no day left this month
      ++c.tm_mon;
      c.tm_mday = 1;
      clear_below_day();
      continue;
    }
    if (bounds == Fit::kMoved) continue;

    if (!WeekdayAllowed(e.weekdays, c, utc)) {
      ++c.tm_mday;
      clear_below_day();
      continue;
    }

    v = c.tm_hour;
    fit = Earliest(e.hour, 1, nullptr, &v);
    if (fit != Fit::kNone) c.tm_hour = static_cast<int>(v);
    if (fit == Fit::kMoved) c.tm_min = c.tm_sec = 0, usec = 0;
    bounds = fit == Fit::kNone ? Fit::kNone : InBounds(&c, utc);
    if (bounds == Fit::kNone) {  // no hour left this day
      ++c.tm_mday;
      clear_below_day();
      continue;
    }
    if (bounds == Fit::kMoved) continue;  // e.g. the hour fell into a DST gap

    v = c.tm_min;
    fit = Earliest(e.minute, 1, nullptr, &v);
    if (fit != Fit::kNone) c.tm_min = static_cast<int>(v);
    if (fit == Fit::kMoved) c.tm_sec = 0, usec = 0;
    bounds = fit == Fit::kNone ? Fit::kNone : InBounds(&c, utc);
    if (bounds == Fit::kNone) {  // no minute left this hour
      ++c.tm_hour;
      c.tm_min = c.tm_sec = 0, usec = 0;
      continue;
    }
    if (bounds == Fit::kMoved) continue;

    v = c.tm_sec * kUsec + usec;
    fit = Earliest(e.second, kUsec, nullptr, &v);
    if (fit != Fit::kNone) {
      c.tm_sec = static_cast<int>(v / kUsec);
      usec = v % kUsec;
    }
    bounds = fit == Fit::kNone ? Fit::kNone : InBounds(&c, utc);
    if (bounds == Fit::kNone) {  // no second left this minute
      ++c.tm_min;
      c.tm_sec = 0, usec = 0;
      continue;
    }
    if (bounds == Fit::kMoved) continue;

    time_t when = Settle(&c, utc);
    if (when < 0) return std::nullopt;
    return static_cast<int64_t>(when);
  }
  return std::nullopt;
}

}  // namespace haven
