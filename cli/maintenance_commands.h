// `haven init|key|check|forget|gc|repair|rebuild-index`: the repository's upkeep.
#ifndef HAVEN_CLI_MAINTENANCE_COMMANDS_H_
#define HAVEN_CLI_MAINTENANCE_COMMANDS_H_

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "cli/common.h"
#include "repository/gc.h"
#include "repository/repair.h"
#include "repository/repository.h"
#include "repository/retention.h"

namespace haven::cli {

struct ForgetArgs {
  repository::RetentionPolicy policy;
  std::string within;
  std::string name;                // only this backup name
  std::vector<std::string> specs;  // explicit recovery points to remove
  bool dry_run = false;
};

// Adds the commands to `app`; their callbacks set `rc`. The flags live
// here, so the object must outlive app.parse().
struct MaintenanceCommands {
  MaintenanceCommands(CLI::App& app, const Globals& g, int& rc);
  MaintenanceCommands(const MaintenanceCommands&) = delete;
  MaintenanceCommands& operator=(const MaintenanceCommands&) = delete;

  repository::InitOptions init_opts;
  std::string chunk_size_text = "64K";
  std::string pack_size_text = "16M";
  std::string copy_params_from, copy_params_password_file;
  std::string object_lock_text, object_lock_mode = "governance";
  std::string new_password_file;
  std::string slot;
  double read_data = 0;
  ForgetArgs forget_args;
  repository::GcOptions gc_opts;
  double repack_below_percent = 80;
  double max_unused_percent = 5;
  repository::RepairOptions repair_opts;
};

}  // namespace haven::cli

#endif  // HAVEN_CLI_MAINTENANCE_COMMANDS_H_
