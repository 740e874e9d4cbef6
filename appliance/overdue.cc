#include "appliance/overdue.h"

#include <algorithm>
#include <map>

#include "base/glob.h"

namespace haven::appliance {

std::optional<std::pair<int64_t, int64_t>> LastTwoElapses(
    const CalendarEvent& event, int64_t now) {
  constexpr int64_t kMaxWindow = 8 * 366 * 86400LL;
  // Windows doubling back from now: the first holding two elapses holds
  // few, so each costs a handful of NextElapse calls.
  for (int64_t window = 64; window / 2 <= kMaxWindow; window *= 2) {
    int64_t t = std::max<int64_t>(0, now - window);
    std::optional<int64_t> e0, e1;
    for (int steps = 0; steps < 4096; ++steps) {
      std::optional<int64_t> next = NextElapse(event, t);
      if (!next || *next > now) break;
      e0 = e1;
      e1 = next;
      t = *next;
    }
    if (e0 && e1) return std::make_pair(*e0, *e1);
    if (now - window <= 0) break;
  }
  return std::nullopt;
}

namespace {

// Exclusions are domain names or globs, as the backup request takes them.
bool Excluded(const std::vector<std::string>& exclude, const std::string& vm) {
  for (const std::string& pattern : exclude)
    if (pattern == vm || MatchesGlob(pattern, vm)) return true;
  return false;
}

}  // namespace

std::vector<OverdueVm> FindOverdueVms(
    const std::vector<VmLastSuccess>& known,
    const std::vector<ScheduleCoverage>& schedules, int64_t now,
    const OverduePolicy& policy) {
  std::set<std::string> all_names;
  std::map<std::pair<std::string, std::string>, std::optional<int64_t>> last;
  for (const VmLastSuccess& v : known) {
    all_names.insert(v.vm);
    auto& slot = last[{v.repository, v.vm}];
    if (v.last_success && (!slot || *slot < *v.last_success))
      slot = v.last_success;
  }
  std::map<std::pair<std::string, std::string>, OverdueVm> found;
  for (const ScheduleCoverage& s : schedules) {
    auto elapses = LastTwoElapses(s.calendar, now);
    if (!elapses) continue;
    auto [e0, e1] = *elapses;
    int64_t interval = e1 - e0;
    int64_t grace =
        std::max<int64_t>(policy.min_grace_seconds,
                          static_cast<int64_t>(static_cast<double>(interval) *
                                               policy.grace_fraction)) +
        std::max<int64_t>(0, s.random_delay_seconds);
    std::vector<std::string> vms;
    if (s.all_vms) {
      for (const std::string& name : all_names)
        if (!Excluded(s.exclude, name)) vms.push_back(name);
    } else {
      vms = s.vms;
    }
    for (const std::string& vm : vms) {
      std::pair<std::string, std::string> key{s.repository, vm};
      if (found.count(key)) continue;
      auto it = last.find(key);
      std::optional<int64_t> success =
          it == last.end() ? std::nullopt : it->second;
      if (success && *success >= e1) continue;
      int64_t due;
      if (success) {
        due = *success + interval + grace;
      } else if (s.created_at > 0) {
        auto first = NextElapse(s.calendar, s.created_at);
        if (!first) continue;
        due = *first + grace;
      } else {
        due = e0 + grace;
      }
      if (now <= due) continue;
      found[key] = OverdueVm{vm, s.repository, s.name, success, interval, due};
    }
  }
  std::vector<OverdueVm> out;
  for (auto& [key, vm] : found) out.push_back(std::move(vm));
  return out;
}

std::vector<OverdueVm> OverdueTracker::Update(
    const std::vector<OverdueVm>& overdue) {
  std::set<std::pair<std::string, std::string>> keys;
  std::vector<OverdueVm> fresh;
  for (const OverdueVm& vm : overdue) {
    std::pair<std::string, std::string> key{vm.repository, vm.vm};
    keys.insert(key);
    if (!keys_.count(key)) fresh.push_back(vm);
  }
  keys_ = std::move(keys);
  current_ = overdue;
  return fresh;
}

}  // namespace haven::appliance
