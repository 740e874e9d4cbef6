#include "base/priority.h"

#include <dirent.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <memory>

namespace haven {
namespace {
// linux/ioprio.h, not shipped by every libc's headers.
constexpr int kIoprioWhoProcess = 1;
constexpr int kIoprioClassShift = 13;
constexpr int kIoprioClassBestEffort = 2;
constexpr int kNice = 10;
constexpr int kIoLevel = 7;

// Lowers thread `tid` of this process; never raises it.
Status LowerThread(pid_t tid) {
  errno = 0;
  const int nice_now = ::getpriority(PRIO_PROCESS, static_cast<id_t>(tid));
  if (errno == ESRCH) return OkStatus();  // the thread ended meanwhile
  if (errno == 0 && nice_now < kNice &&
      ::setpriority(PRIO_PROCESS, static_cast<id_t>(tid), kNice) != 0)
    return errno == ESRCH ? OkStatus()
                          : ErrnoStatus("lowering the CPU priority (nice 10)",
                                        errno);
  const int want = kIoprioClassBestEffort << kIoprioClassShift | kIoLevel;
  const long now = ::syscall(SYS_ioprio_get, kIoprioWhoProcess, tid);
  // Idle class (3), or best-effort at level 7 already: low enough.
  const bool lower =
      now >= 0 && ((now >> kIoprioClassShift) == 3 || now == want);
  if (!lower && ::syscall(SYS_ioprio_set, kIoprioWhoProcess, tid, want) != 0)
    return errno == ESRCH ? OkStatus()
                          : ErrnoStatus(
                                "lowering the I/O priority (best-effort 7)",
                                errno);
  return OkStatus();
}

}  // namespace

Status LowerThreadPriority() {
  return LowerThread(static_cast<pid_t>(::syscall(SYS_gettid)));
}

Status LowerProcessPriority() {
  // Threads started before (RocksDB's, the signal watcher) too; those
  // started after inherit from their creator.
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir("/proc/self/task"),
                                        &::closedir);
  if (!d) return LowerThreadPriority();
  Status first;
  while (struct dirent* e = ::readdir(d.get())) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    Status s = LowerThread(static_cast<pid_t>(std::atoi(e->d_name)));
    if (!s.ok() && first.ok()) first = s;
  }
  return first;
}

}  // namespace haven
