#include "appliance/repository_cache.h"

#include <malloc.h>
#include <sys/stat.h>

#include <algorithm>
#include <optional>

#include "base/time.h"
#include "repository/catalog.h"

namespace haven::appliance {

namespace {
constexpr char kSnapshots[] = "snapshots/";
constexpr char kProtected[] = "protected/";

// The id of a listed object "snapshots/<id>", or "" for anything else.
std::string IdOf(const std::string& name, std::string_view prefix) {
  if (name.compare(0, prefix.size(), prefix) != 0) return "";
  std::string id = name.substr(prefix.size());
  return repository::IsSnapshotId(id) ? id : "";
}
int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t MtimeNs(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return -1;
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 +
         st.st_mtim.tv_nsec;
}

// The mtimes of snapshots/ and protected/ (-1 when protected/ is
// missing); nullopt when snapshots/ is not a folder here (a repository
// whose objects live elsewhere: then every use lists).
std::optional<std::pair<int64_t, int64_t>> FolderTimes(const std::string& dir) {
  int64_t snaps = MtimeNs(dir + "/" + kSnapshots);
  if (snaps < 0) return std::nullopt;
  return std::pair(snaps, MtimeNs(dir + "/" + kProtected));
}

// Whether a listing made at `listed_ns` saw the folders as they are: the
// file system's clock is coarse, so a change in the same tick as an
// earlier one keeps the mtime; mtimes less than 2 s before the listing
// are not trusted (the catalog's rule, catalog.h).
bool Settled(const std::pair<int64_t, int64_t>& folders, int64_t listed_ns) {
  constexpr int64_t kRacy = 2'000'000'000;
  return folders.first + kRacy < listed_ns &&
         folders.second + kRacy < listed_ns;
}

}  // namespace

Result<std::shared_ptr<const PointList>> OpenRepository::Points() {
  const auto asked = std::chrono::steady_clock::now();
  std::lock_guard lock(mu_);
  // Callers that waited for another's refresh take its result when that
  // listing began after they asked: it is as fresh as their own would be,
  // and 50 clients at once cost one listing, not 50 in a row.
  if (last_ && last_started_ >= asked) return last_;
  const auto started = std::chrono::steady_clock::now();
  // A local repository's folders tell whether a listing can change
  // anything: adding or removing a manifest or a protected marker changes
  // its folder's mtime (manifests are never rewritten in place).
  std::optional<std::pair<int64_t, int64_t>> folders =
      FolderTimes(repo_->dir());
  if (last_ && folders && last_folders_ == folders &&
      Settled(*folders, last_listed_ns_)) {
    // Unchanged: the same list, shared, not a copy of its 10,000 entries
    // per request; its listed_at stays the time of the listing it came from.
    last_started_ = started;
    return last_;
  }
  const int64_t listed_ns = NowNs();
  const repository::Backend& backend = repo_->backend();
  HAVEN_ASSIGN_OR_RETURN(std::vector<repository::ObjectInfo> listed,
                         backend.List(kSnapshots));
  std::string listed_at = NowIso8601();
  HAVEN_ASSIGN_OR_RETURN(std::vector<repository::ObjectInfo> prot,
                         backend.List(kProtected));
  if (!loaded_) {
    // The first time through the catalog: one scan, not a file per point.
    std::vector<std::string> errors;
    HAVEN_ASSIGN_OR_RETURN(std::vector<repository::Manifest> all,
                           repo_->ListSnapshots(&errors));
    for (repository::Manifest& m : all) {
      std::string id = m.id;
      known_[id].manifest =
          std::make_shared<const repository::Manifest>(std::move(m));
    }
    loaded_ = true;
  }
  std::map<std::string, Known> now;
  size_t kept = 0;  // points known before and unchanged
  for (const repository::ObjectInfo& o : listed) {
    std::string id = IdOf(o.name, kSnapshots);
    if (id.empty()) continue;
    auto it = known_.find(id);
    // A marker of 0 (first load, or a backend without one) is taken as
    // the same object: manifests are never rewritten in place, and
    // `haven check` is what finds a damaged one.
    if (it != known_.end() &&
        ((it->second.size == o.size && it->second.mtime_ns == o.mtime_ns) ||
         (it->second.size == 0 && it->second.mtime_ns == 0))) {
      Known k = std::move(it->second);
      k.size = o.size;
      k.mtime_ns = o.mtime_ns;
      now[id] = std::move(k);
      ++kept;
      continue;
    }
    Known k;
    k.size = o.size;
    k.mtime_ns = o.mtime_ns;
    auto m = repo_->LoadSnapshot(id);
    if (m.ok())
      k.manifest =
          std::make_shared<const repository::Manifest>(std::move(m).value());
    else
      k.error = id + ": " + m.status().message();
    now[id] = std::move(k);
  }
  const bool same = last_ && kept == known_.size() && kept == now.size();
  known_ = std::move(now);
  auto out = std::make_shared<PointList>();
  out->listed_at = listed_at;
  for (const repository::ObjectInfo& o : prot) {
    std::string id = IdOf(o.name, kProtected);
    if (!id.empty()) out->protected_ids.insert(id);
  }
  if (same) {  // nothing added, replaced or gone: the order stands
    out->points = last_->points;
    out->errors = last_->errors;
  } else {
    for (const auto& [id, k] : known_) {
      if (k.manifest)
        out->points.push_back(k.manifest);
      else
        out->errors.push_back(k.error);
    }
    // Newest first: the reverse of the repository's order (catalog.h).
    // (PointBefore parses the times: this sort is the costly part of a
    // refresh, so it runs only when the points changed.)
    std::sort(out->points.begin(), out->points.end(),
              [](const auto& a, const auto& b) {
                return repository::PointBefore(b->time, b->id, a->time, a->id);
              });
  }
  last_ = std::move(out);
  last_started_ = started;
  last_folders_ = folders;
  last_listed_ns_ = listed_ns;
  return last_;
}

RepositoryCache::RepositoryCache(const RepositoryCatalog& catalog,
                                 RepositoryCacheOptions options)
    : catalog_(catalog), options_(options) {
  reaper_ = std::thread([this] {
    std::unique_lock lock(mu_);
    while (!stop_) {
      stop_cv_.wait_for(lock, std::chrono::seconds(2));
      if (stop_) break;
      lock.unlock();
      Expire();
      lock.lock();
    }
  });
}

RepositoryCache::~RepositoryCache() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  reaper_.join();
}

