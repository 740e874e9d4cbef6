#include "repository/store_lock.h"

#include <signal.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <random>

#include "base/file.h"
#include "repository/crypto.h"

namespace haven::repository {

namespace {

constexpr size_t kMaxLockObject = 4096;

double WallSeconds() {
  struct timeval tv;
  ::gettimeofday(&tv, nullptr);
  return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6;
}

std::string HostName() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return host;
}

// This machine, as /etc/machine-id says (hosts cloned from one image share
// a host name, not a machine id); empty where there is none.
std::string MachineId() {
  auto raw = ReadFile("/etc/machine-id", 256);
  if (!raw.ok()) return "";
  std::string id(raw->begin(), raw->end());
  while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
  return id;
}

struct Holder {
  std::string name, mode, host, machine;
  int64_t pid = 0;
  double expires = 0;
};

// Lock objects are untrusted: one that does not parse is treated as live
// until it is older than the longest expiry anyone may set (a day), so a
// damaged lock object neither blocks forever nor is ignored at once.
Holder Parse(const std::string& name, const Bytes& raw, int64_t mtime_ns) {
  Holder h;
  h.name = name;
  auto j = nlohmann::json::parse(raw.begin(), raw.end(), nullptr, false);
  if (j.is_object() && j["mode"].is_string() && j["expires"].is_number()) {
    h.mode = j["mode"];
    h.expires = j["expires"];
    // No lock outlives a day past its last write, whatever it claims.
    if (mtime_ns > 0) h.expires = std::min(h.expires, mtime_ns / 1e9 + 86400);
    if (j["host"].is_string()) h.host = j["host"];
    if (j["machine"].is_string()) h.machine = j["machine"];
    if (j["pid"].is_number_integer()) h.pid = j["pid"];
    return h;
  }
  h.mode = "exclusive";
  h.expires = mtime_ns > 0 ? mtime_ns / 1e9 + 86400 : WallSeconds() + 60;
  return h;
}

// A holder on this machine whose process is gone is stale at once. Only
// with a machine id on both sides: a host name alone may be shared.
bool Dead(const Holder& h, const std::string& host,
          const std::string& machine) {
  if (machine.empty() || h.machine != machine || h.host != host || h.pid <= 0 ||
      h.pid == ::getpid())
    return false;
  return ::kill(static_cast<pid_t>(h.pid), 0) != 0 && errno == ESRCH;
}

}  // namespace

StoreLockOptions StoreLockOptionsFromEnvironment() {
  StoreLockOptions o;
  if (const char* v = std::getenv("HAVEN_STORE_LOCK_EXPIRY"); v && *v) {
    double s = std::atof(v);
    if (s >= 10 && s <= 86400) {
      o.expiry_seconds = s;
      o.refresh_seconds = s / 5;
    }
  }
  return o;
}

Status StoreLock::Write(double now) {
  nlohmann::json j = {{"mode", mode_ == Mode::kShared ? "shared" : "exclusive"},
                      {"host", HostName()},
                      {"machine", MachineId()},
                      {"pid", static_cast<int64_t>(::getpid())},
                      {"created", static_cast<int64_t>(now)},
                      {"expires", now + options_.expiry_seconds}};
  std::string text = j.dump();
  HAVEN_RETURN_IF_ERROR(
      backend_.WriteAtomic(name_, AsBytes(text), WriteMode::kReplace));
  expires_ = now + options_.expiry_seconds;
  return OkStatus();
}

Result<std::unique_ptr<StoreLock>> StoreLock::Acquire(
    Backend& backend, Mode mode, StoreLockOptions options) {
  std::unique_ptr<StoreLock> lock(new StoreLock(backend, mode, options));
  uint8_t id[16];
  RandomBytes(id, sizeof id);
  lock->name_ = "locks/" + HexEncode(ByteSpan(id, sizeof id));
  std::string host = HostName(), machine = MachineId();
  std::mt19937_64 rng{std::random_device{}()};
  double start = WallSeconds();
  std::string last_said;
  for (int attempt = 0;; ++attempt) {
    HAVEN_RETURN_IF_ERROR(
        lock->Write(WallSeconds()).WithContext("take the repository lock"));
    auto listed = backend.List("locks/");
    if (!listed.ok()) {
      (void)backend.Delete(lock->name_);
      return listed.status().WithContext("take the repository lock");
    }
    std::string conflict;
    double now = WallSeconds();
    for (const ObjectInfo& o : *listed) {
      if (o.name == lock->name_) continue;
      auto raw = backend.Read(o.name, kMaxLockObject);
      if (!raw.ok() && raw.status().code() == Code::kNotFound)
        continue;  // released meanwhile
      // Unreadable (the store failing, or an object too large to be a
      // lock): taken as a live exclusive lock, never as none.
      Holder h = raw.ok() ? Parse(o.name, *raw, o.mtime_ns)
                          : Holder{o.name, "exclusive", "", "", 0, now + 1};
      if (h.expires < now || Dead(h, host, machine)) {
        (void)backend.Delete(o.name);  // stale: best effort
        continue;
      }
      bool clash = mode == Mode::kExclusive || h.mode != "shared";
      if (clash) {
        conflict = h.mode + " lock of " +
                   (h.host.empty() ? std::string("an unknown holder")
                                   : h.host + " pid " + std::to_string(h.pid));
        break;
      }
    }
    if (conflict.empty()) break;
    (void)backend.Delete(lock->name_);
    double waited = WallSeconds() - start;
    if (waited >= options.wait_seconds)
      return Unavailable("the repository in " + backend.Describe() +
                         " is locked (" + conflict + "); gave up after " +
                         std::to_string(static_cast<int>(waited)) + " s");
    std::string say = "waiting for the " + conflict;
    if (options.on_wait && say != last_said) options.on_wait(say);
    last_said = say;
    std::uniform_real_distribution<double> pause(0.2, attempt < 5 ? 1.0 : 5.0);
    std::this_thread::sleep_for(std::chrono::duration<double>(pause(rng)));
  }
  lock->refresher_ = std::thread([l = lock.get()] { l->RefreshLoop(); });
  return lock;
}

void StoreLock::RefreshLoop() {
  std::unique_lock lk(mu_);
  while (!stop_) {
    cv_.wait_for(lk, std::chrono::duration<double>(options_.refresh_seconds),
                 [&] { return stop_; });
    if (stop_) break;
    lk.unlock();
    // Gone means another machine judged it stale and removed it: the lock
    // is lost even if it could be written again.
    auto still = backend_.Stat(name_);
    if (!still.ok() && still.status().code() == Code::kNotFound) {
      lost_ = true;
    } else {
      Status s = Write(WallSeconds());
      if (!s.ok() && WallSeconds() > expires_.load() - 1) lost_ = true;
    }
    lk.lock();
  }
}

Status StoreLock::Valid() const {
  // Asked before a commit or a deletion: one HEAD tells whether another
  // machine removed the lock object as stale.
  auto still = backend_.Stat(name_);
  if (!still.ok() && still.status().code() == Code::kNotFound) lost_ = true;
  if (lost_ || WallSeconds() > expires_.load())
    return FailedPrecondition(
        "lost the repository lock in " + backend_.Describe() +
        ": it could not be renewed before it expired, so another job may "
        "have deleted data; nothing was committed. Run the job again");
  return OkStatus();
}

StoreLock::~StoreLock() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (refresher_.joinable()) refresher_.join();
  (void)backend_.Delete(name_);
}

}  // namespace haven::repository
