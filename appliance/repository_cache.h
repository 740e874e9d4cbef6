// Repositories opened read-only for the API's reads, kept open for a short
// while so that browsing a point (a listing, then a download, then another
// listing) does not pay the opening each time.
//
// Why a cache: opening derives the master key from the passphrase with
// scrypt (repository/key_slots.h) and opens the RocksDB index: 0.2-0.3 s
// per open on the test machine, against 6-27 ms for a cached listing. Why a
// short one: every open repository holds the shared repository lock
// (repository/lock.h), and gc needs it exclusively; gc waits at most `max_idle`
// (default 30 s) for an idle entry to close, or the job calls Drop()/DropAll()
// first. An entry is also closed at `max_age` (default 5 min) after it was
// opened whatever its use, so a changed passphrase file or a rebuilt index is
// seen again. A request that still holds an entry keeps it alive (shared_ptr)
// until it ends.
//
// Thread-safe. Opens wait for the repository lock at most
// `lock_wait_seconds` (a repository held exclusively by gc answers 503).
//
// Besides the repository, an entry keeps the list of its points
// (PointList), refreshed by one listing of snapshots/ per use.
#ifndef HAVEN_APPLIANCE_REPOSITORY_CACHE_H_
#define HAVEN_APPLIANCE_REPOSITORY_CACHE_H_

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "appliance/repositories.h"
#include "repository/repository.h"

namespace haven::appliance {

// The points of one repository as of the last refresh, newest first.
struct PointList {
  std::vector<std::shared_ptr<const repository::Manifest>> points;
  std::set<std::string> protected_ids;
  std::vector<std::string> errors;  // unreadable manifests, one line each
  // ISO time of the snapshots/ listing this list came from; a later call
  // that found the folders unchanged returns the same list and time.
  std::string listed_at;
};

class OpenRepository {
 public:
  explicit OpenRepository(std::unique_ptr<repository::Repository> repo)
      : repo_(std::move(repo)) {}
  const repository::Repository& repo() const { return *repo_; }

  // The points now: lists snapshots/ once and reads only the manifests
  // added or replaced since the last call (all of them the first time,
  // through the index's catalog). A local repository whose snapshots/ and
  // protected/ folders kept their mtimes since a listing at least 2 s
  // younger than them is not listed again. Thread-safe: one refresh at a time,
  // and callers that waited for it share its answer when its listing began
  // after they called (so no answer is older than its request).
  Result<std::shared_ptr<const PointList>> Points();

 private:
  struct Known {
    uint64_t size = 0;
    int64_t mtime_ns = 0;
    std::shared_ptr<const repository::Manifest> manifest;  // null: unreadable
    std::string error;
  };
  std::unique_ptr<repository::Repository> repo_;
  std::mutex mu_;
  std::map<std::string, Known> known_;  // by id
  bool loaded_ = false;
  std::shared_ptr<const PointList> last_;  // the latest refresh's answer
  std::chrono::steady_clock::time_point last_started_;
  // The mtimes of snapshots/ and protected/ the last listing saw, and when
  // it began (ns since the epoch).
  std::optional<std::pair<int64_t, int64_t>> last_folders_;
  int64_t last_listed_ns_ = 0;
};

struct RepositoryCacheOptions {
  std::chrono::seconds max_idle{30};
  std::chrono::seconds max_age{300};
  double lock_wait_seconds = 5;
};

class RepositoryCache {
 public:
  // Starts a thread that closes expired entries every few seconds, so an
  // idle entry does not hold the lock until the next request.
  explicit RepositoryCache(const RepositoryCatalog& catalog,
                           RepositoryCacheOptions options = {});
  ~RepositoryCache();
  RepositoryCache(const RepositoryCache&) = delete;
  RepositoryCache& operator=(const RepositoryCache&) = delete;

  // The repository `name`, opened read-only (or the cached one). NotFound
  // for a name not configured; Unavailable while gc holds it.
  Result<std::shared_ptr<OpenRepository>> Get(const std::string& name);
  // Closes the cached entry of `name` (requests holding it finish first).
  void Drop(const std::string& name);
  void DropAll();
  // Closes entries past max_idle or max_age; Get calls it.
  void Expire();

 private:
  struct Entry {
    std::shared_ptr<OpenRepository> open;
    std::chrono::steady_clock::time_point opened, used;
  };
  const RepositoryCatalog& catalog_;
  RepositoryCacheOptions options_;
  std::mutex mu_;
  std::map<std::string, Entry> entries_;
  // One open at a time per name: a second request waits for the first's.
  std::map<std::string, std::shared_ptr<std::mutex>> opening_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::thread reaper_;
};

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_REPOSITORY_CACHE_H_
