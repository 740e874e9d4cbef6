#include "base/io_pressure.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "base/file.h"
#include "base/time.h"

namespace haven {
namespace {

constexpr size_t kMaxPsiBytes = 4096;

// procfs files say size 0: read until EOF, not by the file's size.
Result<uint64_t> ReadStalled(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0)
    return Unavailable("the kernel reports no I/O pressure (" +
                       ErrnoStatus(path, errno).message() +
                       "; it needs CONFIG_PSI and no psi=0)");
  char buf[kMaxPsiBytes];
  size_t got = 0;
  while (got < sizeof buf) {
    const ssize_t n = ::read(fd.get(), buf + got, sizeof buf - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("reading " + path, errno);
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  return ParsePsiSomeTotal(std::string_view(buf, got));
}

std::string Mbps(double bytes_per_second) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MB/s", bytes_per_second / 1e6);
  return buf;
}

std::string Percent(double share) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.0f%%", share * 100);
  return buf;
}

}  // namespace

Result<uint64_t> ParsePsiSomeTotal(std::string_view text) {
  // some avg10=0.00 avg60=0.00 avg300=0.00 total=12345
  if (text.substr(0, 5) == "some ") {
    const size_t at = text.find("total=");
    const size_t end = text.find('\n');
    if (at != std::string_view::npos &&
        (end == std::string_view::npos || at < end)) {
      uint64_t v = 0;
      size_t i = at + 6, digits = 0;
      for (; i < text.size() && text[i] >= '0' && text[i] <= '9';
           ++i, ++digits) {
        if (v > (UINT64_MAX - 9) / 10) break;
        v = v * 10 + static_cast<uint64_t>(text[i] - '0');
      }
      if (digits > 0 && digits < 20) return v;
    }
  }
  std::string shown(text.substr(0, std::min<size_t>(text.size(), 80)));
  return InvalidArgument("not a pressure file: " + QuoteUntrusted(shown));
}

double NextRate(RateState& s, double observed, double pressure,
                const AdaptiveOptions& o) {
  if (s.rate <= 0) s.peak = std::max(s.peak, observed);
  if (pressure > o.high) {
    double from = s.rate > 0 ? s.rate : (o.ceiling > 0 ? o.ceiling : observed);
    if (observed > 0) from = std::min(from, observed);
    s.rate = std::max(o.floor, from / 2);
  } else if (pressure < o.low && s.rate > 0) {
    const double up = s.rate * 1.5;
    if (o.ceiling > 0)
      s.rate = std::min(up, o.ceiling);
    else if (up >= s.peak)
      s.rate = 0;  // past the fastest seen: no limit again
    else
      s.rate = up;
  }
  return s.rate;
}

Result<std::unique_ptr<IoPressureGovernor>> IoPressureGovernor::Start(
    std::shared_ptr<RateLimiter> limiter, const AdaptiveOptions& options,
    std::function<void(const std::string&)> log) {
  if (!limiter) return InvalidArgument("the adaptive mode needs a read budget");
  HAVEN_ASSIGN_OR_RETURN(uint64_t stalled, ReadStalled(options.psi_path));
  std::unique_ptr<IoPressureGovernor> g(
      new IoPressureGovernor(std::move(limiter), options, std::move(log)));
  const double at = MonotonicSeconds();
  g->thread_ =
      std::thread([p = g.get(), stalled, at] { p->Loop(stalled, at); });
  return g;
}

IoPressureGovernor::~IoPressureGovernor() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void IoPressureGovernor::Loop(uint64_t stalled, double at) {
  RateState state;
  state.rate = opt_.ceiling > 0 ? opt_.ceiling : 0;
  uint64_t read = limiter_->acquired();
  for (;;) {
    {
      std::unique_lock<std::mutex> l(mu_);
      if (cv_.wait_for(l, std::chrono::duration<double>(opt_.interval),
                       [this] { return stop_; }))
        return;
    }
    auto now_stalled = ReadStalled(opt_.psi_path);
    const double now = MonotonicSeconds();
    const uint64_t now_read = limiter_->acquired();
    const double dt = now - at;
    if (!now_stalled.ok() || dt <= 0) continue;
    const double pressure = std::clamp(
        static_cast<double>(*now_stalled - std::min(*now_stalled, stalled)) /
            (dt * 1e6),
        0.0, 1.0);
    const double observed = static_cast<double>(now_read - read) / dt;
    stalled = *now_stalled;
    at = now;
    read = now_read;
    highest_pressure_.store(std::max(highest_pressure_.load(), pressure));
    const double before = state.rate;
    const double after = NextRate(state, observed, pressure, opt_);
    if (after == before) continue;
    limiter_->SetRate(after);
    if (after > 0 && (after < before || before <= 0)) {
      slowdowns_.fetch_add(1);
      const double low = lowest_.load();
      if (low <= 0 || after < low) lowest_.store(after);
    }
    if (log_)
      log_("host I/O pressure " + Percent(pressure) + ": " +
           (after <= 0 ? std::string("read limit lifted")
            : after < before || before <= 0
                ? "reading at most " + Mbps(after) + " (was " +
                      (before > 0 ? Mbps(before) : "unlimited") + ")"
                : "read limit raised to " + Mbps(after)));
  }
}

void ReadBudget::Finish(int& slowdowns, double& lowest_rate,
                        double& highest_pressure) {
  if (!governor) return;
  slowdowns = governor->slowdowns();
  lowest_rate = governor->lowest_rate();
  highest_pressure = governor->highest_pressure();
  governor.reset();
}

ReadBudget StartReadBudget(double limit, bool adaptive, AdaptiveOptions options,
                           const std::function<void(const std::string&)>& log) {
  ReadBudget b;
  if (limit <= 0 && !adaptive) return b;
  b.limiter = std::make_shared<RateLimiter>(limit);
  if (!adaptive) return b;
  options.ceiling = limit > 0 ? limit : 0;
  auto g = IoPressureGovernor::Start(b.limiter, options, log);
  if (g.ok()) {
    b.governor = std::move(*g);
  } else {
    b.note = g.status().message();
    if (log) log("adaptive mode off: " + b.note);
  }
  return b;
}

}  // namespace haven
