// base/time.h (the one time formatter and point-time parsing) and
// base/glob.h (the one glob rule).
#include "base/time.h"

#include <cstdlib>
#include <ctime>

#include "base/glob.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/test_util.h"

namespace haven {
namespace {

using ::haven::testing_util::IsOk;
using ::haven::testing_util::StatusIs;
using ::testing::HasSubstr;

constexpr int64_t kNs = 1000000000;
// 2021-03-04T05:06:07Z
constexpr int64_t kT = 1614834367;

class TimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tz = std::getenv("TZ");
    had_tz_ = tz != nullptr;
    if (had_tz_) old_tz_ = tz;
    setenv("TZ", "CET-1", 1);  // UTC+1, no DST rule
    tzset();
  }
  void TearDown() override {
    if (had_tz_)
      setenv("TZ", old_tz_.c_str(), 1);
    else
      unsetenv("TZ");
    tzset();
  }
  bool had_tz_ = false;
  std::string old_tz_;
};

TEST_F(TimeTest, FormatsUtcForJsonAndLocalForPeople) {
  EXPECT_EQ(FormatTime(kT * kNs + 5, TimeStyle::kRfc3339Utc),
            "2021-03-04T05:06:07Z");
  EXPECT_EQ(FormatTime(kT * kNs, TimeStyle::kUtcSpaced),
            "2021-03-04 05:06:07");
  EXPECT_EQ(FormatTime(kT * kNs, TimeStyle::kLocal), "2021-03-04 06:06:07");
  EXPECT_EQ(FormatTime(kT * kNs, TimeStyle::kLocalMinutes),
            "2021-03-04 06:06");
  // Before the epoch: the second that holds the instant.
  EXPECT_EQ(FormatTime(-1, TimeStyle::kRfc3339Utc), "1969-12-31T23:59:59Z");
}

TEST_F(TimeTest, PointTimesForPeopleAreLocal) {
  EXPECT_EQ(PointTimeForPeople("2021-03-04T05:06:07.123456Z"),
            "2021-03-04 06:06:07");
  EXPECT_EQ(PointTimeForPeople("garbage"), "garbage");
}

TEST(IsoTimeTest, ParsesHavensFormatOnly) {
  auto t = ParseIsoInstant("2021-03-04T05:06:07.5Z");
  ASSERT_THAT(t, IsOk());
  EXPECT_EQ(t->seconds, kT);
  EXPECT_EQ(t->nanos, 500000000);
  EXPECT_THAT(ParseIsoTime("2021-03-04 05:06:07"),
              StatusIs(Code::kInvalidArgument, HasSubstr("bad time")));
  EXPECT_TRUE(TimeBefore("2021-03-04T05:06:07Z", "2021-03-04T05:06:07.5Z"));
  EXPECT_FALSE(TimeBefore("2021-03-04T05:06:07.5Z", "2021-03-04T05:06:07Z"));
}

TEST(GlobTest, NameOrPathRule) {
  EXPECT_TRUE(MatchesGlob("test-*", "test-a"));
  EXPECT_FALSE(MatchesGlob("test-*", "web1"));
  EXPECT_TRUE(MatchesGlob("*.log", "/var/log/syslog.log"));
  EXPECT_TRUE(MatchesGlob("/var/*/x", "/var/log/x"));
  EXPECT_FALSE(MatchesGlob("/var/*", "/var/log/x"));  // '*' stops at '/'
  EXPECT_TRUE(MatchesGlob("db[12]", "db2"));
}

}  // namespace
}  // namespace haven
