#include "restore/isolated_reader.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
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

}  // namespace

Result<int> RunIsolated(const std::function<int()>& work,
                        const IsolatedOutputs& outputs) {
  // Buffered output would otherwise be written twice, by both processes.
  std::cout.flush();
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return work();
  if (pid == 0) {
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
