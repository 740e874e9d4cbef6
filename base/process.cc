#include "base/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "base/file.h"
#include "base/time.h"

extern char** environ;

namespace haven {
namespace {

constexpr size_t kMaxOutput = 64 << 10;

}  // namespace

Result<ProcessResult> RunProcess(const std::vector<std::string>& argv,
                                 const std::vector<std::string>& extra_env,
                                 double timeout, bool capture) {
  if (argv.empty()) return InvalidArgument("no program to run");
  // Everything the child needs is built before fork: after it, only
  // async-signal-safe calls.
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    bool replaced = false;
    for (const auto& x : extra_env) {
      size_t eq = x.find('=');
      if (std::strncmp(*e, x.c_str(), eq + 1) == 0) replaced = true;
    }
    if (!replaced) env.push_back(*e);
  }
  env.insert(env.end(), extra_env.begin(), extra_env.end());
  std::vector<char*> envp, args;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& a : argv_copy) args.push_back(a.data());
  args.push_back(nullptr);

  int out[2] = {-1, -1};
  if (capture && ::pipe2(out, O_CLOEXEC) != 0)
    return ErrnoStatus("pipe for " + argv[0], errno);
  UniqueFd read_end(out[0]);
  pid_t pid = ::fork();
  if (pid < 0) {
    if (capture) ::close(out[1]);
    return ErrnoStatus("fork for " + argv[0], errno);
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    if (capture) {
      ::dup2(out[1], 1);
      ::dup2(out[1], 2);
    }
    ::execvpe(args[0], args.data(), envp.data());
    ::_exit(127);
  }
  // Also here, so the group exists before a kill however early it comes.
  ::setpgid(pid, pid);
  if (capture) ::close(out[1]);

  ProcessResult r;
  const double deadline = MonotonicSeconds() + timeout;
  int status = 0;
  while (true) {
    if (read_end.get() >= 0) {
      pollfd p{read_end.get(), POLLIN, 0};
      if (::poll(&p, 1, 20) > 0) {
        char buf[4096];
        ssize_t n = ::read(read_end.get(), buf, sizeof buf);
        if (n > 0 && r.output.size() < kMaxOutput)
          r.output.append(buf,
                          std::min<size_t>(n, kMaxOutput - r.output.size()));
        if (n == 0) read_end.reset();
        if (n > 0) continue;
      }
    }
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR)
      return ErrnoStatus("waiting for " + argv[0], errno);
    if (timeout >= 0 && MonotonicSeconds() >= deadline) {
      ::kill(-pid, SIGKILL);
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      r.timed_out = true;
      break;
    }
    if (read_end.get() < 0) ::usleep(20000);
  }
  // What the program wrote just before it ended.
  while (read_end.get() >= 0) {
    pollfd p{read_end.get(), POLLIN, 0};
    char buf[4096];
    ssize_t n =
        ::poll(&p, 1, 100) > 0 ? ::read(read_end.get(), buf, sizeof buf) : 0;
    if (n <= 0) break;
    if (r.output.size() < kMaxOutput)
      r.output.append(buf, std::min<size_t>(n, kMaxOutput - r.output.size()));
  }
  r.exited = WIFEXITED(status);
  r.exit_code = r.exited ? WEXITSTATUS(status) : 0;
  r.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  return r;
}

Status RunHook(const HookRequest& hook) {
  HAVEN_ASSIGN_OR_RETURN(
      ProcessResult r,
      RunProcess({"/bin/sh", "-c", hook.command}, hook.env, hook.timeout,
                 hook.capture));
  if (r.exited && r.exit_code == 0) return OkStatus();
  std::string out = r.output;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' '))
    out.pop_back();
  if (out.size() > 2000) out = "..." + out.substr(out.size() - 2000);
  char secs[32];
  std::snprintf(secs, sizeof secs, "%g", hook.timeout);
  std::string why =
      r.timed_out ? std::string("did not finish within ") + secs +
                        " s and was killed"
      : r.exited  ? "exited with code " + std::to_string(r.exit_code)
                  : "was killed by signal " + std::to_string(r.signal);
  return Status(hook.failure,
                hook.name + " " + why + (out.empty() ? "" : ": " + out));
}

}  // namespace haven
