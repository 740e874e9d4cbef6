#include "cli/common.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>

#include "base/json.h"
#include "cli/passphrase.h"

namespace haven::cli {

std::string DefaultRepository() {
  if (const char* r = std::getenv("HAVEN_REPOSITORY"); r && *r) return r;
  if (::geteuid() == 0) return "/var/lib/haven/repository";
  if (const char* x = std::getenv("XDG_DATA_HOME"); x && *x)
    return std::string(x) + "/haven/repository";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : ".") + "/.local/share/haven/repository";
}

namespace {
std::atomic<bool>* g_stop = nullptr;

extern "C" void OnStopSignal(int sig) {
  if (g_stop->exchange(true)) {  // the second one: stop now
    ::signal(sig, SIG_DFL);
    ::raise(sig);
    return;
  }
  static const char kMsg[] =
      "\nhaven: stopping at the next safe point (again to stop at once)\n";
  ssize_t ignored = ::write(STDERR_FILENO, kMsg, sizeof kMsg - 1);
  (void)ignored;
}
}  // namespace

void StopOnSignals(const CancelToken& token) {
  g_stop = token.flag();
  struct sigaction sa = {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

int Fail(const Globals& g, const Status& s) {
  if (g.json) {
    nlohmann::json j = {{"error", s.message()},
                        {"code", std::string(CodeName(s.code()))}};
    std::cout << DumpJson(j) << "\n";
  }
  std::fprintf(stderr, "haven: error: %s\n", s.message().c_str());
  if (s.code() == Code::kCancelled) return kExitCancelled;
  return s.code() == Code::kInvalidArgument ? kExitUsage : kExitFailure;
}

namespace {
PassphraseSource RepositorySource(const Globals& g, bool confirm) {
  PassphraseSource src;
  src.env_var = "HAVEN_PASSWORD";
  src.flag_file = g.password_file;
  src.env_file_var = "HAVEN_PASSWORD_FILE";
  if (const char* f = std::getenv("HAVEN_PASSWORD_FILE"); f && *f)
    src.env_file = f;
  src.prompt = "Repository passphrase: ";
  src.confirm = confirm;
  return src;
}
}  // namespace

Result<std::string> Passphrase(const Globals& g, bool confirm,
                               std::string* used) {
  return GetPassphrase(RepositorySource(g, confirm), used);
}

Status NamePassphraseSource(const Globals& g, const Status& s,
                            const std::string& used) {
  return NamePassphraseSource(s, RepositorySource(g, false), used);
}

repository::OpenOptions OpenOpts(const Globals& g, bool write) {
  repository::OpenOptions o;
  o.write = write;
  o.lock_wait_seconds = g.lock_wait;
  bool quiet = g.quiet;
  o.on_wait = [quiet](const std::string& msg) {
    if (!quiet) std::fprintf(stderr, "haven: %s\n", msg.c_str());
  };
  return o;
}

Result<std::unique_ptr<repository::Repository>> OpenRepo(const Globals& g,
                                                         bool write) {
  return OpenRepo(g, write, nullptr);
}

Result<std::unique_ptr<repository::Repository>> OpenRepo(
    const Globals& g, bool write, std::string* passphrase) {
  std::string used;
  HAVEN_ASSIGN_OR_RETURN(std::string pass, Passphrase(g, false, &used));
  auto repo = repository::Repository::Open(g.repo, pass, OpenOpts(g, write));
  if (!repo.ok()) return NamePassphraseSource(g, repo.status(), used);
  if (passphrase) *passphrase = std::move(pass);
  return repo;
}

}  // namespace haven::cli
