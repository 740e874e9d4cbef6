// Where the passphrase comes from: HAVEN_PASSWORD, --password-file /
// HAVEN_PASSWORD_FILE, or a prompt on the terminal. It is never logged.
#ifndef HAVEN_CLI_PASSPHRASE_H_
#define HAVEN_CLI_PASSPHRASE_H_

#include <string>

#include "base/status.h"

namespace haven::cli {

struct PassphraseSource {
  std::string env_var;     // "HAVEN_PASSWORD"
  std::string file;        // from a flag or the *_FILE variable
  std::string prompt;      // "Repository passphrase: "
  bool confirm = false;    // ask twice on a terminal (new passphrases)
};

Result<std::string> GetPassphrase(const PassphraseSource& src);

}  // namespace haven::cli

#endif  // HAVEN_CLI_PASSPHRASE_H_
