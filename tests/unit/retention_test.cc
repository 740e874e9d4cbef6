// Tests for repository/retention.h: which snapshots `haven forget --keep-*`
// keeps, and the strict parsing of times and durations it relies on.
#include "repository/retention.h"

#include <stdlib.h>

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/test_util.h"

namespace haven::repository {
namespace {

using ::haven::testing_util::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int64_t kHour = 3600;
constexpr int64_t kDay = 24 * kHour;

// Buckets are computed in local time: pin TZ to UTC for every test and put
// back whatever the process had afterwards.
class RetentionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const char* tz = ::getenv("TZ")) saved_tz_ = tz;
    SetTz("UTC");
  }
  void TearDown() override {
    if (saved_tz_) {
      ::setenv("TZ", saved_tz_->c_str(), 1);
    } else {
      ::unsetenv("TZ");
    }
    ::tzset();
  }
  static void SetTz(const char* tz) {
    ::setenv("TZ", tz, 1);
    ::tzset();
  }

 private:
  std::optional<std::string> saved_tz_;
};

RetentionItem Item(std::string id, std::string time, std::string name = "vm",
                   bool is_protected = false) {
  return RetentionItem{std::move(id), std::move(name), std::move(time),
                       is_protected};
}

// One line per decision, "id: reason, reason" or "id: -" when removed, so a
// test states the whole outcome (order, verdicts and reasons) at once.
std::vector<std::string> Summary(const std::vector<RetentionDecision>& ds) {
  std::vector<std::string> out;
  for (const RetentionDecision& d : ds) {
    EXPECT_EQ(d.keep, !d.reasons.empty()) << d.item.id;
    std::string line = d.item.id + ":";
    if (d.reasons.empty()) line += " -";
    for (size_t i = 0; i < d.reasons.size(); ++i) {
      line += (i == 0 ? " " : ", ") + d.reasons[i];
    }
    out.push_back(line);
  }
  return out;
}

// Runs ApplyRetention and summarises it; an error becomes a failure.
std::vector<std::string> Decide(std::vector<RetentionItem> items,
                                const RetentionPolicy& policy) {
  Result<std::vector<RetentionDecision>> r =
      ApplyRetention(std::move(items), policy);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  if (!r.ok()) return {};
  return Summary(r.value());
}

TEST_F(RetentionTest, ThirtyDailyWithKeepDaily7AndKeepWeekly4) {
  // One snapshot a day at noon UTC, 2026-11-01 .. 2026-11-30, given oldest
  // first so the function has to sort. ISO weeks (date +%G-W%V):
  //   11-30 Mon        W49
  //   11-23 .. 11-29   W48
  //   11-16 .. 11-22   W47
  //   11-09 .. 11-15   W46
  //   11-02 .. 11-08   W45
  //   11-01 Sun        W44
  // Newest first, daily 7 keeps 11-30 .. 11-24. Weekly 4 keeps the newest of
  // the four newest weeks: 11-30 (W49), 11-29 (W48), 11-22 (W47), 11-15 (W46).
  // Kept: 30, 29, 28, 27, 26, 25, 24, 22, 15; the other 21 are removed.
  std::vector<RetentionItem> items;
  for (int day = 1; day <= 30; ++day) {
    char id[16], time[48];
    std::snprintf(id, sizeof id, "d%02d", day);
    std::snprintf(time, sizeof time, "2026-11-%02dT12:00:00.000000Z", day);
    items.push_back(Item(id, time));
  }
  RetentionPolicy policy;
  policy.daily = 7;
  policy.weekly = 4;
  std::vector<std::string> expected = {
      "d30: daily 2026-11-30, weekly 2026-W49",
      "d29: daily 2026-11-29, weekly 2026-W48",
      "d28: daily 2026-11-28",
      "d27: daily 2026-11-27",
      "d26: daily 2026-11-26",
      "d25: daily 2026-11-25",
      "d24: daily 2026-11-24",
      "d23: -",
      "d22: weekly 2026-W47",
      "d21: -",
      "d20: -",
      "d19: -",
      "d18: -",
      "d17: -",
      "d16: -",
      "d15: weekly 2026-W46",
  };
  for (int day = 14; day >= 1; --day) {
    char line[24];
    std::snprintf(line, sizeof line, "d%02d: -", day);
    expected.push_back(line);
  }
  EXPECT_EQ(Decide(items, policy), expected);
}

