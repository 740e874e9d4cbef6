// Background priority for a job's own work: CPU nice 10 and I/O class
// best-effort, level 7 (the lowest before idle). Linux keeps both per
// thread and a new thread or child process inherits its creator's, so a
// job lowers the thread it runs on first, and its workers, qemu-nbd
// children and hooks run low too.
//
// What it protects: other processes on the host competing for this
// machine's CPU and for the disks Haven reads directly (shut-off VMs, image
// files) and the repository's disk. It does not slow the reads of a
// running VM's disks, which its own QEMU process does (a read-rate limit
// does that: base/rate_limiter.h).
#ifndef HAVEN_BASE_PRIORITY_H_
#define HAVEN_BASE_PRIORITY_H_

#include "base/status.h"

namespace haven {

// Lowers the calling thread (never raises it: a thread already lower stays
// so). An error names what the kernel refused; callers may go on.
Status LowerThreadPriority();
// Lowers every thread of this process (those started before too, such as
// RocksDB's): for a process whose work is the job, like `haven backup`.
Status LowerProcessPriority();

}  // namespace haven

#endif  // HAVEN_BASE_PRIORITY_H_
