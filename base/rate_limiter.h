// A read-rate limit shared by every reader of a job: the disks of one VM
// and the VMs of a host job read in parallel draw from one budget, so the
// total stays at the limit (`haven backup --limit-read`).
//
// A token bucket: tokens (bytes) accrue at `bytes_per_second`, up to one
// quarter second's worth; Acquire(n) takes n tokens, sleeping until they
// are there. A request larger than the bucket is taken in pieces, so a 4 MiB
// read under a 1 MB/s limit takes about 4 s. Thread-safe. Sleeps end early
// when `cancel` is cancelled (Acquire then returns false).
//
// A rate of 0 means no limit (Acquire only counts): the adaptive mode
// (base/io_pressure.h) starts unlimited and sets a rate when the host's I/O
// pressure rises.
#ifndef HAVEN_BASE_RATE_LIMITER_H_
#define HAVEN_BASE_RATE_LIMITER_H_

#include <atomic>
#include <cstdint>
#include <mutex>

#include "base/progress.h"

namespace haven {

class RateLimiter {
 public:
  // bytes_per_second >= 0; 0: no limit.
  explicit RateLimiter(double bytes_per_second);

  // Waits until `bytes` may be read. False if `cancel` was cancelled while
  // waiting.
  bool Acquire(uint64_t bytes, const CancelToken& cancel = {});

  // A new rate from now on (for adaptive throttling); 0: no limit.
  void SetRate(double bytes_per_second);
  double rate() const;
  // Bytes acquired so far (granted, whether or not a limit applied): the
  // job's read rate as the adaptive mode observes it.
  uint64_t acquired() const {
    return acquired_.load(std::memory_order_relaxed);
  }

 private:
  void Refill(double now);
  mutable std::mutex mu_;
  double rate_;
  double tokens_;
  double last_;  // MonotonicSeconds() of the last refill
  std::atomic<uint64_t> acquired_{0};
};

}  // namespace haven

#endif  // HAVEN_BASE_RATE_LIMITER_H_
