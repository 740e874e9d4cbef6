// Verified restores: a recovery point proven by booting it.
//
// VerifyRestore restores the point as a throw-away VM and checks that it
// comes up, then removes everything it made:
//   1. an isolated libvirt network haven-verify-<tag> (no <forward>, no
//      address: no route anywhere) to which every network interface of the
//      VM is mapped, and every bridge interface to its bridge; a VM with
//      other interfaces, disks not in the point, host devices (<hostdev>,
//      <filesystem>, ...) or UEFI variables is refused, named;
//   2. the VM haven-verify-<tag> (new UUID and MACs) by instant recovery
//      (restore/instant_restore.h): its disks are overlays over the point,
//      so nothing is copied and the guest's writes go with the overlays;
//      its serial port writes into <storage>/.haven-verify-<tag>/console.log
//      and it gets a VGA screen if it has none;
//   3. the checks, until all pass or the time is up: the serial console
//      shows a text, and/or the QEMU guest agent answers; a disk read the
//      repository could not serve fails the test;
//   4. a screenshot of the screen (PNG), the console's last lines;
//   5. the VM, its overlays and server, the network and the folder go.
// A point that does not come up is a result (passed = false, with the
// reason in words), not an error; errors are for what keeps the test from
// running (the host, the repository, a network name taken).
#ifndef HAVEN_RESTORE_VERIFY_RESTORE_H_
#define HAVEN_RESTORE_VERIFY_RESTORE_H_

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "base/progress.h"
#include "base/status.h"
#include "repository/repository.h"
#include "restore/vm_restore.h"
#include "snapshot/libvirt_host.h"

namespace haven::restore {

struct VerifyRequest {
  repository::Manifest point;  // a `backup vm` point
  InstantSource source;        // where it is served from
  std::string storage_dir;     // overlays and console; "": kDefaultStorageDir
  // Text the serial console must show (plain, at most 256 printable
  // bytes: no regular expression a guest's output could make slow); ""
  // checks no console line.
  std::string console_pattern;
  bool agent = false;  // the QEMU guest agent must answer
  double timeout_seconds = 300;
  std::function<void(const std::string&)> log;
  CancelToken cancel;
};

struct VerifyResult {
  std::string point, vm;  // the point's id and VM name
  std::string time;       // when the test started, RFC 3339 UTC
  bool passed = false;
  std::string check;           // what was checked, in words
  std::string reason;          // why it failed; "" when it passed
  double boot_seconds = 0;     // start of the VM to the checks passing
  double seconds = 0;          // the whole test, teardown included
  std::string console_tail;    // the serial console's last lines (<= 4 KiB)
  std::string screenshot_png;  // "" when none could be taken
  std::string screenshot_error;
  std::vector<std::string> left_behind;  // what teardown could not remove
};

// The record stored with the point (Repository::WriteVerification) and
// printed by --json; the PNG as base64 only when asked.
nlohmann::json VerifyResultJson(const VerifyResult& r, bool screenshot);

// A point's stored verification record for people and the API: null when
// it was never verified, {"error": ...} when the record cannot be read, else
// the record without its screenshot. `haven show` and havend both use it.
nlohmann::json VerificationSummary(const repository::Repository& repo,
                                   const std::string& id);

// The PNG of the point's last verification; NotFound when it has none.
Result<std::string> VerificationScreenshot(const repository::Repository& repo,
                                           const std::string& id);

Result<VerifyResult> VerifyRestore(const repository::PointReader& repo,
                                   const snapshot::LibvirtHost& host,
                                   const VerifyRequest& request);

}  // namespace haven::restore

#endif  // HAVEN_RESTORE_VERIFY_RESTORE_H_
