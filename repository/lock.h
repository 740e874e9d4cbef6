// Repository lock: shared for backups and restores, exclusive for jobs that
// delete (garbage collection). It is an flock on locks/repository, so the
// kernel releases it when its holder exits or is killed: a crashed process
// never leaves a lock behind that blocks the next job.
#ifndef HAVEN_REPOSITORY_LOCK_H_
#define HAVEN_REPOSITORY_LOCK_H_

#include <functional>
#include <string>

#include "base/file.h"

namespace haven::repository {

class RepositoryLock {
 public:
  enum class Mode { kShared, kExclusive };
  static Result<RepositoryLock> Acquire(
      const std::string& repo_dir, Mode mode, double wait_seconds,
      const std::function<void(const std::string&)>& on_wait);
  // Converts a shared lock into an exclusive one, waiting for the other
  // holders. Like flock, the conversion is not atomic: another process may
  // take the lock in between, which is why callers re-read what they need.
  Status Upgrade(double wait_seconds,
                 const std::function<void(const std::string&)>& on_wait);

 private:
  explicit RepositoryLock(UniqueFd fd) : fd_(std::move(fd)) {}
  static Status Lock(int fd, const std::string& path, Mode mode,
                     double wait_seconds,
                     const std::function<void(const std::string&)>& on_wait);
  UniqueFd fd_;
};

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_LOCK_H_
