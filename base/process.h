// Running another program: the one place Haven forks (hooks, qemu-img).
#ifndef HAVEN_BASE_PROCESS_H_
#define HAVEN_BASE_PROCESS_H_

#include <string>
#include <vector>

#include "base/status.h"

namespace haven {

struct ProcessResult {
  bool exited = false;  // exited normally; else killed by `signal`
  int exit_code = 0;
  int signal = 0;
  bool timed_out = false;  // killed (with its process group) at the timeout
  std::string output;      // stdout and stderr, when captured
};

// Runs argv[0] (looked up in PATH) with the environment plus `extra_env`
// ("NAME=value", replacing any of the same name), in a process group of its
// own. Unless `timeout` is negative, the whole group is killed with SIGKILL
// once it runs `timeout` seconds. With `capture`, stdout and stderr are
// collected (at most 64 KiB kept); otherwise they are inherited. Fails only if
// the program could not be started or waited for.
Result<ProcessResult> RunProcess(const std::vector<std::string>& argv,
                                 const std::vector<std::string>& extra_env,
                                 double timeout, bool capture);

}  // namespace haven

#endif  // HAVEN_BASE_PROCESS_H_
