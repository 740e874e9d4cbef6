// Running another program: hooks and helpers such as qemu-img. (The
// isolated file-system reader, restore/isolated_reader.h, forks itself.)
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

// A user's hook command (VM pre-freeze/post-thaw, file backup --pre/--post):
// the one way Haven runs them.
struct HookRequest {
  std::string name;     // how messages call it: "the --pre command"
  std::string command;  // run with /bin/sh -c
  std::vector<std::string> env;  // extra "NAME=value" for the hook
  double timeout = 60;  // seconds; the hook's process group is then killed
  // Collect its stdout and stderr for the error message (tail, 2000 bytes);
  // otherwise they are inherited.
  bool capture = true;
  Code failure = Code::kFailedPrecondition;  // the code of a failed hook
};

// OK when the hook exits 0. Otherwise `failure` with "<name> exited with
// code N", "<name> was killed by signal N" or "<name> did not finish within
// T s and was killed", then ": <output>" when captured output is not empty.
// Errors of RunProcess (cannot fork) are returned as they are.
Status RunHook(const HookRequest& hook);

}  // namespace haven

#endif  // HAVEN_BASE_PROCESS_H_
