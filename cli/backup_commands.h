// `haven backup image|vm`: parse, call agent::BackupImage / agent::BackupHost, print.
#ifndef HAVEN_CLI_BACKUP_COMMANDS_H_
#define HAVEN_CLI_BACKUP_COMMANDS_H_

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "cli/common.h"
#include "agent/host_backup.h"

namespace haven::cli {

// Adds the commands to `app`; their callbacks set `rc`. The flags live
// here, so the object must outlive app.parse().
struct BackupCommands {
  BackupCommands(CLI::App& app, const Globals& g, int& rc);
  BackupCommands(const BackupCommands&) = delete;
  BackupCommands& operator=(const BackupCommands&) = delete;

  CLI::App* backup = nullptr;  // `backup files` joins it
  std::string image_path, backup_name;
  std::string backup_time;
  std::string image_format = "auto";
  double image_limit_read = 0, vm_limit_read = 0;  // MB/s
  std::string image_priority = "low", vm_priority = "low";
  bool image_adaptive = false;
  agent::HostBackupRequest vm_args;
  std::string vm_uri = "qemu:///system";
};

// One VM's outcome of a VM backup, for people (`haven backup vm`, `haven
// agent backup-vm`).
void PrintVmBackup(const agent::VmBackupReport& r);

}  // namespace haven::cli

#endif  // HAVEN_CLI_BACKUP_COMMANDS_H_
