// Progress and cancellation of long jobs, shared by every module and front end.
//
// A job reports Progress events to a ProgressFn from its own threads (calls
// are serialized by the job; the callback must not block for long). A job
// takes a CancelToken and checks it between chunks and between items (VMs,
// disks, files); once cancelled it stops at the next check and returns
// Status with Code::kCancelled. A cancelled backup ends as a crash would:
// no new recovery point, earlier ones untouched, and the chunks already
// stored are reused by the next run.
#ifndef HAVEN_BASE_PROGRESS_H_
#define HAVEN_BASE_PROGRESS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "base/status.h"

namespace haven {

struct Progress {
  std::string phase;        // "backup", "restore", "verify", ... (job-defined)
  std::string item;         // what is being worked on: VM, disk, path
  uint64_t done_bytes = 0;  // logical bytes processed (holes included)
  uint64_t total_bytes = 0;  // 0: not known
  uint64_t new_bytes = 0;    // bytes added to the repository so far
  double elapsed_seconds = 0;
  double bytes_per_second = 0;  // done_bytes / elapsed_seconds
  bool final = false;           // the last event of this item
  // Jobs over many items at once (the VMs of a host job): how many are
  // done (any outcome), running and waiting, and of the done how many
  // failed. All 0 for a job of one item.
  int items_done = 0, items_running = 0, items_waiting = 0, items_failed = 0;
  double eta_seconds = -1;  // < 0: not known (the front end may estimate)
};

using ProgressFn = std::function<void(const Progress&)>;

// A byte-count event; the rate is derived from done and elapsed.
inline Progress ByteProgress(uint64_t done, uint64_t total, uint64_t new_bytes,
                             double elapsed, bool final) {
  Progress p;
  p.done_bytes = done;
  p.total_bytes = total;
  p.new_bytes = new_bytes;
  p.elapsed_seconds = elapsed;
  p.bytes_per_second = elapsed > 0 ? done / elapsed : 0;
  p.final = final;
  return p;
}

// Shared cancellation flag. Copies share one flag, so a front end keeps a
// copy and hands another to the job. A default-constructed token is never
// cancelled unless Cancel() is called on it or a copy. Thread-safe and
// async-signal-safe to Cancel() (a relaxed atomic store).
class CancelToken {
 public:
  CancelToken() : flag_(std::make_shared<std::atomic<bool>>(false)) {}
  // A token over a flag it does not own (e.g. one in memory shared with a
  // parent process); `flag` must outlive every copy.
  static CancelToken Over(std::atomic<bool>* flag) {
    CancelToken t;
    t.flag_ = std::shared_ptr<std::atomic<bool>>(std::shared_ptr<void>(), flag);
    return t;
  }
  void Cancel() const { flag_->store(true, std::memory_order_relaxed); }
  bool cancelled() const { return flag_->load(std::memory_order_relaxed); }
  // OK, or Cancelled("<what> was cancelled") once Cancel() was called.
  Status Check(std::string_view what) const {
    if (!cancelled()) return OkStatus();
    return Cancelled(std::string(what) + " was cancelled");
  }
  // The flag itself, for a signal handler that must not touch shared_ptr.
  std::atomic<bool>* flag() const { return flag_.get(); }

 private:
  std::shared_ptr<std::atomic<bool>> flag_;
};

}  // namespace haven

#endif  // HAVEN_BASE_PROGRESS_H_
