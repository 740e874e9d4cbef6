#include "cli/output.h"

#include <unistd.h>

#include <cstdio>

#include "base/bytes.h"

namespace haven::cli {

std::string FormatDuration(double seconds) {
  char buf[32];
  if (seconds < 60) {
    std::snprintf(buf, sizeof buf, "%.1fs", seconds);
  } else {
    long s = static_cast<long>(seconds);
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  }
  return buf;
}

ProgressFn TerminalProgress(bool enabled, const std::string& verb) {
  if (!enabled || !::isatty(STDERR_FILENO)) return nullptr;
  return [verb](const Progress& p) {
    const int items = p.items_done + p.items_running + p.items_waiting;
    if (items > 0) {  // a job over many items (the VMs of a host job)
      std::string line = verb + " " + std::to_string(p.items_done) + "/" +
                         std::to_string(items) + " VMs done";
      if (p.items_failed)
        line += " (" + std::to_string(p.items_failed) + " failed)";
      if (p.items_running) line += ", running: " + p.item;
      if (p.items_waiting)
        line += ", " + std::to_string(p.items_waiting) + " waiting";
      line += "  " + HumanBytes(p.done_bytes);
      if (p.total_bytes) line += " / " + HumanBytes(p.total_bytes);
      line += "  " + HumanBytes(static_cast<uint64_t>(p.bytes_per_second)) +
              "/s  ETA " +
              (p.eta_seconds >= 0 ? FormatDuration(p.eta_seconds) : "--");
      std::fprintf(stderr, "\r\033[K%s", line.c_str());
      if (p.final) std::fprintf(stderr, "\r\033[K");
      std::fflush(stderr);
      return;
    }
    const std::string what = p.item.empty() ? verb : verb + " " + p.item;
    double rate = p.elapsed_seconds > 0 ? p.done_bytes / p.elapsed_seconds : 0;
    if (p.total_bytes) {
      double pct = 100.0 * p.done_bytes / p.total_bytes;
      std::string eta = "--";
      if (rate > 0 && p.done_bytes < p.total_bytes)
        eta = FormatDuration((p.total_bytes - p.done_bytes) / rate);
      std::fprintf(stderr, "\r\033[K%s %s / %s  %3.0f%%  %s/s  ETA %s", what.c_str(),
                   HumanBytes(p.done_bytes).c_str(), HumanBytes(p.total_bytes).c_str(), pct,
                   HumanBytes(static_cast<uint64_t>(rate)).c_str(), eta.c_str());
    } else {  // the total is not known ahead (file trees): no percentage
      std::fprintf(stderr, "\r\033[K%s %s  %s/s  %s", what.c_str(),
                   HumanBytes(p.done_bytes).c_str(),
                   HumanBytes(static_cast<uint64_t>(rate)).c_str(),
                   FormatDuration(p.elapsed_seconds).c_str());
    }
    if (p.new_bytes)
      std::fprintf(stderr, "  new %s", HumanBytes(p.new_bytes).c_str());
    if (p.final) std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
  };
}

}  // namespace haven::cli
