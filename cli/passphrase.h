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
  std::string env_file_var;  // "HAVEN_PASSWORD_FILE", or "" if there is none
  std::string env_file;      // its value: read after env_var
  std::string prompt;      // "Repository passphrase: "
  bool confirm = false;    // ask twice on a terminal (new passphrases)
};

// With `used`, says where the passphrase came from ("HAVEN_PASSWORD",
// "--password-file F", "HAVEN_PASSWORD_FILE (F)", "the prompt"), for an
// error that says it is wrong.
Result<std::string> GetPassphrase(const PassphraseSource& src,
                                  std::string* used = nullptr);

// `s` when it is not a wrong passphrase; else `s` naming where the
// passphrase came from (`used`) and which other sources were set but not
// read, so that a stale HAVEN_PASSWORD beside HAVEN_PASSWORD_FILE is found.
Status NamePassphraseSource(const Status& s, const PassphraseSource& src,
                            const std::string& used);

}  // namespace haven::cli

#endif  // HAVEN_CLI_PASSPHRASE_H_
