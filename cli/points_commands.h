// `haven snapshots|show|protect|unprotect`: the recovery points of a repository.
#ifndef HAVEN_CLI_POINTS_COMMANDS_H_
#define HAVEN_CLI_POINTS_COMMANDS_H_

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/common.h"

namespace haven::cli {

// Adds the commands to `app`; their callbacks set `rc`. The flags live
// here, so the object must outlive app.parse().
struct PointsCommands {
  PointsCommands(CLI::App& app, const Globals& g, int& rc);
  PointsCommands(const PointsCommands&) = delete;
  PointsCommands& operator=(const PointsCommands&) = delete;

  std::string filter_name;
  std::string spec;
  std::vector<std::string> protect_specs;
};

}  // namespace haven::cli

#endif  // HAVEN_CLI_POINTS_COMMANDS_H_
