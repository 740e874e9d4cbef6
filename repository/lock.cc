#include "repository/lock.h"

#include <fcntl.h>
#include <sys/file.h>

#include <cerrno>
#include <chrono>
#include <thread>

#include "base/time.h"

namespace haven::repository {

Result<RepositoryLock> RepositoryLock::Acquire(
    const std::string& repo_dir, Mode mode, double wait_seconds,
    const std::function<void(const std::string&)>& on_wait) {
  std::string path = repo_dir + "/locks/repository";
  HAVEN_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_RDWR | O_CREAT, 0600));
  HAVEN_RETURN_IF_ERROR(Lock(fd.get(), path, mode, wait_seconds, on_wait));
  return RepositoryLock(std::move(fd));
}

Status RepositoryLock::Upgrade(
    double wait_seconds,
    const std::function<void(const std::string&)>& on_wait) {
  return Lock(fd_.get(), "locks/repository", Mode::kExclusive, wait_seconds,
              on_wait);
}

Status RepositoryLock::Lock(
    int fd, const std::string& path, Mode mode, double wait_seconds,
    const std::function<void(const std::string&)>& on_wait) {
  int op = (mode == Mode::kShared ? LOCK_SH : LOCK_EX) | LOCK_NB;
  double deadline = MonotonicSeconds() + wait_seconds;
  bool told = false;
  while (::flock(fd, op) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR)
      return ErrnoStatus("lock " + path, errno);
    if (MonotonicSeconds() > deadline)
      return Unavailable("the repository is locked by another haven process");
    if (!told && on_wait) {
      on_wait("waiting for the repository lock held by another haven process");
      told = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return OkStatus();
}

}  // namespace haven::repository
