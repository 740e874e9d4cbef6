// Keeping a point's packs retained as long as the point (object lock).
//
// A manifest committed at time T is retained until T + L (L: the
// repository's object lock period). Its packs must be retained at least as
// long, or an attacker holding the store's credentials could delete a pack
// an old, deduplicated-against upload left, and so destroy a young point.
// So, before a manifest is written, every pack it references is made
// retained until at least T + L; a pack that falls short is extended to
// T + L + R, R = L / 4 (the renewal), so a pack shared by every night's
// point is extended once every R rather than every night. New packs are
// written retained until their upload time + L + R.
//
// What each pack is known to be retained until is cached on this machine
// (LOCAL/retention: "<object key> <until>" lines); a pack not in the cache
// is asked for with one HEAD. The config and the key slots are kept
// retained the same way: without them no point can be read. Retention can only
// grow, so a cached date is never later than the truth.
#ifndef HAVEN_REPOSITORY_OBJECT_LOCK_H_
#define HAVEN_REPOSITORY_OBJECT_LOCK_H_

#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>

#include "repository/backend.h"

namespace haven::repository {

struct RetentionReport {
  uint64_t packs = 0;     // referenced by the point
  uint64_t extended = 0;  // whose retention was extended now
  uint64_t asked = 0;     // HEAD requests (not in the local cache)
};

class PackRetention {
 public:
  explicit PackRetention(std::string cache_file);
  // Makes every object in `keys` (packs/.., config, keys/..) retained until
  // at least `required`, extending those short of it to `target`. Saves
  // the cache.
  Result<RetentionReport> Ensure(Backend& backend,
                                 const std::set<std::string>& keys,
                                 int64_t required, int64_t target);
  // A pack just written with retention until `until`.
  void Note(const std::string& pack, int64_t until);

 private:
  void Load();
  Status Save();
  std::string file_;
  std::mutex mu_;
  bool loaded_ = false;
  std::unordered_map<std::string, int64_t> until_;
};

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_OBJECT_LOCK_H_
