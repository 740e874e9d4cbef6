// havend: the Haven appliance daemon. This file only parses the command
// line; the daemon lives in appliance/daemon.cc.
#include <CLI/CLI.hpp>
#include <cstdio>

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
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // Usage errors exit 2, as haven's do; --help and --version exit 0.
    return app.exit(e) == 0 ? 0 : 2;
  }
  haven::Status s = haven::appliance::Serve(o);
  if (!s.ok()) {
    std::fprintf(stderr, "havend: error: %s\n", s.message().c_str());
    return s.code() == haven::Code::kInvalidArgument ? 2 : 1;
  }
  return 0;
}