TEST_F(RetentionTest, KeepLastKeepsTheNewestN) {
  RetentionPolicy policy;
  policy.last = 2;
  EXPECT_THAT(
      Decide(
          {Item("c", "2026-03-01T00:00:00Z"), Item("e", "2026-05-01T00:00:00Z"),
           Item("a", "2026-01-01T00:00:00Z"), Item("d", "2026-04-01T00:00:00Z"),
           Item("b", "2026-02-01T00:00:00Z")},
          policy),
      ElementsAre("e: last", "d: last", "c: -", "b: -", "a: -"));
}

TEST_F(RetentionTest, FractionsOrderSnapshotsAndEqualTimesOrderById) {
  // Same second: the fraction decides. Same instant: the smaller id is taken
  // as the newer, whatever order the input came in.
  RetentionPolicy policy;
  policy.last = 2;
  EXPECT_THAT(Decide({Item("early", "2026-01-01T00:00:00.1Z"),
                      Item("tie-b", "2026-01-01T00:00:00.900Z"),
                      Item("tie-a", "2026-01-01T00:00:00.9Z"),
                      Item("late", "2026-01-01T00:00:00.95Z")},
                     policy),
              ElementsAre("late: last", "tie-a: last", "tie-b: -", "early: -"));
}

TEST_F(RetentionTest, HourlyKeepsTheNewestOfEachHour) {
  std::vector<RetentionItem> items = {
      Item("10:05", "2026-11-22T10:05:00Z"),
      Item("10:59.1", "2026-11-22T10:59:59.100000Z"),
      Item("10:59.9", "2026-11-22T10:59:59.900000Z"),
      Item("10:40", "2026-11-22T10:40:00Z"),
      Item("11:00", "2026-11-22T11:00:00Z"),
      Item("11:30", "2026-11-22T11:30:00Z"),
      Item("12:15", "2026-11-22T12:15:00Z"),
      Item("09:00", "2026-11-22T09:00:00Z"),
  };
  RetentionPolicy policy;
  policy.hourly = 3;
  // Three hours with snapshots are used up by 12h, 11h and 10h; 09h is the
  // fourth and goes.
  EXPECT_THAT(Decide(items, policy),
              ElementsAre("12:15: hourly 2026-11-22 12h",
                          "11:30: hourly 2026-11-22 11h", "11:00: -",
                          "10:59.9: hourly 2026-11-22 10h", "10:59.1: -",
                          "10:40: -", "10:05: -", "09:00: -"));
}

TEST_F(RetentionTest, MonthlyAndYearlyAcrossAYearBoundary) {
  std::vector<RetentionItem> items = {
      Item("2025-11-15", "2025-11-15T08:00:00Z"),
      Item("2025-12-01", "2025-12-01T08:00:00Z"),
      Item("2025-12-31", "2025-12-31T23:00:00Z"),
      Item("2026-01-01", "2026-01-01T01:00:00Z"),
      Item("2026-01-20", "2026-01-20T08:00:00Z"),
      Item("2026-02-10", "2026-02-10T08:00:00Z"),
  };
  RetentionPolicy policy;
  policy.monthly = 3;
  policy.yearly = 2;
  // Monthly 3: newest of 2026-02, 2026-01, 2025-12. Yearly 2: newest of 2026
  // and of 2025, which is the last hour of 2025-12-31, not 2025-12-01.
  EXPECT_THAT(Decide(items, policy),
              ElementsAre("2026-02-10: monthly 2026-02, yearly 2026",
                          "2026-01-20: monthly 2026-01", "2026-01-01: -",
                          "2025-12-31: monthly 2025-12, yearly 2025",
                          "2025-12-01: -", "2025-11-15: -"));
}

