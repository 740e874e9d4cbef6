// What every haven command shares: global options, exit codes, errors,
// and opening the repository.
#ifndef HAVEN_CLI_COMMON_H_
#define HAVEN_CLI_COMMON_H_

#include <memory>
#include <string>

#include "base/progress.h"
#include "base/status.h"
#include "repository/repository.h"

namespace haven::cli {

constexpr int kExitOk = 0, kExitFailure = 1, kExitUsage = 2, kExitPartial = 3;
// Stopped by SIGINT or SIGTERM at a safe point (128 + SIGINT, as shells do).
constexpr int kExitCancelled = 130;

struct Globals {
  std::string repo;
  std::string password_file;
  bool json = false;
  bool quiet = false;
  double lock_wait = 24 * 3600;
  // Cancelled by the first SIGINT or SIGTERM (StopOnSignals); every job a
  // command runs takes it.
  CancelToken cancel;
};

// The first SIGINT or SIGTERM cancels `token` (jobs stop at their next safe
// point: no partial recovery point, partial restore targets removed); a
// second one kills the process at once.
void StopOnSignals(const CancelToken& token);

// $HAVEN_REPOSITORY, else the embedded default local path.
std::string DefaultRepository();

// Prints `s` (as JSON too with --json); returns the exit code for it:
// 2 for InvalidArgument (usage), else 1.
int Fail(const Globals& g, const Status& s);

// The repository's passphrase (cli/passphrase.h); `used` says where it came
// from.
Result<std::string> Passphrase(const Globals& g, bool confirm,
                               std::string* used = nullptr);
// A "wrong passphrase" error naming where the passphrase came from and the
// other sources set but not read; any other status as it is.
Status NamePassphraseSource(const Globals& g, const Status& s,
                            const std::string& used);
repository::OpenOptions OpenOpts(const Globals& g, bool write);
Result<std::unique_ptr<repository::Repository>> OpenRepo(const Globals& g,
                                                         bool write);
// The same, and the passphrase it was opened with in `*passphrase` (for a
// helper process that opens the repository too: asked for once).
Result<std::unique_ptr<repository::Repository>> OpenRepo(
    const Globals& g, bool write, std::string* passphrase);

}  // namespace haven::cli

#endif  // HAVEN_CLI_COMMON_H_