Result<std::shared_ptr<OpenRepository>> RepositoryCache::Get(
    const std::string& name) {
  Expire();
  std::shared_ptr<std::mutex> opening;
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(name);
    if (it != entries_.end()) {
      it->second.used = std::chrono::steady_clock::now();
      return it->second.open;
    }
    auto& o = opening_[name];
    if (!o) o = std::make_shared<std::mutex>();
    opening = o;
  }
  std::lock_guard open_lock(*opening);
  {  // another request may have opened it meanwhile
    std::lock_guard lock(mu_);
    auto it = entries_.find(name);
    if (it != entries_.end()) return it->second.open;
  }
  repository::OpenOptions o;
  o.lock_wait_seconds = options_.lock_wait_seconds;
  auto repo = catalog_.Open(name, o);
  if (!repo.ok()) {
    // A lock wait's timeout is Unavailable (503): gc holds it alone.
    return repo.status();
  }
  auto open = std::make_shared<OpenRepository>(std::move(repo).value());
  std::lock_guard lock(mu_);
  auto now = std::chrono::steady_clock::now();
  entries_[name] = Entry{open, now, now};
  return open;
}

void RepositoryCache::Drop(const std::string& name) {
  std::shared_ptr<OpenRepository> closing;  // closed outside the lock
  std::lock_guard lock(mu_);
  auto it = entries_.find(name);
  if (it == entries_.end()) return;
  closing = std::move(it->second.open);
  entries_.erase(it);
}

void RepositoryCache::DropAll() {
  std::map<std::string, Entry> closing;
  std::lock_guard lock(mu_);
  closing.swap(entries_);
}

void RepositoryCache::Expire() {
  bool closed = false;
  {
    std::vector<std::shared_ptr<OpenRepository>> closing;
    std::lock_guard lock(mu_);
    auto now = std::chrono::steady_clock::now();
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (now - it->second.used > options_.max_idle ||
          now - it->second.opened > options_.max_age) {
        closing.push_back(std::move(it->second.open));
        it = entries_.erase(it);
      } else {
        ++it;
      }
    }
    closed = !closing.empty();
  }  // closed here, after the lock is released
  // An entry holds its points' manifests and RocksDB's caches: once they
  // are freed, give the heap back (glibc keeps it in the arenas otherwise;
  // see notify_monitor.cc).
  if (closed) malloc_trim(0);
}

}  // namespace haven::appliance