TEST_F(RetentionTest, WeeklyUsesIsoWeeksAcrossAYearBoundary) {
  // `date -d D +%a\ %G-W%V`: 2026-12-27 Sun 2026-W52; 2026-12-28 Mon,
  // 2026-12-31 Thu, 2027-01-01 Fri, 2027-01-03 Sun are all 2026-W53;
  // 2027-01-04 Mon 2027-W01. With calendar years (%Y-W%V) 2027-01-01 and
  // 2027-01-03 would fall in "2027-W53", a bucket apart from 2026-12-31.
  std::vector<RetentionItem> items = {
      Item("12-27", "2026-12-27T12:00:00Z"),
      Item("12-28", "2026-12-28T12:00:00Z"),
      Item("12-31", "2026-12-31T12:00:00Z"),
      Item("01-01", "2027-01-01T12:00:00Z"),
      Item("01-03", "2027-01-03T12:00:00Z"),
      Item("01-04", "2027-01-04T12:00:00Z"),
  };
  RetentionPolicy policy;
  policy.weekly = 3;
  EXPECT_THAT(Decide(items, policy),
              ElementsAre("01-04: weekly 2027-W01", "01-03: weekly 2026-W53",
                          "01-01: -", "12-31: -", "12-28: -",
                          "12-27: weekly 2026-W52"));
}

TEST_F(RetentionTest, NamesAreDecidedIndependentlyAndOrderedByName) {
  // vm-b's snapshots are all older than vm-a's: keep-last and keep-within
  // still keep vm-b's newest, and within counts from vm-b's own newest (b2 is
  // 18 hours before b3, b1 30 hours).
  std::vector<RetentionItem> items = {
      Item("b1", "2020-01-01T00:00:00Z", "vm-b"),
      Item("a1", "2026-01-01T00:00:00Z", "vm-a"),
      Item("b2", "2020-01-01T12:00:00Z", "vm-b"),
      Item("a2", "2026-01-02T00:00:00Z", "vm-a"),
      Item("b3", "2020-01-02T06:00:00Z", "vm-b"),
      Item("a3", "2026-01-03T00:00:00Z", "vm-a"),
  };
  RetentionPolicy policy;
  policy.last = 1;
  policy.within_seconds = kDay;
  EXPECT_THAT(Decide(items, policy),
              ElementsAre("a3: last, within 1d", "a2: within 1d", "a1: -",
                          "b3: last, within 1d", "b2: within 1d", "b1: -"));
}

TEST_F(RetentionTest, ProtectedIsAlwaysKeptAndStillTakesPartInRules) {
  std::vector<RetentionItem> items = {
      Item("old", "2026-01-01T00:00:00Z", "vm", /*is_protected=*/true),
      Item("mid", "2026-01-02T00:00:00Z"),
      Item("new", "2026-01-03T00:00:00Z", "vm", /*is_protected=*/true),
  };
  RetentionPolicy policy;
  policy.last = 1;
  EXPECT_THAT(Decide(items, policy),
              ElementsAre("new: protected, last", "mid: -", "old: protected"));
}

TEST_F(RetentionTest, KeepWithinCountsFromTheNewestInTheGroup) {
  // Newest 2001-06-30T12:00Z, within 7d: the cutoff is 2001-06-23T12:00:00Z
  // exactly, kept inclusively; a microsecond earlier is removed. The dates
  // are long past, so the cutoff cannot come from the wall clock.
  std::vector<RetentionItem> items = {
      Item("newest", "2001-06-30T12:00:00Z"),
      Item("day3", "2001-06-27T00:00:00Z"),
      Item("at-cutoff", "2001-06-23T12:00:00Z"),
      Item("just-before", "2001-06-23T11:59:59.999999Z"),
      Item("old", "2001-06-01T00:00:00Z"),
  };
  RetentionPolicy policy;
  policy.within_seconds = 7 * kDay;
  EXPECT_THAT(Decide(items, policy),
              ElementsAre("newest: within 7d", "day3: within 7d",
                          "at-cutoff: within 7d", "just-before: -", "old: -"));
}

