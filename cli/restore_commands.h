// `haven restore image|config|vm|host`: parse, call restore::RestoreImage / PlanHostRestore + RestoreHost, print.
#ifndef HAVEN_CLI_RESTORE_COMMANDS_H_
#define HAVEN_CLI_RESTORE_COMMANDS_H_

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "cli/common.h"
#include "restore/host_restore.h"

namespace haven::cli {

struct RestoreVmArgs {
  bool host = false;  // `restore host`: several VMs, one summary
  std::string uri = "qemu:///system";
  std::vector<std::string> network_map;
  // Instant recovery: run the VM from the point (restore/instant_restore.h);
  // with finish or discard the positional names the instant VM.
  bool instant = false, finish = false, discard = false;
  size_t cache_mb = 256;
  restore::HostRestoreRequest req;
};

// Adds the commands to `app`; their callbacks set `rc`. The flags live
// here, so the object must outlive app.parse().
struct RestoreCommands {
  RestoreCommands(CLI::App& app, const Globals& g, int& rc);
  RestoreCommands(const RestoreCommands&) = delete;
  RestoreCommands& operator=(const RestoreCommands&) = delete;

  CLI::App* rest = nullptr;  // `restore file|files` join it
  std::string spec;
  std::string to, disk;
  bool overwrite = false, verify_ids = false;
  std::string restore_format = "raw";
  RestoreVmArgs rvm;
  struct VerifyArgs {
    std::string vm, point, console, storage_dir, screenshot,
        uri = "qemu:///system";
    bool agent = false;
    double timeout = 300;
    size_t cache_mb = 256;
  } verify;
};

}  // namespace haven::cli

#endif  // HAVEN_CLI_RESTORE_COMMANDS_H_
