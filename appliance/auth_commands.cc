#include "appliance/auth_commands.h"

#include <termios.h>
#include <unistd.h>

#include <iostream>

#include "appliance/auth.h"
#include "appliance/repositories.h"
#include "base/file.h"
#include "base/time.h"

namespace haven::appliance {
namespace {

Result<std::unique_ptr<StateDb>> OpenDb(const std::string& state_dir) {
  if (state_dir.empty()) return InvalidArgument("--state-dir is required");
  HAVEN_RETURN_IF_ERROR(MakeDirs(state_dir));
  return StateDb::Open(state_dir + "/havend.db");
}

// One line from stdin; with a terminal, without echo.
Result<std::string> ReadLine(const char* prompt) {
  bool tty = isatty(STDIN_FILENO) == 1;
  termios saved{};
  if (tty) {
    std::fprintf(stderr, "%s", prompt);
    std::fflush(stderr);
    tcgetattr(STDIN_FILENO, &saved);
    termios quiet = saved;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  }
  std::string line;
  bool got = static_cast<bool>(std::getline(std::cin, line));
  if (tty) {
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
    std::fprintf(stderr, "\n");
  }
  if (!got) return InvalidArgument("no password on standard input");
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

Result<std::string> ReadPassword(const std::string& file) {
  if (!file.empty() && file != "-") return ReadSecretFile(file);
  HAVEN_ASSIGN_OR_RETURN(std::string first, ReadLine("New admin password: "));
  if (isatty(STDIN_FILENO) == 1) {
    HAVEN_ASSIGN_OR_RETURN(std::string again, ReadLine("Again: "));
    if (again != first) return InvalidArgument("the two passwords differ");
  }
  if (first.empty()) return InvalidArgument("the password is empty");
  return first;
}

std::string Time(const std::optional<int64_t>& t, const char* none) {
  return t ? FormatTime(*t * 1000000000, TimeStyle::kRfc3339Utc) : none;
}

}  // namespace

Status SetAdminPassword(StateDb& db, std::string_view password) {
  HAVEN_ASSIGN_OR_RETURN(auto auth, AuthService::Open(db));
  return auth->SetPassword(kAdminUser, password, Role::kAdmin);
}

Status AdminPasswordCommand(const std::string& state_dir,
                            const std::string& password_file) {
  HAVEN_ASSIGN_OR_RETURN(std::string password, ReadPassword(password_file));
  HAVEN_ASSIGN_OR_RETURN(auto db, OpenDb(state_dir));
  HAVEN_RETURN_IF_ERROR(SetAdminPassword(*db, password));
  std::fprintf(stderr,
               "havend: the password of %s is set; its console sessions "
               "were ended\n",
               kAdminUser);
  return OkStatus();
}

Status TokenCreateCommand(const std::string& state_dir, const std::string& name,
                          const std::string& role, int expires_days,
                          std::FILE* out) {
  std::optional<Role> r = ParseRole(role);
  if (!r)
    return InvalidArgument("--role is admin, operator or auditor, not " +
                           QuoteUntrusted(role));
  HAVEN_ASSIGN_OR_RETURN(auto db, OpenDb(state_dir));
  HAVEN_ASSIGN_OR_RETURN(auto auth, AuthService::Open(*db));
  HAVEN_ASSIGN_OR_RETURN(NewToken token,
                         auth->CreateToken(name, *r, expires_days, "cli"));
  std::fprintf(out, "%s\n", token.secret.c_str());
  std::fflush(out);
  std::fprintf(stderr,
               "havend: token %lld \"%s\" (%s), expires %s; it is shown only "
               "now and stored hashed\n",
               static_cast<long long>(token.info.id), token.info.name.c_str(),
               role.c_str(), Time(token.info.expires, "never").c_str());
  return OkStatus();
}

Status TokenListCommand(const std::string& state_dir, std::FILE* out) {
  HAVEN_ASSIGN_OR_RETURN(auto db, OpenDb(state_dir));
  HAVEN_ASSIGN_OR_RETURN(auto auth, AuthService::Open(*db));
  HAVEN_ASSIGN_OR_RETURN(auto tokens, auth->ListTokens());
  std::fprintf(out, "%-5s %-24s %-9s %-21s %-21s %-21s\n", "ID", "NAME", "ROLE",
               "EXPIRES", "REVOKED", "LAST USED");
  for (const TokenInfo& t : tokens)
    std::fprintf(out, "%-5lld %-24s %-9s %-21s %-21s %-21s\n",
                 static_cast<long long>(t.id), t.name.c_str(),
                 std::string(RoleName(t.role)).c_str(),
                 Time(t.expires, "never").c_str(), Time(t.revoked, "-").c_str(),
                 Time(t.last_used, "-").c_str());
  return OkStatus();
}

Status TokenRevokeCommand(const std::string& state_dir, int64_t id) {
  HAVEN_ASSIGN_OR_RETURN(auto db, OpenDb(state_dir));
  HAVEN_ASSIGN_OR_RETURN(auto auth, AuthService::Open(*db));
  HAVEN_RETURN_IF_ERROR(auth->RevokeToken(id));
  std::fprintf(stderr, "havend: token %lld is revoked\n",
               static_cast<long long>(id));
  return OkStatus();
}

}  // namespace haven::appliance