TEST_F(RetentionTest, HugeKeepWithinKeepsEverythingInsteadOfOverflowing) {
  // With the newest before the epoch, newest - within underflows int64; the
  // cutoff must saturate rather than wrap or stop at the epoch.
  RetentionPolicy policy;
  policy.within_seconds = INT64_MAX;
  Result<std::vector<RetentionDecision>> r =
      ApplyRetention({Item("new", "1969-01-01T00:00:00Z"),
                      Item("old", "1900-01-01T00:00:00Z")},
                     policy);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r.value().size(), 2u);
  EXPECT_TRUE(r.value()[0].keep);
  EXPECT_EQ(r.value()[1].item.id, "old");
  EXPECT_TRUE(r.value()[1].keep);
}

TEST_F(RetentionTest, RulesCombineAndListEveryReason) {
  std::vector<RetentionItem> items = {
      Item("a", "2026-11-21T10:00:00Z"),
      Item("b", "2026-11-22T09:00:00Z"),
      Item("c", "2026-11-22T20:00:00Z", "vm", /*is_protected=*/true),
  };
  RetentionPolicy policy;
  policy.last = 1;
  policy.hourly = 1;
  policy.daily = 2;
  policy.weekly = 1;
  policy.monthly = 1;
  policy.yearly = 1;
  policy.within_seconds = 12 * kHour;
  EXPECT_THAT(
      Decide(items, policy),
      ElementsAre("c: protected, last, hourly 2026-11-22 20h, daily 2026-11-22,"
                  " weekly 2026-W47, monthly 2026-11, yearly 2026, within 12h",
                  "b: within 12h", "a: daily 2026-11-21"));
}

TEST_F(RetentionTest, EmptyPolicyKeepsEverything) {
  RetentionPolicy policy;
  EXPECT_TRUE(policy.Empty());
  EXPECT_THAT(Decide({Item("a", "2026-01-01T00:00:00Z"),
                      Item("b", "2026-01-02T00:00:00Z", "vm", true)},
                     policy),
              ElementsAre("b: protected, no rule", "a: no rule"));
}

TEST_F(RetentionTest, NoItemsNoDecisions) {
  RetentionPolicy policy;
  policy.last = 1;
  Result<std::vector<RetentionDecision>> r = ApplyRetention({}, policy);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r.value().empty());
}

TEST_F(RetentionTest, BadTimeIsAnErrorNamingTheSnapshotAndTheValue) {
  RetentionPolicy policy;
  policy.last = 1;
  EXPECT_THAT(ApplyRetention({Item("good", "2026-01-01T00:00:00Z"),
                              Item("snap-bad", "2026-13-01T00:00:00Z")},
                             policy),
              StatusIs(Code::kInvalidArgument,
                       AllOf(HasSubstr("snap-bad"),
                             HasSubstr("\"2026-13-01T00:00:00Z\""))));
}

TEST_F(RetentionTest, NegativeCountsAreRejected) {
  RetentionPolicy policy;
  policy.daily = -1;
  EXPECT_THAT(ApplyRetention({Item("a", "2026-01-01T00:00:00Z")}, policy),
              StatusIs(Code::kInvalidArgument, HasSubstr("keep-daily")));
  policy = RetentionPolicy();
  policy.within_seconds = -kDay;
  EXPECT_THAT(ApplyRetention({Item("a", "2026-01-01T00:00:00Z")}, policy),
              StatusIs(Code::kInvalidArgument, HasSubstr("keep-within")));
}

