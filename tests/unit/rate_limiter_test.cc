// base/rate_limiter: one budget shared by threads, paced large requests,
// rate changes and cancellation.
#include "base/rate_limiter.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "base/time.h"

namespace haven {
namespace {

TEST(RateLimiterTest, ThreadsShareOneBudget) {
  // 4 threads x 5 requests of 100 kB under 2 MB/s: 2 MB take ~1 s in all,
  // not 0.25 s as four separate budgets would.
  RateLimiter limit(2e6);
  const double start = MonotonicSeconds();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 5; ++i) EXPECT_TRUE(limit.Acquire(100000));
    });
  for (auto& t : threads) t.join();
  const double took = MonotonicSeconds() - start;
  EXPECT_GE(took, 0.9);  // 2 MB at 2 MB/s, less nothing saved up front
  EXPECT_LT(took, 3.0);  // generous: a loaded CI machine
}

TEST(RateLimiterTest, ALargeRequestIsPaced) {
  RateLimiter limit(4e6);
  const double start = MonotonicSeconds();
  EXPECT_TRUE(limit.Acquire(2000000));  // more than the 1 MB bucket
  EXPECT_GE(MonotonicSeconds() - start, 0.45);
}

TEST(RateLimiterTest, CancelEndsTheWait) {
  RateLimiter limit(1000);  // 1 kB/s: 1 MB would take 1000 s
  CancelToken cancel;
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    cancel.Cancel();
  });
  const double start = MonotonicSeconds();
  EXPECT_FALSE(limit.Acquire(1000000, cancel));
  EXPECT_LT(MonotonicSeconds() - start, 2.0);
  stopper.join();
}

TEST(RateLimiterTest, SetRateTakesEffect) {
  RateLimiter limit(1000);
  limit.SetRate(8e6);
  EXPECT_EQ(limit.rate(), 8e6);
  const double start = MonotonicSeconds();
  EXPECT_TRUE(limit.Acquire(1000000));
  EXPECT_LT(MonotonicSeconds() - start, 1.0);  // not 1000 s
}

}  // namespace
}  // namespace haven
