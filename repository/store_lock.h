// Repository lock for a store shared between machines (an object store),
// where no flock reaches: lock objects under locks/ in the store itself.
//
//   locks/<32 hex>   {"mode": "shared"|"exclusive", "host": H, "pid": P,
//                     "created": T, "expires": T}   (seconds since the epoch)
//
// To take a lock, a process writes its own lock object, then lists locks/
// and reads the others. A shared lock conflicts with a live exclusive one;
// an exclusive lock with any live lock. On a conflict it deletes its own
// object and tries again after a random pause. Because each writes before
// it lists, of two processes that race, at least the later one sees the
// other (the store must be consistent for a read after a write and for a
// listing after a write: Ceph RGW and AWS S3 are); both may back off, never
// both go on.
//
// A lock object lives until `expires`; the holder rewrites it every
// `refresh` seconds with a new expiry. A lock past its expiry is stale and
// ignored (and removed) by others: a killed process blocks others for at
// most `expiry` seconds, less when it ran on this host and its pid is gone.
// A holder that could not refresh its lock before it expired has lost it:
// Valid() turns false, and the repository then refuses to commit a point or
// delete a pack (repository.cc, gc.cc).
#ifndef HAVEN_REPOSITORY_STORE_LOCK_H_
#define HAVEN_REPOSITORY_STORE_LOCK_H_

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "repository/backend.h"

namespace haven::repository {

struct StoreLockOptions {
  double expiry_seconds = 600;   // HAVEN_STORE_LOCK_EXPIRY (tests)
  double refresh_seconds = 120;  // expiry / 5 when set from the environment
  double wait_seconds = 24 * 3600;
  std::function<void(const std::string&)> on_wait;
};

// Expiry and refresh from HAVEN_STORE_LOCK_EXPIRY (seconds, 10 to 86400),
// else the defaults above.
StoreLockOptions StoreLockOptionsFromEnvironment();

class StoreLock {
 public:
  enum class Mode { kShared, kExclusive };
  // Waits up to options.wait_seconds for a conflicting holder to go.
  static Result<std::unique_ptr<StoreLock>> Acquire(Backend& backend, Mode mode,
                                                    StoreLockOptions options);
  // Removes the lock object.
  ~StoreLock();
  StoreLock(const StoreLock&) = delete;
  StoreLock& operator=(const StoreLock&) = delete;

  Mode mode() const { return mode_; }
  // OK while the lock object is known to be live; FailedPrecondition once a
  // refresh failed past its expiry.
  Status Valid() const;

 private:
  StoreLock(Backend& backend, Mode mode, StoreLockOptions options)
      : backend_(backend), mode_(mode), options_(std::move(options)) {}
  Status Write(double now);
  void RefreshLoop();

  Backend& backend_;
  Mode mode_;
  StoreLockOptions options_;
  std::string name_;
  std::atomic<double> expires_{0};
  mutable std::atomic<bool> lost_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread refresher_;
};

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_STORE_LOCK_H_