TEST_F(RetentionTest, DayBucketsFollowTheLocalTimeZone) {
  // 2026-11-22T02:00Z is 2026-11-21 21:00 EST and 2026-11-21T23:00Z is
  // 18:00 EST: two days in UTC, one day in New York.
  std::vector<RetentionItem> items = {
      Item("late", "2026-11-22T02:00:00Z"),
      Item("early", "2026-11-21T23:00:00Z"),
  };
  RetentionPolicy policy;
  policy.daily = 2;
  EXPECT_THAT(Decide(items, policy),
              ElementsAre("late: daily 2026-11-22", "early: daily 2026-11-21"));
  SetTz("America/New_York");
  EXPECT_THAT(Decide(items, policy),
              ElementsAre("late: daily 2026-11-21", "early: -"));
}

TEST_F(RetentionTest, ParsesDurations) {
  struct Case {
    const char* text;
    int64_t seconds;
  } cases[] = {
      {"1h", kHour},
      {"24h", kDay},
      {"7d", 7 * kDay},
      {"1w", 7 * kDay},
      {"1m", 30 * kDay},
      {"1y", 365 * kDay},
      {"2d12h", 2 * kDay + 12 * kHour},
      {"1y6m", 365 * kDay + 180 * kDay},
      {"1y2m3w4d5h", 365 * kDay + 60 * kDay + 21 * kDay + 4 * kDay + 5 * kHour},
      {"007d", 7 * kDay},
      {"90m", 90 * 30 * kDay},  // months: there are no minutes
  };
  for (const Case& c : cases) {
    Result<int64_t> r = ParseRetentionDuration(c.text);
    ASSERT_TRUE(r.ok()) << c.text << ": " << r.status().ToString();
    EXPECT_EQ(r.value(), c.seconds) << c.text;
  }
}

TEST_F(RetentionTest, RejectsBadDurationsNamingTheText) {
  const char* bad[] = {
      "",
      "7",
      "d",
      "7x",
      "7D",
      "-1d",
      "+1d",
      "1.5d",
      " 7d",
      "7d ",
      "7 d",
      "1d1d",
      "0d",
      "0y0h",
      "7dd",
      "d7",
      "7s",
      "1m30s",
      "99999999999999999999h",
      "9223372036854775807h",
      "25000000000000y",
  };
  for (const char* text : bad) {
    EXPECT_THAT(ParseRetentionDuration(text),
                StatusIs(Code::kInvalidArgument,
                         HasSubstr("\"" + std::string(text) + "\"")))
        << "'" << text << "'";
  }
}

TEST_F(RetentionTest, FormatsDurationsTheWayTheyParse) {
  EXPECT_EQ(FormatRetentionDuration(7 * kDay), "7d");
  EXPECT_EQ(FormatRetentionDuration(2 * kDay + 12 * kHour), "2d12h");
  EXPECT_EQ(FormatRetentionDuration(365 * kDay + 180 * kDay), "1y6m");
  EXPECT_EQ(FormatRetentionDuration(kHour + 5), "1h5s");
  EXPECT_EQ(FormatRetentionDuration(0), "0h");
  for (const char* text : {"1h", "3d", "1y6m", "2y1m4d23h"}) {
    Result<int64_t> r = ParseRetentionDuration(text);
    ASSERT_TRUE(r.ok()) << text;
    EXPECT_EQ(FormatRetentionDuration(r.value()), text);
  }
}

