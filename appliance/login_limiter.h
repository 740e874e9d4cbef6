// LoginLimiter: slows down password guessing at POST /api/v1/login.
//
// Failures are counted per source address and per user name. Once a key
// has `free_failures` failures, each further attempt must wait
// base_delay * 2^(failures - free_failures), at most max_delay, after the
// last failure; an attempt during the wait is refused (429 with
// Retry-After) without the password being checked, so a guess made then
// is not even tried. A success clears both keys; a key with no failure for
// `forget_after` is dropped.
//
// The per-user count means someone who knows the user name can keep that
// user's console login slowed down (never beyond max_delay per attempt);
// API tokens are not affected, and the per-user threshold is higher than
// the per-address one so the owner, from their own address, is rarely the
// one who waits. In memory only: a restart of havend clears it.
//
// Thread-safe.
#ifndef HAVEN_APPLIANCE_LOGIN_LIMITER_H_
#define HAVEN_APPLIANCE_LOGIN_LIMITER_H_

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

namespace haven::appliance {

struct LoginLimits {
  int free_failures_per_address = 5;
  int free_failures_per_user = 10;
  int64_t base_delay_seconds = 1;
  int64_t max_delay_seconds = 300;
  int64_t forget_after_seconds = 3600;
};

class LoginLimiter {
 public:
  explicit LoginLimiter(LoginLimits limits = {}) : limits_(limits) {}

  // Seconds `address` / `user` must still wait at time `now` (seconds since
  // the epoch) before another attempt; 0 when it may try now.
  int64_t RetryAfter(std::string_view address, std::string_view user,
                     int64_t now);
  void Failed(std::string_view address, std::string_view user, int64_t now);
  void Succeeded(std::string_view address, std::string_view user);

 private:
  struct Entry {
    int failures = 0;
    int64_t last = 0;
  };
  int64_t Wait(const std::string& key, int free_failures, int64_t now) const;
  void Prune(int64_t now);

  const LoginLimits limits_;
  std::mutex mu_;
  std::map<std::string, Entry> entries_;  // "a:ADDRESS", "u:USER"
};

// The address part of a Request::peer ("127.0.0.1:5123" -> "127.0.0.1",
// "[::1]:5123" -> "[::1]").
std::string PeerAddress(std::string_view peer);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_LOGIN_LIMITER_H_
