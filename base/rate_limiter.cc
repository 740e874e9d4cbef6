#include "base/rate_limiter.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "base/time.h"

namespace haven {
namespace {
constexpr double kBurstSeconds = 0.25;
}

RateLimiter::RateLimiter(double bytes_per_second)
    : rate_(bytes_per_second > 0 ? bytes_per_second : 0),
      tokens_(0),
      last_(MonotonicSeconds()) {}

void RateLimiter::Refill(double now) {
  if (rate_ <= 0) {  // no limit: nothing saved up, no debt
    tokens_ = 0;
    last_ = now;
    return;
  }
  tokens_ = std::min(rate_ * kBurstSeconds, tokens_ + (now - last_) * rate_);
  last_ = now;
}

bool RateLimiter::Acquire(uint64_t bytes, const CancelToken& cancel) {
  acquired_.fetch_add(bytes, std::memory_order_relaxed);
  double want = static_cast<double>(bytes);
  while (want > 0) {
    double wait = 0;
    {
      std::lock_guard<std::mutex> l(mu_);
      Refill(MonotonicSeconds());
      if (rate_ <= 0) break;  // no limit
      // Take what the bucket can hold at most, so large reads are paced.
      const double piece = std::min(want, rate_ * kBurstSeconds);
      tokens_ -= piece;  // may go negative: a debt the next callers wait out
      want -= piece;
      if (tokens_ < 0) wait = -tokens_ / rate_;
    }
    // Sleep in short steps, so that a cancel is noticed at once.
    while (wait > 0) {
      if (cancel.cancelled()) return false;
      const double step = std::min(wait, 0.05);
      std::this_thread::sleep_for(std::chrono::duration<double>(step));
      wait -= step;
    }
  }
  return !cancel.cancelled();
}

void RateLimiter::SetRate(double bytes_per_second) {
  std::lock_guard<std::mutex> l(mu_);
  Refill(MonotonicSeconds());
  rate_ = bytes_per_second > 0 ? bytes_per_second : 0;
}

double RateLimiter::rate() const {
  std::lock_guard<std::mutex> l(mu_);
  return rate_;
}

}  // namespace haven
