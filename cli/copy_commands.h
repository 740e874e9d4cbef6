// `haven copy` and `haven seed export|import`: recovery points copied
// between repositories that share chunk-id keys (repository/copy.h,
// docs/copies.md).
#ifndef HAVEN_CLI_COPY_COMMANDS_H_
#define HAVEN_CLI_COPY_COMMANDS_H_

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "cli/common.h"
#include "repository/copy.h"

namespace haven::cli {

// The selection and options shared by copy and seed export.
struct CopyArgs {
  std::vector<std::string> refs, names;
  std::string since, until, limit_rate;
  repository::RetentionPolicy keep;
  repository::CopyOptions options;
  // Fills `opt.select` and the rate; InvalidArgument for a bad rate.
  Status ResolvePolicy(repository::CopyOptions& opt) const;
};

// Adds the commands to `app`; their callbacks set `rc`. The flags live
// here, so the object must outlive app.parse().
struct CopyCommands {
  CopyCommands(CLI::App& app, const Globals& g, int& rc);
  CopyCommands(const CopyCommands&) = delete;
  CopyCommands& operator=(const CopyCommands&) = delete;

  int Copy(const Globals& g);
  int SeedExport(const Globals& g);
  int SeedImport(const Globals& g);

  std::string from, to, from_password_file, to_password_file;
  bool init_target = false;
  CopyArgs copy_args, seed_args;
};

// `haven init --copy-params-from SOURCE`: makes the repository at -r with
// SOURCE's chunk size, pack size, compression level and chunk-id keys, and
// its own master secret and passphrase.
Status InitCopyingParams(const Globals& g, const std::string& source,
                         const std::string& source_password_file);

}  // namespace haven::cli

#endif  // HAVEN_CLI_COPY_COMMANDS_H_
