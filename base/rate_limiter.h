// A read-rate limit shared by every reader of a job: the disks of one VM
// and the VMs of a host job read in parallel draw from one budget, so the
// total stays at the limit (`haven backup --limit-read`).
//
// A token bucket: tokens (bytes) accrue at `bytes_per_second`, up to one
// quarter second's worth; Acquire(n) takes n tokens, sleeping until they
// are there. A request larger than the bucket is taken in pieces, so a 4 MiB
// read under a 1 MB/s limit takes about 4 s. Thread-safe. Sleeps end early
// when `cancel` is cancelled (Acquire then returns false).
#ifndef HAVEN_BASE_RATE_LIMITER_H_
#define HAVEN_BASE_RATE_LIMITER_H_

#include <cstdint>
#include <mutex>

#include "base/progress.h"

namespace haven {

class RateLimiter {
 public:
  // bytes_per_second > 0.
  explicit RateLimiter(double bytes_per_second);

  // Waits until `bytes` may be read. False if `cancel` was cancelled while
  // waiting.
  bool Acquire(uint64_t bytes, const CancelToken& cancel = {});

  // A new rate from now on (for adaptive throttling); > 0.
  void SetRate(double bytes_per_second);
  double rate() const;

 private:
  void Refill(double now);
  mutable std::mutex mu_;
  double rate_;
  double tokens_;
  double last_;  // MonotonicSeconds() of the last refill
};

}  // namespace haven

#endif  // HAVEN_BASE_RATE_LIMITER_H_
