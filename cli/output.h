// Human and JSON output of the haven command: progress lines on a terminal,
// tables, sizes.
#ifndef HAVEN_CLI_OUTPUT_H_
#define HAVEN_CLI_OUTPUT_H_

#include <string>

#include "base/progress.h"

namespace haven::cli {

// A progress callback that redraws one line on stderr when it is a terminal
// and `enabled`; otherwise it does nothing. Without a total (total_bytes 0)
// it shows bytes done, rate and time, no percentage or ETA. An event that
// names its item (a VM, a disk) shows it after `verb`.
ProgressFn TerminalProgress(bool enabled, const std::string& verb);

std::string FormatDuration(double seconds);


}  // namespace haven::cli

#endif  // HAVEN_CLI_OUTPUT_H_
