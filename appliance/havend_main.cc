// havend: the Haven appliance daemon. This file only parses the command
// line; the daemon lives in appliance/daemon.cc, the set-up in setup.cc.
#include <malloc.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <optional>

#include "appliance/agent_commands.h"  // --- agents: registry ---
#include "appliance/auth_commands.h"
#include "appliance/config.h"
#include "appliance/daemon.h"
#include "appliance/routes.h"
#include "appliance/setup.h"
#include "base/json.h"

#ifndef HAVEN_VERSION
#define HAVEN_VERSION "unknown"
#endif

namespace {

using haven::Result;
using haven::Status;
using haven::appliance::ApplianceConfig;
using haven::appliance::ServeOptions;

int Fail(const Status& s) {
  std::fprintf(stderr, "havend: error: %s\n", s.message().c_str());
  return s.code() == haven::Code::kInvalidArgument ? 2 : 1;
}

int FailOrZero(const Status& s) { return s.ok() ? 0 : Fail(s); }

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// havend.conf: the one given, else the default one when it exists, else
// none (nullopt: the defaults, and --state-dir is required).
Result<std::optional<ApplianceConfig>> ReadConfig(const std::string& given) {
  std::string path = given;
  if (path.empty()) {
    if (!Exists(haven::appliance::kDefaultConfigPath))
      return std::optional<ApplianceConfig>();
    path = haven::appliance::kDefaultConfigPath;
  }
  HAVEN_ASSIGN_OR_RETURN(ApplianceConfig c, haven::appliance::LoadConfig(path));
  return std::optional<ApplianceConfig>(std::move(c));
}

// The configuration under the command line: an option given on the command
// line wins over the file.
void ApplyConfig(const ApplianceConfig& c, const CLI::App& serve,
                 ServeOptions& o) {
  o.config = c;
  if (!serve.get_option("--state-dir")->count()) o.state_dir = c.state_dir;
  if (!serve.get_option("--listen")->count() && !c.listen.empty())
    o.listen = c.listen;
  if (!serve.get_option("--cert")->count() &&
      !serve.get_option("--key")->count()) {
    o.cert_file = c.cert_file;
    o.key_file = c.key_file;
  }
  if (!serve.get_option("--max-body")->count())
    o.max_body_bytes = c.max_body_bytes;
  if (!serve.get_option("--threads")->count()) o.threads = c.threads;
  // The job side's settings: the file's, unless the command line gives
  // its own.
  if (!serve.get_option("--repository")->count())
    o.repositories = c.repositories;
  if (!serve.get_option("--libvirt-uri")->count()) o.libvirt_uri = c.libvirt_uri;
  if (!serve.get_option("--console-dir")->count())
    o.console_dir = c.console_dir;
  if (!serve.get_option("--max-jobs")->count()) o.max_jobs = c.max_jobs;
  if (!serve.get_option("--max-jobs-per-repository")->count())
    o.max_jobs_per_repository = c.max_jobs_per_repository;
  bool notify_flags = false;
  for (const CLI::Option* opt : serve.get_options())
    if (opt->get_name().rfind("--notify-", 0) == 0 && opt->count())
      notify_flags = true;
  if (!notify_flags) o.notify = c.notify;
  o.config.state_dir = o.state_dir;
  o.config.listen = o.listen;
  o.config.cert_file = o.cert_file;
  o.config.key_file = o.key_file;
}

int RunInit(const haven::appliance::SetupOptions& o) {
  auto r = haven::appliance::SetUpAppliance(o, [](const std::string& line) {
    std::printf("havend init: %s\n", line.c_str());
    std::fflush(stdout);
  });
  if (!r.ok()) return Fail(r.status());
  std::printf("\n");
  std::printf("URL:                         %s\n", r->url.c_str());
  std::printf("certificate fingerprint:     %s\n", r->fingerprint.c_str());
  std::printf("certificate public key pin:  %s\n", r->public_key_pin.c_str());
  if (!r->admin_password_file.empty())
    std::printf("admin password:              in %s (user admin)\n",
                r->admin_password_file.c_str());
  std::printf("repository:                  %s\n", r->repository_path.c_str());
  std::printf("repository passphrase:       in %s - copy it somewhere safe\n",
              r->passphrase_file.c_str());
  std::printf("configuration:               %s\n", r->config_path.c_str());
  for (const std::string& w : r->warnings)
    std::fprintf(stderr, "havend init: warning: %s\n", w.c_str());
  if (r->changed && r->config_path == haven::appliance::kDefaultConfigPath)
    std::printf("\nSet up. Start it with `systemctl enable --now havend`.\n");
  else if (r->changed)
    std::printf("\nSet up. Start it with `havend serve --config %s`.\n",
                r->config_path.c_str());
  else
    std::printf("\nNothing changed: this appliance was set up already.\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"havend: the Haven backup appliance (HTTPS API).", "havend"};
  app.set_version_flag("--version", std::string("havend ") + HAVEN_VERSION);
  app.require_subcommand(1);

  ServeOptions o;
  o.version = HAVEN_VERSION;
  std::string config_path;
  CLI::App* serve = app.add_subcommand(
      "serve",
      "serve the API over HTTPS until SIGTERM; makes a self-signed "
      "certificate in the state directory on first start");
  serve->add_option("--config", config_path,
                    "configuration file (default: /etc/haven/havend.conf "
                    "when it exists); options given here override it");
  serve->add_option("--state-dir", o.state_dir,
                    "state directory (made 0700); required without a "
                    "configuration file, else its StateDirectory=");
  serve
      ->add_option("--listen", o.listen,
                   "ADDR:PORT, [ADDR]:PORT or ADDR; port 0 picks a free one")
      ->capture_default_str();
  serve->add_option("--cert", o.cert_file,
                    "PEM certificate (chain) to serve instead of the state "
                    "directory's self-signed one; needs --key");
  serve->add_option("--key", o.key_file, "PEM private key of --cert");
  serve
      ->add_option("--max-body", o.max_body_bytes,
                   "largest request body accepted, bytes (more: 413)")
      ->capture_default_str();
  serve->add_option("--threads", o.threads, "requests served at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  std::vector<std::string> repositories, password_files;
  serve->add_option("--repository", repositories,
                    "NAME=PATH of a repository jobs may use; repeatable, "
                    "each with its own --password-file");
  serve->add_option("--password-file", password_files,
                    "file whose first line is the passphrase of the "
                    "--repository in the same position (read when a job "
                    "opens it)");
  serve->add_option("--console-dir", o.console_dir,
                    "folder of the web console's files (default "
                    "/usr/share/haven/console)");
  serve->add_option("--libvirt-uri", o.libvirt_uri, "libvirt URI of the host")
      ->capture_default_str();
  serve->add_option("--max-jobs", o.max_jobs, "jobs running at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  serve
      ->add_option("--max-jobs-per-repository", o.max_jobs_per_repository,
                   "jobs running at once into one repository")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  // Notifications (until the config file's [notify] section; the names
  // are NotifyConfig's, docs/appliance.md "Notifications").
  haven::appliance::NotifyConfig& n = o.notify;
  serve->add_option("--notify-webhook", n.webhook_url,
                    "POST a signed JSON body here when a job fails (http:// "
                    "or https://)");
  serve->add_option("--notify-webhook-secret-file", n.webhook_secret_file,
                    "file whose first line is the webhook's HMAC key");
  serve->add_option("--notify-smtp", n.smtp_url,
                    "mail notifications through this smtp:// or smtps:// "
                    "server");
  serve->add_option("--notify-from", n.smtp_from, "the mails' sender address");
  serve->add_option("--notify-to", n.smtp_to, "a recipient; repeatable");
  serve->add_option("--notify-smtp-user", n.smtp_user,
                    "log in to the SMTP server as this user (TLS required)");
  serve->add_option("--notify-smtp-password-file", n.smtp_password_file,
                    "file whose first line is the SMTP password");
  serve->add_flag("--notify-on-success", n.on_success,
                  "also notify jobs that succeeded");
  serve->add_option("--notify-daily-report", n.daily_report,
                    "calendar event of the daily report mail; \"\": none")
      ->capture_default_str();
  // Accounts and tokens (appliance/auth_commands.h).
  std::string auth_state_dir = haven::appliance::kDefaultStateDir;
  std::string password_file, token_name, token_role;
  int token_days = 0;
  int64_t token_id = 0;
  CLI::App* admin = app.add_subcommand("admin", "the local admin account");
  admin->require_subcommand(1);
  CLI::App* admin_password = admin->add_subcommand(
      "password",
      "set the admin password: the first line of stdin (asked twice when "
      "it is a terminal) or of --password-file; ends admin's sessions");
  admin_password->add_option("--password-file", password_file,
                             "read the password from this file's first line");
  CLI::App* token = app.add_subcommand("token", "API tokens");
  token->require_subcommand(1);
  CLI::App* token_create = token->add_subcommand(
      "create", "make an API token and print it (only this once)");
  token_create->add_option("--name", token_name, "a name: A-Z a-z 0-9 . _ -")
      ->required();
  token_create->add_option("--role", token_role, "admin, operator or auditor")
      ->required()
      ->check(CLI::IsMember({"admin", "operator", "auditor"}));
  token_create
      ->add_option("--expires", token_days, "days until it expires; 0: never")
      ->capture_default_str()
      ->check(CLI::Range(0, 3650));
  CLI::App* token_list = token->add_subcommand("list", "list API tokens");
  CLI::App* token_revoke =
      token->add_subcommand("revoke", "revoke an API token at once");
  token_revoke->add_option("id", token_id, "the token's id (token list)")
      ->required()
      ->check(CLI::PositiveNumber);
  for (CLI::App* c : {admin_password, token_create, token_list, token_revoke})
    c->add_option("--state-dir", auth_state_dir, "havend's state directory")
        ->capture_default_str();

  // --- agents: registry --- (appliance/agent_commands.h)
  haven::appliance::EnrollTokenOptions enroll_options;
  std::string agent_config_path;
  CLI::App* agent = app.add_subcommand("agent", "enrolled agents");
  agent->require_subcommand(1);
  CLI::App* enroll_token = agent->add_subcommand(
      "enroll-token",
      "make a one-time enrollment token and print it (only this once) with "
      "the command to run on the agent");
  enroll_token->add_option("--name", enroll_options.name,
                           "the agent's name (default: its host name)");
  enroll_token->add_option("--kind", enroll_options.kind, "guest or host")
      ->capture_default_str()
      ->check(CLI::IsMember({"guest", "host"}));
  enroll_token->add_option(
      "--repository", enroll_options.repository,
      "repository of the agent's points (default: the configuration's "
      "default one)");
  enroll_token
      ->add_option("--expires-minutes", enroll_options.expires_minutes,
                   "minutes the token works")
      ->capture_default_str()
      ->check(CLI::Range(1, 10080));
  enroll_token->add_option("--url", enroll_options.url,
                           "the appliance's URL as agents reach it "
                           "(default: https://THIS-HOST:PORT)");
  enroll_token->add_flag("--json", enroll_options.json,
                         "print the answer of POST /api/v1/agents/enrollments");
  CLI::Option* enroll_state_opt = enroll_token->add_option(
      "--state-dir", enroll_options.state_dir,
      "havend's state directory (default: the configuration's, else "
      "/var/lib/haven)");
  enroll_token->add_option(
      "--config", agent_config_path,
      "configuration file (default: /etc/haven/havend.conf "
      "when it exists)");

  haven::appliance::SetupOptions init_options;
  std::string init_state, init_repo, init_listen;
  CLI::App* openapi = app.add_subcommand(
      "openapi",
      "print the API's OpenAPI document (what /api/v1/openapi.json serves; "
      "docs/openapi.json is this output)");

  CLI::App* init = app.add_subcommand(
      "init",
      "set this appliance up: state directory, certificate, state database, "
      "default repository with a random passphrase, admin account, nightly "
      "schedule, configuration file; keeps whatever exists already");
  init->add_option("--config", init_options.config_path,
                   "configuration file to write when missing, or to read")
      ->capture_default_str();
  CLI::Option* init_state_opt = init->add_option(
      "--state-dir", init_state,
      "state directory (default: the configuration's, else /var/lib/haven)");
  CLI::Option* init_repo_opt = init->add_option(
      "--repository", init_repo,
      "path of the default repository (default: STATE/repository)");
  CLI::Option* init_listen_opt =
      init->add_option("--listen", init_listen,
                       "ADDR:PORT havend will listen on (0.0.0.0:8421)");

  try {
    app.parse(argc, argv);
    if (repositories.size() != password_files.size())
      throw CLI::ValidationError(
          "--repository",
          "give one --password-file for each --repository, in the same order");
    for (size_t i = 0; i < repositories.size(); ++i) {
      size_t eq = repositories[i].find('=');
      if (eq == std::string::npos || eq == 0)
        throw CLI::ValidationError("--repository",
                                   "expected NAME=PATH, got " + repositories[i]);
      o.repositories.push_back({repositories[i].substr(0, eq),
                                repositories[i].substr(eq + 1),
                                password_files[i]});
    }
  } catch (const CLI::ParseError& e) {
    // Usage errors exit 2, as haven's do; --help and --version exit 0.
    return app.exit(e) == 0 ? 0 : 2;
  }
  namespace ha = haven::appliance;
  if (admin_password->parsed())
    return FailOrZero(ha::AdminPasswordCommand(auth_state_dir, password_file));
  if (token_create->parsed())
    return FailOrZero(ha::TokenCreateCommand(auth_state_dir, token_name,
                                             token_role, token_days, stdout));
  if (token_list->parsed())
    return FailOrZero(ha::TokenListCommand(auth_state_dir, stdout));
  if (token_revoke->parsed())
    return FailOrZero(ha::TokenRevokeCommand(auth_state_dir, token_id));
  // --- agents: registry ---
  if (enroll_token->parsed()) {
    auto c = ReadConfig(agent_config_path);
    if (!c.ok()) return Fail(c.status());
    enroll_options.config = std::move(*c);
    if (!enroll_state_opt->count())
      enroll_options.state_dir = enroll_options.config
                                     ? enroll_options.config->state_dir
                                     : haven::appliance::kDefaultStateDir;
    return FailOrZero(ha::EnrollTokenCommand(enroll_options, stdout));
  }
  if (openapi->parsed()) {
    std::printf("%s\n",
                haven::DumpJson(haven::appliance::ApiDocument(HAVEN_VERSION), 1)
                    .c_str());
    return 0;
  }
  if (init->parsed()) {
    if (init_state_opt->count()) init_options.state_dir = init_state;
    if (init_repo_opt->count()) init_options.repository_path = init_repo;
    if (init_listen_opt->count()) init_options.listen = init_listen;
    return RunInit(init_options);
  }
  auto config = ReadConfig(config_path);
  if (!config.ok()) return Fail(config.status());
  // Without a configuration file the state directory must be named: a
  // bare `havend serve` never settles in /var/lib/haven by accident.
  if (!config->has_value() && !serve->get_option("--state-dir")->count())
    return Fail(haven::InvalidArgument(
        "--state-dir is required when there is no configuration file (--config "
        "FILE, or " +
        std::string(haven::appliance::kDefaultConfigPath) + ")"));
  ApplyConfig(config->value_or(ApplianceConfig()), *serve, o);
  // Two malloc arenas, not glibc's 8 per core: each of the ~15 threads
  // (TLS, handlers, jobs) otherwise keeps its own arena, and the freed
  // memory scattered over them stays resident (idle after 50 clients'
  // load: 51.6 MiB RSS with the default, 39.8 MiB with 2; see
  // docs/benchmark-results.md, "Appliance"). MALLOC_ARENA_MAX still wins.
  if (!std::getenv("MALLOC_ARENA_MAX")) mallopt(M_ARENA_MAX, 2);
  Status s = haven::appliance::Serve(o);
  if (!s.ok()) return Fail(s);
  return 0;
}
