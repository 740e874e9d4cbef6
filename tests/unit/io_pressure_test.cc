// base/io_pressure: reading PSI text, the adaptive policy step by step, and
// the governor thread driving a real RateLimiter from a pressure file the
// test writes (fault injection: the host's real pressure is not ours to set;
// tests/integration/throttle_test.sh loads the real disk).
#include "base/io_pressure.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "base/time.h"
#include "tests/unit/test_util.h"

namespace haven {
namespace {

using ::haven::testing_util::StatusIs;
using ::haven::testing_util::TempDir;
using ::testing::HasSubstr;

TEST(ParsePsiTest, ReadsTheSomeTotal) {
  auto v = ParsePsiSomeTotal(
      "some avg10=0.08 avg60=3.70 avg300=3.72 total=484824973\n"
      "full avg10=0.08 avg60=2.81 avg300=2.61 total=193516697\n");
  ASSERT_TRUE(v.ok()) << v.status().message();
  EXPECT_EQ(*v, 484824973u);
}

TEST(ParsePsiTest, RefusesWhatIsNotPsi) {
  EXPECT_THAT(ParsePsiSomeTotal(""),
              StatusIs(Code::kInvalidArgument, ::testing::_));
  EXPECT_THAT(ParsePsiSomeTotal("full avg10=0 total=5\n"),
              StatusIs(Code::kInvalidArgument, HasSubstr("full")));
  EXPECT_THAT(ParsePsiSomeTotal("some avg10=0.00 total=\n"),
              StatusIs(Code::kInvalidArgument, ::testing::_));
  EXPECT_THAT(ParsePsiSomeTotal("some avg10=0.00\nfull total=5\n"),
              StatusIs(Code::kInvalidArgument, ::testing::_));
  // 21 digits do not fit in 64 bits.
  EXPECT_THAT(ParsePsiSomeTotal("some total=123456789012345678901\n"),
              StatusIs(Code::kInvalidArgument, ::testing::_));
}

TEST(NextRateTest, HalvesUnderPressureAndGrowsBackToTheCeiling) {
  AdaptiveOptions o;
  o.ceiling = 40e6;
  o.floor = 1e6;
  RateState s;
  s.rate = o.ceiling;
  EXPECT_DOUBLE_EQ(NextRate(s, 40e6, 0.05, o), 40e6);  // quiet: unchanged
  EXPECT_DOUBLE_EQ(NextRate(s, 40e6, 0.80, o), 20e6);
  // It reads slower than allowed (the guest's disk is the bottleneck):
  // halve from what it actually read.
  EXPECT_DOUBLE_EQ(NextRate(s, 8e6, 0.80, o), 4e6);
  EXPECT_DOUBLE_EQ(NextRate(s, 4e6, 0.80, o), 2e6);
  EXPECT_DOUBLE_EQ(NextRate(s, 2e6, 0.80, o), 1e6);
  EXPECT_DOUBLE_EQ(NextRate(s, 1e6, 0.90, o), 1e6);  // never below the floor
  EXPECT_DOUBLE_EQ(NextRate(s, 1e6, 0.15, o), 1e6);  // between: unchanged
  double r = 0;
  for (int i = 0; i < 20; ++i) r = NextRate(s, r, 0.02, o);
  EXPECT_DOUBLE_EQ(r, 40e6);  // back up, never past --limit-read
}

TEST(NextRateTest, WithoutACeilingGoesBackToNoLimit) {
  AdaptiveOptions o;
  RateState s;  // unlimited
  EXPECT_DOUBLE_EQ(NextRate(s, 100e6, 0.01, o), 0);
  EXPECT_DOUBLE_EQ(s.peak, 100e6);
  EXPECT_DOUBLE_EQ(NextRate(s, 90e6, 0.50, o), 45e6);  // from what it read
  EXPECT_DOUBLE_EQ(NextRate(s, 45e6, 0.50, o), 22.5e6);
  EXPECT_DOUBLE_EQ(NextRate(s, 22e6, 0.01, o), 33.75e6);
  EXPECT_DOUBLE_EQ(NextRate(s, 33e6, 0.01, o), 50.625e6);
  EXPECT_DOUBLE_EQ(NextRate(s, 50e6, 0.01, o), 75.9375e6);
  // 1.5 x 75.9 passes the 100 MB/s seen unthrottled: the limit goes.
  EXPECT_DOUBLE_EQ(NextRate(s, 75e6, 0.01, o), 0);
}

void WritePsi(const std::string& path, uint64_t total) {
  std::ofstream(path + ".tmp")
      << "some avg10=0.00 avg60=0.00 avg300=0.00 total=" << total
      << "\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
  std::rename((path + ".tmp").c_str(), path.c_str());
}

TEST(IoPressureGovernorTest, SlowsTheBudgetDownAndUpAgain) {
  TempDir dir;
  AdaptiveOptions o;
  o.psi_path = dir.path() + "/io";
  o.interval = 0.05;
  o.ceiling = 64e6;
  o.floor = 1e6;
  WritePsi(o.psi_path, 0);
  auto limiter = std::make_shared<RateLimiter>(o.ceiling);
  std::vector<std::string> lines;
  std::mutex mu;
  auto g = IoPressureGovernor::Start(limiter, o, [&](const std::string& l) {
    std::lock_guard<std::mutex> lock(mu);
    lines.push_back(l);
  });
  ASSERT_TRUE(g.ok()) << g.status().message();
  // Stalled all the time: the counter grows as fast as the clock.
  const double start = MonotonicSeconds();
  while (MonotonicSeconds() - start < 0.6) {
    WritePsi(o.psi_path,
             static_cast<uint64_t>((MonotonicSeconds() - start) * 1e6));
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_LE(limiter->rate(), 8e6);  // several halvings of 64
  EXPECT_GE((*g)->slowdowns(), 3);
  EXPECT_GT((*g)->highest_pressure(), 0.5);
  // Quiet again: the counter stands still.
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  EXPECT_DOUBLE_EQ(limiter->rate(), 64e6);
  g->reset();
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_FALSE(lines.empty());
  EXPECT_THAT(lines.front(), HasSubstr("reading at most 32.0 MB/s"));
  EXPECT_THAT(lines.back(), HasSubstr("raised to 64.0 MB/s"));
}

TEST(IoPressureGovernorTest, NoPsiIsUnavailable) {
  AdaptiveOptions o;
  o.psi_path = "/nonexistent/pressure/io";
  auto g =
      IoPressureGovernor::Start(std::make_shared<RateLimiter>(0), o, nullptr);
  EXPECT_THAT(g, StatusIs(Code::kUnavailable, HasSubstr("pressure")));
}

TEST(RateLimiterTest, ZeroIsNoLimitAndCountsWhatWasTaken) {
  RateLimiter limit(0);
  const double start = MonotonicSeconds();
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(limit.Acquire(10 << 20));
  EXPECT_LT(MonotonicSeconds() - start, 0.5);
  EXPECT_EQ(limit.acquired(), 100ull * (10 << 20));
  limit.SetRate(1e6);  // now limited: 0.5 MB takes ~0.25 s past the burst
  const double t = MonotonicSeconds();
  EXPECT_TRUE(limit.Acquire(500000));
  EXPECT_GE(MonotonicSeconds() - t, 0.2);
}

}  // namespace
}  // namespace haven
