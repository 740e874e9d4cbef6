#include "appliance/writable_repositories.h"

#include <vector>

namespace haven::appliance {

WritableRepositories::WritableRepositories(const RepositoryCatalog& catalog,
                                           WritableRepositoriesOptions options)
    : catalog_(catalog), options_(options) {
  reaper_ = std::thread([this] { ReaperLoop(); });
}

WritableRepositories::~WritableRepositories() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  reaper_.join();
}

Result<std::shared_ptr<repository::Repository>> WritableRepositories::Get(
    const std::string& name) {
  std::shared_ptr<std::mutex> opening;
  {
    std::lock_guard lock(mu_);
    if (auto it = open_.find(name); it != open_.end()) {
      it->second.used = std::chrono::steady_clock::now();
      return it->second.repo;
    }
    auto& slot = opening_[name];
    if (!slot) slot = std::make_shared<std::mutex>();
    opening = slot;
  }
  std::lock_guard one(*opening);
  {
    // Another request may have opened it while this one waited.
    std::lock_guard lock(mu_);
    if (auto it = open_.find(name); it != open_.end()) {
      it->second.used = std::chrono::steady_clock::now();
      return it->second.repo;
    }
  }
  repository::OpenOptions o;
  o.write = true;
  o.lock_wait_seconds = options_.lock_wait_seconds;
  auto repo = catalog_.Open(name, o);
  if (!repo.ok()) {
    // A lock that stays taken (gc) is a passing state: the client retries.
    if (repo.status().code() == Code::kUnavailable)
      return Unavailable("repository " + name +
                         " is busy (gc holds it): " + repo.status().message());
    return repo.status();
  }
  std::shared_ptr<repository::Repository> shared = std::move(repo).value();
  std::lock_guard lock(mu_);
  open_[name] = {shared, std::chrono::steady_clock::now()};
  return shared;
}

void WritableRepositories::Release(const std::string& name) {
  std::shared_ptr<repository::Repository> closing;
  {
    std::lock_guard lock(mu_);
    auto it = open_.find(name);
    if (it == open_.end()) return;
    closing = std::move(it->second.repo);
    open_.erase(it);
  }
  // `closing` closes here, outside the lock, unless a request holds it.
}

void WritableRepositories::ReaperLoop() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    stop_cv_.wait_for(lock, std::chrono::seconds(5));
    std::vector<std::shared_ptr<repository::Repository>> closing;
    const auto now = std::chrono::steady_clock::now();
    for (auto it = open_.begin(); it != open_.end();) {
      if (it->second.repo.use_count() == 1 &&
          now - it->second.used >= options_.max_idle) {
        closing.push_back(std::move(it->second.repo));
        it = open_.erase(it);
      } else {
        ++it;
      }
    }
    lock.unlock();
    closing.clear();  // closes outside the lock
    lock.lock();
  }
}

}  // namespace haven::appliance
