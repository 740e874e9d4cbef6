// Repositories opened for writing on behalf of API requests (the copy
// routes' chunk uploads and commits, appliance/routes_copy.cc), kept open
// while requests come and closed after `max_idle` without one.
//
// A writable open holds the shared repository lock as a backup does
// (repository/lock.h), so several writers run at once; gc needs the lock
// alone: its job calls Release() first, and an idle entry closes by itself
// meanwhile. A request holds its repository (shared_ptr) until it ends, so
// a Release() never pulls one from under a request.
//
// Thread-safe. An open waits for the lock at most `lock_wait_seconds`; a
// repository gc holds answers Unavailable (503; clients retry).
#ifndef HAVEN_APPLIANCE_WRITABLE_REPOSITORIES_H_
#define HAVEN_APPLIANCE_WRITABLE_REPOSITORIES_H_

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "appliance/repositories.h"
#include "repository/repository.h"

namespace haven::appliance {

struct WritableRepositoriesOptions {
  std::chrono::seconds max_idle{60};
  double lock_wait_seconds = 10;
};

class WritableRepositories {
 public:
  explicit WritableRepositories(const RepositoryCatalog& catalog,
                                WritableRepositoriesOptions options = {});
  ~WritableRepositories();
  WritableRepositories(const WritableRepositories&) = delete;
  WritableRepositories& operator=(const WritableRepositories&) = delete;

  // `name` opened for writing (or the open one). NotFound for a name not
  // configured; Unavailable while gc holds it.
  Result<std::shared_ptr<repository::Repository>> Get(const std::string& name);
  // Forgets the open `name` now: it closes when the last request holding
  // it ends.
  void Release(const std::string& name);

 private:
  struct Entry {
    std::shared_ptr<repository::Repository> repo;
    std::chrono::steady_clock::time_point used;
  };
  void ReaperLoop();

  const RepositoryCatalog& catalog_;
  WritableRepositoriesOptions options_;
  std::mutex mu_;
  std::map<std::string, Entry> open_;
  // One open at a time per name.
  std::map<std::string, std::shared_ptr<std::mutex>> opening_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::thread reaper_;
};

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_WRITABLE_REPOSITORIES_H_
