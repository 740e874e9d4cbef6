// The isolated file-system reader: guest file systems are parsed by The
// Sleuth Kit inside Haven, from bytes a guest wrote. A crafted or damaged
// image that crashed the parser must not take the caller down (a command
// mid-write, or the appliance serving everyone), so the reading runs in a
// child process:
//
//   fork; the child runs the work and _exits with its result code
//   the caller waits; a child killed by a signal means the parser crashed:
//     remove what the child was writing — an archive's PATH.haven-partial,
//     the child's DIR/**/.haven-partial.<pid>.* files — and report it
//
// Files the child completed before a crash stay: each was renamed into
// place only once whole.
#ifndef HAVEN_RESTORE_ISOLATED_READER_H_
#define HAVEN_RESTORE_ISOLATED_READER_H_

#include <functional>
#include <string>
#include <vector>

#include "base/progress.h"
#include "base/status.h"

namespace haven::restore {

// What the work may leave half-written if it crashes.
struct IsolatedOutputs {
  std::string dir;                    // folder restored into ("": none)
  std::vector<std::string> archives;  // tar/zip paths being written
};

// Runs `work` in a child process and returns the code it returned. When
// fork fails the work runs in this process (no process to spare). A child
// killed by a signal returns Internal naming the signal and what was
// cleaned up; waitpid failures return its errno. The child's stdout and
// stderr are the caller's, so the caller flushes its buffers first (done
// here for stdio and std::cout).
// `while_waiting`, when set, is called about every 0.1 s until the child
// ends (from this thread: no thread is started around the fork).
// `kill_after_seconds` > 0: a child still running after that long is
// killed (SIGKILL) and Unavailable returned. A server sets it: a child
// forked from a multi-threaded process can inherit a lock another thread
// held at the fork and wait for it forever.
Result<int> RunIsolated(const std::function<int()>& work,
                        const IsolatedOutputs& outputs,
                        const std::function<void()>& while_waiting = {},
                        double kill_after_seconds = 0);

// As RunIsolated, for work with a result: what `work` returns (a string,
// or an error with its code and message) comes back from the child in a
// memory file. `cancel` reaches the child: `work` gets a token that is
// cancelled (within 0.1 s) once `cancel` is. A crash is reported as
// RunIsolated reports it; a child that ended without a result is Internal.
Result<std::string> RunIsolatedResult(
    const std::function<Result<std::string>(const CancelToken&)>& work,
    const IsolatedOutputs& outputs, const CancelToken& cancel = {},
    double kill_after_seconds = 0);

}  // namespace haven::restore

#endif  // HAVEN_RESTORE_ISOLATED_READER_H_
