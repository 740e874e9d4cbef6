// Preflight of the folder a VM restore writes into: what a dry run must find
// so that the run does not fail half-way — a folder that is not one, cannot
// be made or written, lies on a read-only file system, has too little free
// space, or cannot be entered by the user QEMU runs as (the VM would be
// defined but could not open its disks).
#ifndef HAVEN_RESTORE_STORAGE_PREFLIGHT_H_
#define HAVEN_RESTORE_STORAGE_PREFLIGHT_H_

#include <cstdint>
#include <string>
#include <vector>

namespace haven::restore {

struct StorageCheck {
  std::string existing;             // the folder, or its nearest ancestor
  std::vector<std::string> create;  // folders to make, outermost first
  uint64_t device = 0;              // st_dev of `existing`
  uint64_t free_bytes = 0;          // available to this process
  std::vector<std::string> problems;  // each names the folder and the fix
};

// Checks `dir` (absolute) as the calling process: it or the nearest
// existing ancestor must be a folder on a writable file system that this
// process can write to and enter.
StorageCheck CheckStorageFolder(const std::string& dir);

// The problem if the user of `dac_label` ("+UID:+GID" or "user:group", as
// libvirt's capabilities give it) cannot enter every existing folder on the
// way to `dir` (with its supplementary groups; ACLs are not consulted); ""
// if it can, if the label is empty, or if it is root.
std::string QemuAccessProblem(const std::string& dir,
                              const std::string& dac_label);

}  // namespace haven::restore

#endif  // HAVEN_RESTORE_STORAGE_PREFLIGHT_H_
