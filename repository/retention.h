// Retention policies for `haven forget`: which snapshots a --keep-* policy
// keeps and why. Pure logic (no repository access), with restic's semantics:
//
//   for each backup name:
//     sort its snapshots newest first
//     for each snapshot, each rule independently:
//       last N        the N newest
//       hourly..yearly N  the newest snapshot of each of the N most recent
//                     local-time buckets (hour, day, ISO week, month, year)
//                     that hold a snapshot
//       within D      newer than (newest in the group - D)
//     kept = protected or kept by any rule; every rule that keeps it is a
//     reason
//
// Snapshot times come from manifests, so they are untrusted: they are parsed
// strictly and a bad one is an error, never a silent "remove".
#ifndef HAVEN_REPOSITORY_RETENTION_H_
#define HAVEN_REPOSITORY_RETENTION_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "base/time.h"

namespace haven::repository {

// Counts are how many snapshots (last) or buckets (hourly..yearly) to keep per
// backup name; 0 turns a rule off. Negative values are rejected.
struct RetentionPolicy {
  int last = 0, hourly = 0, daily = 0, weekly = 0, monthly = 0, yearly = 0;
  // Keep everything newer than (newest in the group - within_seconds); 0: off.
  int64_t within_seconds = 0;

  // True when no rule is set, i.e. the policy would keep everything.
  bool Empty() const;
  // For humans: "keep 7 daily, 4 weekly", "keep 3 last, within 1y6m";
  // "keep everything (no rule)" when Empty().
  std::string Describe() const;
};

struct RetentionItem {
  std::string id;    // snapshot id
  std::string name;  // backup name (VM name); policies apply per name
  // ISO-8601 UTC as Haven writes it: "2026-11-22T20:03:35.123456Z"; the
  // fraction (1 to 9 digits) is optional, the "Z" is required.
  std::string time;
  bool is_protected = false;
};

struct RetentionDecision {
  RetentionItem item;
  bool keep = false;
  // Why it is kept, in this order: "protected", "last",
  // "hourly 2026-11-22 20h", "daily 2026-11-22", "weekly 2026-W47",
  // "monthly 2026-11", "yearly 2026", "within 7d" (or "no rule" when the
  // policy is Empty()). Empty exactly when the snapshot is to be removed.
  std::vector<std::string> reasons;
};

// Decides, per backup name, which snapshots `policy` keeps.
//
// Returns one decision per item, ordered by name, then newest first; equal
// times are ordered by id (the smaller id counts as the newer). Buckets are
// computed in local time, so `TZ` is honoured (tzset() is called here); weeks
// are ISO 8601 weeks ("2026-W53" includes 2027-01-01).
// Errors (nothing decided): InvalidArgument naming the snapshot id and the
// bad value if a time does not parse, or naming the rule if a count or
// within_seconds is negative.
// An Empty() policy keeps everything (reason "no rule"); callers should refuse
// to run one. Protected items are always kept, with reason "protected"; they
// still take part in the rules (a protected snapshot can use up a bucket).
Result<std::vector<RetentionDecision>> ApplyRetention(
    std::vector<RetentionItem> items, const RetentionPolicy& policy);

// Parses a --keep-within duration (untrusted user text) to seconds.
// One or more <digits><unit> with units h (hours), d (days), w (weeks),
// m (months = 30 days; there are no minutes: "90m" is 90 months), y (years =
// 365 days), each unit at most once: "7d", "1y6m", "2d12h".
// Errors: InvalidArgument naming the text if it is empty, has another
// character, a number without unit, a repeated unit, a total of zero, or
// overflows.
Result<int64_t> ParseRetentionDuration(std::string_view text);

// Formats seconds the way ParseRetentionDuration reads them, largest unit
// first without weeks ("1y6m", "7d", "2d12h"); a remainder below an hour is
// shown as "<n>s" (not parseable). "0h" for 0.
std::string FormatRetentionDuration(int64_t seconds);

// Point times are parsed in base/time.h; kept visible here for callers
// that knew them as repository:: functions.
using haven::ParseIsoTime;
using haven::TimeBefore;

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_RETENTION_H_