TEST_F(RetentionTest, DescribesPolicies) {
  RetentionPolicy policy;
  EXPECT_EQ(policy.Describe(), "keep everything (no rule)");
  policy.daily = 7;
  policy.weekly = 4;
  EXPECT_FALSE(policy.Empty());
  EXPECT_EQ(policy.Describe(), "keep 7 daily, 4 weekly");
  policy = RetentionPolicy{3, 24, 7, 4, 12, 2, 365 * kDay + 180 * kDay};
  EXPECT_EQ(policy.Describe(),
            "keep 3 last, 24 hourly, 7 daily, 4 weekly, 12 monthly, 2 yearly,"
            " within 1y6m");
  policy = RetentionPolicy();
  policy.within_seconds = kDay;
  EXPECT_FALSE(policy.Empty());
  EXPECT_EQ(policy.Describe(), "keep within 1d");
}

TEST_F(RetentionTest, ParsesHavenTimes) {
  struct Case {
    const char* text;
    int64_t seconds;
  } cases[] = {
      {"1970-01-01T00:00:00Z", 0},
      {"1969-12-31T23:59:59Z", -1},
      {"2026-11-22T20:03:35Z", 1795377815},
      {"2026-11-22T20:03:35.123456Z", 1795377815},  // fraction dropped
      {"2026-11-22T20:03:35.999999999Z", 1795377815},
      {"2000-02-29T12:00:00Z", 951825600},  // 2000 is a leap year
      {"9999-12-31T23:59:59Z", 253402300799},
  };
  for (const Case& c : cases) {
    Result<int64_t> r = ParseIsoTime(c.text);
    ASSERT_TRUE(r.ok()) << c.text << ": " << r.status().ToString();
    EXPECT_EQ(r.value(), c.seconds) << c.text;
  }
}

TEST_F(RetentionTest, RejectsBadTimesNamingTheText) {
  const char* bad[] = {
      "2026-13-01T00:00:00Z",             // month 13
      "2026-00-01T00:00:00Z",             // month 0
      "2026-11-00T00:00:00Z",             // day 0
      "2026-11-31T00:00:00Z",             // November has 30 days
      "2026-02-29T00:00:00Z",             // 2026 is not a leap year
      "1900-02-29T00:00:00Z",             // nor is 1900
      "2026-11-22T24:00:00Z",             // hour 24
      "2026-11-22T20:60:00Z",             // minute 60
      "2026-11-22T20:03:60Z",             // no leap seconds
      "garbage",                          //
      "",                                 //
      "2026-11-22T20:03:35",              // missing Z
      "2026-11-22T20:03:35.123456",       // missing Z after a fraction
      "2026-11-22T20:03:35Zjunk",         // trailing junk
      "2026-11-22T20:03:35.123456Z ",     // trailing space
      " 2026-11-22T20:03:35Z",            // leading space
      "2026-11-22T20:03:35z",             // lower-case z
      "2026-11-22t20:03:35Z",             // lower-case t
      "2026-11-22 20:03:35Z",             // space for T
      "2026-11-22T20:03:35+00:00",        // offsets are not Haven's
      "2026-11-22T20:03:35.Z",            // empty fraction
      "2026-11-22T20:03:35.1234567890Z",  // fraction over 9 digits
      "2026-11-22T20:03:35.12a4Z",        // non-digit in fraction
      "2026-1-22T20:03:35Z",              // short month
      "2026-11-22T20:3:35Z",              // short minute
      "+026-11-22T20:03:35Z",             // sign in the year
      "2026-11-22T20:03:-5Z",             // sign in the seconds
      "20261-11-22T20:03:35Z",            // five-digit year
      "2026/11/22T20:03:35Z",             // wrong separators
  };
  for (const char* text : bad) {
    EXPECT_THAT(ParseIsoTime(text),
                StatusIs(Code::kInvalidArgument,
                         HasSubstr("\"" + std::string(text) + "\"")))
        << "'" << text << "'";
  }
  // A NUL or control byte is escaped in the message, not copied raw.
  std::string nul("2026-11-22T20:03:35\0Z", 21);
  EXPECT_THAT(ParseIsoTime(nul),
              StatusIs(Code::kInvalidArgument, HasSubstr("35\\x00Z\"")));
}

}  // namespace
}  // namespace haven::repository
