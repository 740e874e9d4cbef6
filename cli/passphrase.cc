#include "cli/passphrase.h"

#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <vector>

#include "base/file.h"

namespace haven::cli {
namespace {

Result<std::string> Prompt(const std::string& text) {
  int fd = STDIN_FILENO;
  std::fprintf(stderr, "%s", text.c_str());
  std::fflush(stderr);
  termios old{};
  bool tty = ::tcgetattr(fd, &old) == 0;
  if (tty) {
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(fd, TCSAFLUSH, &quiet);
  }
  std::string line;
  bool got = static_cast<bool>(std::getline(std::cin, line));
  if (tty) ::tcsetattr(fd, TCSAFLUSH, &old);
  std::fprintf(stderr, "\n");
  if (!got) return InvalidArgument("no passphrase was entered");
  return line;
}

}  // namespace

Result<std::string> ReadPassphraseFile(const std::string& path) {
  auto data = ReadFile(path, 4096);
  if (!data.ok())
    return InvalidArgument("cannot read the password file: " + data.status().message());
  std::string s(data->begin(), data->end());
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  if (s.empty()) return InvalidArgument("the password file " + path + " is empty");
  return s;
}

Result<std::string> GetPassphrase(const PassphraseSource& src,
                                  std::string* used) {
  std::string ignored;
  std::string& from = used ? *used : ignored;
  if (!src.flag_file.empty()) {
    from = "--password-file " + src.flag_file;
    return ReadPassphraseFile(src.flag_file);
  }
  if (const char* v = std::getenv(src.env_var.c_str()); v && *v) {
    from = src.env_var;
    return std::string(v);
  }
  if (!src.env_file.empty()) {
    from = src.env_file_var + " (" + src.env_file + ")";
    return ReadPassphraseFile(src.env_file);
  }
  if (!::isatty(STDIN_FILENO))
    return InvalidArgument(
        "no passphrase given: set " + src.env_var +
        (src.env_file_var.empty()
             ? ""
             : " or " + src.env_file_var + " (a file holding it)") +
        ", pass --password-file, or run on a terminal");
  from = "the prompt";
  HAVEN_ASSIGN_OR_RETURN(std::string first, Prompt(src.prompt));
  if (first.empty()) return InvalidArgument("the passphrase is empty");
  if (src.confirm) {
    HAVEN_ASSIGN_OR_RETURN(std::string second, Prompt("Repeat: "));
    if (second != first) return InvalidArgument("the passphrases do not match");
  }
  return first;
}

Status NamePassphraseSource(const Status& s, const PassphraseSource& src,
                            const std::string& used) {
  if (s.code() != Code::kPermissionDenied ||
      s.message().rfind("wrong passphrase", 0) != 0 || used.empty())
    return s;
  std::vector<std::string> unread;
  const char* env = std::getenv(src.env_var.c_str());
  if (env && *env && used != src.env_var) unread.push_back(src.env_var);
  if (!src.env_file.empty() && used.rfind(src.env_file_var, 0) != 0)
    unread.push_back(src.env_file_var);
  std::string msg = s.message() + " (the passphrase came from " + used;
  for (size_t k = 0; k < unread.size(); ++k)
    msg += (k == 0 ? "; " : " and ") + unread[k];
  if (!unread.empty())
    msg += std::string(unread.size() == 1 ? " is" : " are") +
           " set too but not read: --password-file comes first, then " +
           src.env_var + ", then " + src.env_file_var;
  return Status(s.code(), msg + ")");
}

}  // namespace haven::cli
