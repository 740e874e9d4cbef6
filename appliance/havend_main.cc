// havend: the Haven appliance daemon. This file only parses the command
// line; the daemon lives in appliance/daemon.cc.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "appliance/auth_commands.h"
#include "appliance/config.h"
#include "appliance/daemon.h"

#ifndef HAVEN_VERSION
#define HAVEN_VERSION "unknown"
#endif

int main(int argc, char** argv) {
  using haven::appliance::ServeOptions;
  CLI::App app{"havend: the Haven backup appliance (HTTPS API).", "havend"};
  app.set_version_flag("--version", std::string("havend ") + HAVEN_VERSION);
  app.require_subcommand(1);
  ServeOptions o;
  o.version = HAVEN_VERSION;
  CLI::App* serve = app.add_subcommand(
      "serve",
      "serve the API over HTTPS until SIGTERM; makes a self-signed "
      "certificate in the state directory on first start");
  serve->add_option("--state-dir", o.state_dir, "state directory (made 0700)")
      ->required();
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
  serve->add_flag("--insecure-no-auth", o.insecure_no_auth,
                  "TESTS ONLY: serve every request as admin without "
                  "credentials (loopback --listen only)");
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
  haven::Status s;
  if (admin_password->parsed()) {
    s = ha::AdminPasswordCommand(auth_state_dir, password_file);
  } else if (token_create->parsed()) {
    s = ha::TokenCreateCommand(auth_state_dir, token_name, token_role,
                               token_days, stdout);
  } else if (token_list->parsed()) {
    s = ha::TokenListCommand(auth_state_dir, stdout);
  } else if (token_revoke->parsed()) {
    s = ha::TokenRevokeCommand(auth_state_dir, token_id);
  } else {
    s = ha::Serve(o);
  }
  if (!s.ok()) {
    std::fprintf(stderr, "havend: error: %s\n", s.message().c_str());
    return s.code() == haven::Code::kInvalidArgument ? 2 : 1;
  }
  return 0;
}
