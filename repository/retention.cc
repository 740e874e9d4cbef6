// Retention policies (forget): see retention.h.
#include "repository/retention.h"

#include <algorithm>
#include <compare>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <map>
#include <utility>

namespace haven::repository {
namespace {

constexpr int64_t kHour = 3600;
constexpr int64_t kDay = 24 * kHour;

using Instant = IsoInstant;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

struct Parsed {
  RetentionItem item;
  Instant time;
};

// One hourly..yearly rule while walking a group newest first: it keeps a
// snapshot whose bucket differs from the one it kept last, `remaining` times.
struct BucketRule {
  const char* label;   // "daily"
  const char* format;  // strftime format of the bucket, local time
  int remaining;
  std::string last;  // bucket of the snapshot this rule kept last
};

Result<std::string> LocalBucket(int64_t seconds, const char* format) {
  std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm;
  if (localtime_r(&t, &tm) == nullptr) {
    return InvalidArgument("time " + std::to_string(seconds) +
                           " cannot be converted to local time");
  }
  char buf[64];
  size_t n = std::strftime(buf, sizeof buf, format, &tm);
  return std::string(buf, n);
}

Status CheckPolicy(const RetentionPolicy& p) {
  const std::pair<const char*, int64_t> fields[] = {
      {"last", p.last},
      {"hourly", p.hourly},
      {"daily", p.daily},
      {"weekly", p.weekly},
      {"monthly", p.monthly},
      {"yearly", p.yearly},
      {"within", p.within_seconds}};
  for (const auto& [name, value] : fields) {
    if (value < 0) {
      return InvalidArgument("retention policy: keep-" + std::string(name) +
                             " is negative (" + std::to_string(value) + ")");
    }
  }
  return OkStatus();
}

// Decides one group, already sorted newest first.
Status DecideGroup(std::vector<Parsed>& group, const RetentionPolicy& policy,
                   std::vector<RetentionDecision>& out) {
  BucketRule rules[] = {{"hourly", "%Y-%m-%d %Hh", policy.hourly, ""},
                        {"daily", "%Y-%m-%d", policy.daily, ""},
                        {"weekly", "%G-W%V", policy.weekly, ""},
                        {"monthly", "%Y-%m", policy.monthly, ""},
                        {"yearly", "%Y", policy.yearly, ""}};
  const bool empty = policy.Empty();
  const std::string within_reason =
      "within " + FormatRetentionDuration(policy.within_seconds);
  // Saturates: a within longer than all of time keeps everything.
  Instant cutoff = group.front().time;
  if (__builtin_sub_overflow(cutoff.seconds, policy.within_seconds,
                             &cutoff.seconds)) {
    cutoff = {INT64_MIN, 0};
  }
  int last_remaining = policy.last;
  for (Parsed& p : group) {
    RetentionDecision d;
    if (p.item.is_protected) d.reasons.push_back("protected");
    if (empty) d.reasons.push_back("no rule");
    if (last_remaining > 0) {
      --last_remaining;
      d.reasons.push_back("last");
    }
    for (BucketRule& rule : rules) {
      if (rule.remaining <= 0) continue;
      HAVEN_ASSIGN_OR_RETURN(std::string bucket,
                             LocalBucket(p.time.seconds, rule.format));
      if (bucket == rule.last) continue;
      d.reasons.push_back(rule.label + (" " + bucket));
      rule.last = std::move(bucket);
      --rule.remaining;
    }
    if (policy.within_seconds > 0 && p.time >= cutoff) {
      d.reasons.push_back(within_reason);
    }
    d.keep = !d.reasons.empty();
    d.item = std::move(p.item);
    out.push_back(std::move(d));
  }
  return OkStatus();
}

}  // namespace

bool RetentionPolicy::Empty() const {
  return last == 0 && hourly == 0 && daily == 0 && weekly == 0 &&
         monthly == 0 && yearly == 0 && within_seconds == 0;
}

std::string RetentionPolicy::Describe() const {
  if (Empty()) return "keep everything (no rule)";
  const std::pair<const char*, int> counts[] = {
      {"last", last},     {"hourly", hourly},   {"daily", daily},
      {"weekly", weekly}, {"monthly", monthly}, {"yearly", yearly}};
  std::string out;
  for (const auto& [label, n] : counts) {
    if (n == 0) continue;
    out += (out.empty() ? "keep " : ", ") + std::to_string(n) + " " + label;
  }
  if (within_seconds != 0) {
    out += (out.empty() ? "keep " : ", ") + std::string("within ") +
           FormatRetentionDuration(within_seconds);
  }
  return out;
}

Result<std::vector<RetentionDecision>> ApplyRetention(
    std::vector<RetentionItem> items, const RetentionPolicy& policy) {
  HAVEN_RETURN_IF_ERROR(CheckPolicy(policy));
  std::map<std::string, std::vector<Parsed>> groups;
  for (RetentionItem& item : items) {
    Result<Instant> t = ParseIsoInstant(item.time);
    if (!t.ok()) return t.status().WithContext("snapshot " + QuoteUntrusted(item.id));
    std::string name = item.name;
    groups[std::move(name)].push_back({std::move(item), t.value()});
  }
  ::tzset();  // localtime_r need not re-read TZ by itself
  std::vector<RetentionDecision> out;
  out.reserve(items.size());
  for (auto& [name, group] : groups) {
    std::sort(group.begin(), group.end(), [](const Parsed& a, const Parsed& b) {
      if (a.time != b.time) return a.time > b.time;
      return a.item.id < b.item.id;
    });
    HAVEN_RETURN_IF_ERROR(DecideGroup(group, policy, out));
  }
  return out;
}

Result<int64_t> ParseRetentionDuration(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return InvalidArgument("bad duration " + QuoteUntrusted(text) + ": " +
                           std::string(why) +
                           " (want e.g. 7d, 2d12h, 1y6m; units h d w m y)");
  };
  if (text.empty()) return bad("empty");
  int64_t total = 0;
  std::string seen;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t start = pos;
    int64_t n = 0;
    while (pos < text.size() && IsDigit(text[pos])) {
      if (__builtin_mul_overflow(n, 10, &n) ||
          __builtin_add_overflow(n, text[pos] - '0', &n)) {
        return bad("too large");
      }
      ++pos;
    }
    if (pos == start) return bad("expected a number");
    if (pos == text.size()) return bad("number without unit");
    const char unit = text[pos++];
    int64_t scale;
    switch (unit) {
      case 'h':
        scale = kHour;
        break;
      case 'd':
        scale = kDay;
        break;
      case 'w':
        scale = 7 * kDay;
        break;
      case 'm':
        scale = 30 * kDay;
        break;
      case 'y':
        scale = 365 * kDay;
        break;
      default:
        return bad("unknown unit");
    }
    if (seen.find(unit) != std::string::npos) return bad("repeated unit");
    seen += unit;
    if (__builtin_mul_overflow(n, scale, &n) ||
        __builtin_add_overflow(total, n, &total)) {
      return bad("too large");
    }
  }
  if (total == 0) return bad("zero");
  return total;
}

std::string FormatRetentionDuration(int64_t seconds) {
  if (seconds == 0) return "0h";
  const std::pair<int64_t, char> units[] = {
      {365 * kDay, 'y'}, {30 * kDay, 'm'}, {kDay, 'd'}, {kHour, 'h'}, {1, 's'}};
  std::string out = seconds < 0 ? "-" : "";
  // Magnitude as unsigned: -INT64_MIN does not fit an int64_t.
  uint64_t left = seconds < 0 ? 0 - static_cast<uint64_t>(seconds)
                              : static_cast<uint64_t>(seconds);
  for (const auto& [scale, unit] : units) {
    const uint64_t s = static_cast<uint64_t>(scale);
    if (left >= s) {
      out += std::to_string(left / s) + unit;
      left %= s;
    }
  }
  return out;
}

}  // namespace haven::repository
