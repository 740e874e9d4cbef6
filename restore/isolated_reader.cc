#include "restore/isolated_reader.h"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>

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

}  // namespace

Result<int> RunIsolated(const std::function<int()>& work,
                        const IsolatedOutputs& outputs) {
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
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return ErrnoStatus("waitpid", errno);
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

}  // namespace haven::restore
