#include "appliance/login_limiter.h"

#include <algorithm>

namespace haven::appliance {
namespace {

std::string AddressKey(std::string_view address) {
  return "a:" + std::string(address);
}
std::string UserKey(std::string_view user) { return "u:" + std::string(user); }

// Entries kept at most; beyond it the oldest are dropped first, so a flood
// of made-up user names cannot grow the map without bound.
constexpr size_t kMaxEntries = 100000;

}  // namespace

int64_t LoginLimiter::Wait(const std::string& key, int free_failures,
                           int64_t now) const {
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.failures < free_failures) return 0;
  int over = std::min(it->second.failures - free_failures, 30);
  int64_t delay =
      std::min(limits_.base_delay_seconds << over, limits_.max_delay_seconds);
  return std::max<int64_t>(0, it->second.last + delay - now);
}

int64_t LoginLimiter::RetryAfter(std::string_view address,
                                 std::string_view user, int64_t now) {
  std::lock_guard lock(mu_);
  return std::max(
      Wait(AddressKey(address), limits_.free_failures_per_address, now),
      Wait(UserKey(user), limits_.free_failures_per_user, now));
}

void LoginLimiter::Failed(std::string_view address, std::string_view user,
                          int64_t now) {
  std::lock_guard lock(mu_);
  Prune(now);
  for (const std::string& key : {AddressKey(address), UserKey(user)}) {
    Entry& e = entries_[key];
    ++e.failures;
    e.last = now;
  }
}

void LoginLimiter::Succeeded(std::string_view address, std::string_view user) {
  std::lock_guard lock(mu_);
  entries_.erase(AddressKey(address));
  entries_.erase(UserKey(user));
}

void LoginLimiter::Prune(int64_t now) {
  std::erase_if(entries_, [&](const auto& kv) {
    return now - kv.second.last > limits_.forget_after_seconds;
  });
  while (entries_.size() >= kMaxEntries) {
    auto oldest = std::min_element(entries_.begin(), entries_.end(),
                                   [](const auto& a, const auto& b) {
                                     return a.second.last < b.second.last;
                                   });
    entries_.erase(oldest);
  }
}

std::string PeerAddress(std::string_view peer) {
  size_t colon = peer.rfind(':');
  if (colon == std::string_view::npos || peer.ends_with(']'))
    return std::string(peer);
  return std::string(peer.substr(0, colon));
}

}  // namespace haven::appliance
