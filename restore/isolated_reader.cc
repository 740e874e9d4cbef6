#include "restore/isolated_reader.h"

#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <new>
#include <thread>

#include "base/file.h"

namespace haven::restore {
namespace {

// Removes what a crashed child `pid` was writing; says what, for the
// message ("" when nothing partial was there).
std::string RemovePartial(pid_t pid, const IsolatedOutputs& out) {
  std::string removed;
  for (const std::string& archive : out.archives)
    if (!archive.empty() && unlink((archive + ".haven-partial").c_str()) == 0)
      removed = archive + ".haven-partial";
  if (out.dir.empty()) return removed;
  const std::string prefix = ".haven-partial." + std::to_string(pid) + ".";
  std::error_code ec;
  std::vector<std::filesystem::path> partial;
  for (auto it = std::filesystem::recursive_directory_iterator(
           out.dir, std::filesystem::directory_options::skip_permission_denied,
           ec);
       !ec && it != std::filesystem::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->path().filename().string().starts_with(prefix) &&
        it->is_regular_file(ec))
      partial.push_back(it->path());
  }
  for (const auto& p : partial) std::filesystem::remove(p, ec);
  if (!partial.empty())
    removed =
        std::to_string(partial.size()) + " partial file(s) under " + out.dir;
  return removed;
}

#if defined(__SANITIZE_ADDRESS__)
#define HAVEN_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVEN_ASAN 1
#endif
#endif

// The Sleuth Kit sizes some buffers by what a guest image claims (a 17 KB
// crafted ext2 image made it allocate and fill 3.5 GB). The child gets an
// address-space budget above what it inherits, so such an allocation fails
// (an error TSK reports) instead of taking the host's memory. Sanitizer
// builds reserve terabytes of address space and bound allocations their own
// way (scripts/fuzz.sh: max_allocation_size_mb).
void LimitChildMemory() {
#ifndef HAVEN_ASAN
  constexpr uint64_t kBudget = uint64_t{4} << 30;
  std::ifstream statm("/proc/self/statm");
  uint64_t pages = 0;
  if (!(statm >> pages)) return;
  const uint64_t have = pages * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  struct rlimit rl;
  if (::getrlimit(RLIMIT_AS, &rl) != 0) return;
  const rlim_t want = static_cast<rlim_t>(have + kBudget);
  if (rl.rlim_max != RLIM_INFINITY && want > rl.rlim_max) return;
  rl.rlim_cur = want;
  (void)::setrlimit(RLIMIT_AS, &rl);
#endif
}

std::string SecondsText(double seconds) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", seconds);
  return buf;
}

}  // namespace

Result<int> RunIsolated(const std::function<int()>& work,
                        const IsolatedOutputs& outputs,
                        const std::function<void()>& while_waiting,
                        double kill_after_seconds) {
  // Buffered output would otherwise be written twice, by both processes.
  std::cout.flush();
  std::fflush(nullptr);
  const pid_t pid = fork();
  // Never parse in the caller: isolation that fails open is no isolation.
  if (pid < 0) return ErrnoStatus("fork for the isolated file-system reader", errno);
  if (pid == 0) {
    LimitChildMemory();
    int rc = work();
    std::cout.flush();
    std::fflush(nullptr);
    _exit(rc);
  }
  int status = 0;
  const bool poll = while_waiting || kill_after_seconds > 0;
  const auto started = std::chrono::steady_clock::now();
  for (;;) {
    const pid_t r = waitpid(pid, &status, poll ? WNOHANG : 0);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) return ErrnoStatus("waitpid", errno);
    if (r == 0) {
      if (kill_after_seconds > 0 &&
          std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                        started)
                  .count() > kill_after_seconds) {
        ::kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        const std::string removed = RemovePartial(pid, outputs);
        return Unavailable(
            "the isolated file-system reader did not finish within " +
            SecondsText(kill_after_seconds) + " s and was stopped" +
            (removed.empty() ? std::string() : " (removed " + removed + ")") +
            "; try again");
      }
      if (while_waiting) while_waiting();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  const int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  const std::string removed = RemovePartial(pid, outputs);
  const std::string after =
      !outputs.dir.empty()
          ? (removed.empty() ? std::string("nothing partial was left")
                             : "removed " + removed) +
                "; files restored before the crash are complete"
          : "no archive was written" +
                (removed.empty() ? std::string() : " (removed " + removed + ")");
  return Internal("reading the guest file system crashed (signal " +
                  std::to_string(sig) + ", " + strsignal(sig) +
                  "): the disk image may be damaged or crafted; " + after +
                  ". Restore the whole disk with `haven restore image` "
                  "instead");
}

Result<std::string> RunIsolatedResult(
    const std::function<Result<std::string>(const CancelToken&)>& work,
    const IsolatedOutputs& outputs, const CancelToken& cancel,
    double kill_after_seconds) {
  // The cancel flag, in memory both processes share: a watcher here copies
  // `cancel` into it, one in the child copies it into the child's token.
  void* shared =
      ::mmap(nullptr, sizeof(std::atomic<bool>), PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) return ErrnoStatus("mmap", errno);
  auto* flag = new (shared) std::atomic<bool>(false);
  struct Unmap {
    void* p;
    ~Unmap() { ::munmap(p, sizeof(std::atomic<bool>)); }
  } unmap{shared};
  // The caller's cancel is copied into the shared flag by this thread
  // between its waits for the child, not by a thread of its own: a thread
  // running while fork() copies the process can leave the child a lock it
  // holds, and the child then hangs on it.
  auto copy_cancel = [&] {
    if (cancel.cancelled()) flag->store(true);
  };
  // The result file: 'O' and the value, or 'E', the code as one byte and
  // the message.
  const int fd = ::memfd_create("haven-isolated-result", MFD_CLOEXEC);
  if (fd < 0) return ErrnoStatus("memfd_create", errno);
  UniqueFd result_fd(fd);
  auto child = [&]() -> int {
    // The shared flag itself is the child's token: no thread is started
    // in a child forked from a multi-threaded process.
    CancelToken token = CancelToken::Over(flag);
    Result<std::string> r = work(token);
    const std::string out = r.ok() ? "O" + *r
                                   : std::string("E") +
                                         static_cast<char>(r.status().code()) +
                                         r.status().message();
    size_t done = 0;
    while (done < out.size()) {
      ssize_t n = ::write(fd, out.data() + done, out.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return 1;
      done += static_cast<size_t>(n);
    }
    return 0;
  };
  HAVEN_ASSIGN_OR_RETURN(
      int rc, RunIsolated(child, outputs, copy_cancel, kill_after_seconds));
  std::string text;
  char buf[65536];
  for (off_t off = 0;;) {
    ssize_t n = ::pread(fd, buf, sizeof buf, off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      return ErrnoStatus("reading the isolated reader's result", errno);
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    off += n;
  }
  if (rc != 0 || text.empty())
    return Internal("the isolated file-system reader ended (code " +
                    std::to_string(rc) + ") without a result");
  if (text[0] == 'O') return text.substr(1);
  const auto code = static_cast<unsigned char>(text.size() >= 2 ? text[1] : 0);
  if (text[0] == 'E' && code > 0 &&
      code <= static_cast<unsigned char>(Code::kCancelled))
    return Status(static_cast<Code>(code), text.substr(2));
  return Internal("the isolated file-system reader's result is malformed");
}

}  // namespace haven::restore
