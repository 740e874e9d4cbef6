// Adaptive read throttling: back off when the host's I/O pressure rises,
// speed up again when it falls (`haven backup --adaptive`).
//
// The measure is Linux pressure stall information (PSI): the share of wall
// time in which at least one task waited for I/O ("some" in
// /proc/pressure/io), taken from the cumulative stall counter between two
// samples a second apart. It covers every process of the host — the VMs'
// QEMU processes included — so it rises when the host's storage is busy,
// whoever makes it busy (Haven's own reads and pack writes too).
//
// The policy (NextRate) acts on the job's shared read
// budget (base/rate_limiter.h):
//   pressure > high:  the rate halves (from what was actually read in the
//                     last interval, if that is less), never below `floor`;
//   pressure < low:   the rate grows by half, up to `ceiling` (the
//                     --limit-read), or, with no ceiling, back to no limit
//                     once it passes the fastest rate seen unthrottled;
//   in between:       unchanged.
#ifndef HAVEN_BASE_IO_PRESSURE_H_
#define HAVEN_BASE_IO_PRESSURE_H_

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "base/rate_limiter.h"
#include "base/status.h"

namespace haven {

struct AdaptiveOptions {
  double high = 0.25;     // stall share above which reads slow down
  double low = 0.10;      // and below which they speed up again
  double interval = 1.0;  // seconds between samples
  double ceiling = 0;     // bytes/s never exceeded (--limit-read); 0: none
  double floor = 1e6;     // bytes/s never gone below: the backup must end
  std::string psi_path = "/proc/pressure/io";
};

// The "some" total (microseconds stalled since boot) of a PSI file's text.
// InvalidArgument naming the text if it has none.
Result<uint64_t> ParsePsiSomeTotal(std::string_view text);

struct RateState {
  double rate = 0;  // the budget's rate; 0: no limit
  double peak = 0;  // fastest observed rate while not limited
};

// One step of the policy: the next rate, given the observed read rate and
// stall share of the last interval. Updates state.peak.
double NextRate(RateState& state, double observed_rate, double pressure,
                const AdaptiveOptions& options);

// Samples PSI on its own thread and sets `limiter`'s rate. Stops (and the
// limiter keeps its last rate) when destroyed.
class IoPressureGovernor {
 public:
  // Unavailable when the kernel has no PSI (CONFIG_PSI off, or psi=0 on
  // its command line): the caller runs without the adaptive mode and says
  // so. `log` gets one line per change of rate.
  static Result<std::unique_ptr<IoPressureGovernor>> Start(
      std::shared_ptr<RateLimiter> limiter, const AdaptiveOptions& options,
      std::function<void(const std::string&)> log);
  ~IoPressureGovernor();

  int slowdowns() const { return slowdowns_.load(); }
  // The lowest rate it set (bytes/s); 0 if it never limited.
  double lowest_rate() const { return lowest_.load(); }
  double highest_pressure() const { return highest_pressure_.load(); }

 private:
  IoPressureGovernor(std::shared_ptr<RateLimiter> limiter,
                     const AdaptiveOptions& options,
                     std::function<void(const std::string&)> log)
      : limiter_(std::move(limiter)), opt_(options), log_(std::move(log)) {}
  void Loop(uint64_t stalled, double at);

  std::shared_ptr<RateLimiter> limiter_;
  AdaptiveOptions opt_;
  std::function<void(const std::string&)> log_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::atomic<int> slowdowns_{0};
  std::atomic<double> lowest_{0}, highest_pressure_{0};
  std::thread thread_;
};

// A job's read budget: the --limit-read (or none) and, in adaptive mode,
// the governor that moves it. Stops the governor when destroyed.
struct ReadBudget {
  std::shared_ptr<RateLimiter> limiter;          // null: no limit, not adaptive
  std::unique_ptr<IoPressureGovernor> governor;  // null: not adaptive
  std::string note;  // why the adaptive mode was asked for and is off

  // Slowdowns, lowest rate and highest pressure, then stops the governor.
  void Finish(int& slowdowns, double& lowest_rate, double& highest_pressure);
};

// `limit` bytes/s (0: none); with `adaptive`, PSI moves it below the limit
// (options.ceiling is set to it). No PSI: the limit alone, and `note` (also
// logged) says why.
ReadBudget StartReadBudget(double limit, bool adaptive, AdaptiveOptions options,
                           const std::function<void(const std::string&)>& log);

}  // namespace haven

#endif  // HAVEN_BASE_IO_PRESSURE_H_
