// `haven ls` and `haven restore file`: the file systems inside an image
// backup's disks, read straight from the repository (restore/guest_fs.h).
#ifndef HAVEN_CLI_IMAGE_FILES_COMMANDS_H_
#define HAVEN_CLI_IMAGE_FILES_COMMANDS_H_

#include <CLI/CLI.hpp>

#include "cli/common.h"

namespace haven::cli {

// Adds `ls` to `app` and `file` to `restore`; their callbacks set `rc`.
void AddFileCommands(CLI::App& app, CLI::App& restore, const Globals& g,
                     int& rc);

}  // namespace haven::cli

#endif  // HAVEN_CLI_IMAGE_FILES_COMMANDS_H_
