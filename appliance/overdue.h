// Which VMs are overdue: no successful backup within the interval their
// schedule expects. A pure function over the VMs' last successes and the
// schedules, so it is tested without a clock or a database; the notify
// monitor (appliance/notify_monitor.h) calls it every minute.
//
// For a schedule whose last two elapses at or before `now` are E0 < E1,
// the expected interval is E1 - E0 and the grace is
// max(min_grace, interval * grace_fraction) (time for the backup itself to
// run) plus the schedule's random delay. A VM the schedule covers is overdue
// when
//   - it has no success since E1 (last success < E1, or none), and
//   - now > last success + interval + grace; or, for a VM never backed up,
//     now > the schedule's first elapse after it was made + grace (E0 +
//     grace when that time is unknown).
// So a daily 02:00 schedule whose run fails makes the VM overdue the next
// morning after the grace, and "Mon..Fri 02:00" is not overdue on Sunday
// for a VM that succeeded on Friday.
#ifndef HAVEN_APPLIANCE_OVERDUE_H_
#define HAVEN_APPLIANCE_OVERDUE_H_

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "appliance/notify_message.h"
#include "base/calendar.h"

namespace haven::appliance {

// The VMs a backup schedule expects, into one repository.
struct ScheduleCoverage {
  std::string name;
  CalendarEvent calendar;
  std::string repository;
  bool all_vms = true;
  std::vector<std::string> vms;      // without all_vms: exactly these
  std::vector<std::string> exclude;  // with all_vms: all known but these
                                     // (names or globs: test-*)
  int64_t created_at = 0;            // Unix seconds; 0 unknown (long ago)
  int64_t random_delay_seconds = 0;  // runs start up to this late
};

// A VM havend knows (from its backup history or a schedule's list) and its
// last successful backup into one repository.
struct VmLastSuccess {
  std::string vm;
  std::string repository;
  std::optional<int64_t> last_success;  // Unix seconds
};

struct OverduePolicy {
  int64_t min_grace_seconds = 3600;
  double grace_fraction = 0.25;
};

// The last two times (E0 < E1 <= now) `event` elapsed, or nullopt when it
// has not elapsed twice in the last eight years.
std::optional<std::pair<int64_t, int64_t>> LastTwoElapses(
    const CalendarEvent& event, int64_t now);

// Every (VM, repository) overdue at `now`, once (the first schedule that
// finds it names it), sorted by repository and VM. VMs an all-VMs schedule
// covers are those in `known` under any repository, minus its exclusions.
std::vector<OverdueVm> FindOverdueVms(
    const std::vector<VmLastSuccess>& known,
    const std::vector<ScheduleCoverage>& schedules, int64_t now,
    const OverduePolicy& policy = {});

// Episodes: a VM is told once when it becomes overdue, and again only after
// it has had a success (left the overdue list) and become overdue anew.
class OverdueTracker {
 public:
  // The VMs of `overdue` that were not overdue at the last Update.
  std::vector<OverdueVm> Update(const std::vector<OverdueVm>& overdue);
  const std::vector<OverdueVm>& current() const { return current_; }

 private:
  std::set<std::pair<std::string, std::string>> keys_;  // repository, vm
  std::vector<OverdueVm> current_;
};

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_OVERDUE_H_
