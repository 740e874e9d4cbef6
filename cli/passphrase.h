// Where the passphrase comes from, first match wins: --password-file,
// HAVEN_PASSWORD, HAVEN_PASSWORD_FILE, a prompt on the terminal. It is never
// logged.
#ifndef HAVEN_CLI_PASSPHRASE_H_
#define HAVEN_CLI_PASSPHRASE_H_

#include <string>

#include "base/status.h"

namespace haven::cli {

struct PassphraseSource {
  std::string env_var;     // "HAVEN_PASSWORD"
  std::string flag_file;   // from a command-line flag: wins over everything
  std::string env_file;    // from the *_FILE variable: after env_var
  std::string prompt;      // "Repository passphrase: "
  bool confirm = false;    // ask twice on a terminal (new passphrases)
};

Result<std::string> GetPassphrase(const PassphraseSource& src);

}  // namespace haven::cli

#endif  // HAVEN_CLI_PASSPHRASE_H_
