// haven: the command line. main.cc sets up the app (global options) and
// dispatches; each command group lives in its own file and each command
// parses its flags, calls one library function and prints the result:
//   backup_commands      backup image | vm
//   points_commands      snapshots, show, protect, unprotect
//   restore_commands     restore image | config | vm | host
//   maintenance_commands init, key, check, forget, gc, repair, rebuild-index
//   image_files_commands ls, restore file (file systems inside disk images)
//   file_backup_commands backup files, restore files, diff (file backups)
//   agent_commands       agent enroll | backup | points | ls | restore | status
//   agent_run_command    agent run (the agent's service)
#include <CLI/CLI.hpp>

#include "cli/agent_commands.h"  // --- agents: client ---
#include "cli/agent_run_command.h"
#include "cli/backup_commands.h"
#include "cli/common.h"
#include "cli/copy_commands.h"
#include "cli/file_backup_commands.h"
#include "cli/image_files_commands.h"
#include "cli/maintenance_commands.h"
#include "cli/points_commands.h"
#include "cli/restore_commands.h"

namespace haven::cli {

int Main(int argc, char** argv) {
  CLI::App app{
      "Haven: deduplicated, encrypted backups of virtual machine disks and of\n"
      "files inside guests (haven backup files).\n"
      "The repository is -r PATH, else $HAVEN_REPOSITORY, else a default local "
      "path\n"
      "(/var/lib/haven/repository for root). A repository in an object store\n"
      "is s3:https://ENDPOINT/BUCKET[/PREFIX], with AWS_ACCESS_KEY_ID and\n"
      "AWS_SECRET_ACCESS_KEY (or ~/.aws/credentials) in the environment\n"
      "(docs/object-storage.md). The passphrase comes from\n"
      "$HAVEN_PASSWORD, --password-file / $HAVEN_PASSWORD_FILE, or a prompt.\n"
      "A snapshot is named by an id prefix, 'latest' or 'NAME:latest'; a\n"
      "restore's 'latest' is the latest point of the kind it reads (restore\n"
      "files: file backups; restore file, image, config: VM or image ones).\n"
      "Exit codes: 0 ok, 1 failure, 2 usage error, 3 finished but partial,\n"
      "130 stopped by Ctrl-C or SIGTERM (nothing half-done is kept).\n"
      // --- agents: client ---
      "On a machine enrolled with an appliance, `haven agent ...` backs up\n"
      "to it and restores from it with no repository or passphrase here\n"
      "(haven agent --help; docs/agents.md).",
      "haven"};
  app.set_version_flag("--version", "haven 0.1.0");
  app.require_subcommand(1);
  app.fallthrough();  // global options may follow the subcommand
  Globals g;
  g.repo = DefaultRepository();
  app.add_option("-r,--repo", g.repo, "repository directory")
      ->capture_default_str();
  app.add_option("--password-file", g.password_file,
                 "read the passphrase from this file");
  app.add_flag("--json", g.json, "machine-readable output on stdout");
  app.add_flag("-q,--quiet", g.quiet, "no progress or summaries");
  app.add_option("--lock-wait", g.lock_wait,
                 "seconds to wait for another haven process's lock")
      ->capture_default_str();

  int rc = kExitOk;
  StopOnSignals(g.cancel);
  MaintenanceCommands maintenance(app, g, rc);
  CopyCommands copy(app, g, rc);
  BackupCommands backup(app, g, rc);
  PointsCommands points(app, g, rc);
  RestoreCommands restore(app, g, rc);
  AddFileCommands(app, *restore.rest, g, rc);
  AddFilesCommands(app, *backup.backup, *restore.rest, g, rc);
  AgentCommands agent(app, g, rc);  // --- agents: client ---
  // --- agents: jobs ---
  AddAgentRunCommand(*agent.agent, g, rc, &agent.state_dir);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  // A job stopped by a signal reports per-item outcomes (cancelled); the
  // process says so in its exit code whatever else failed.
  if (g.cancel.cancelled() && rc != kExitOk) rc = kExitCancelled;
  return rc;
}

}  // namespace haven::cli

int main(int argc, char** argv) { return haven::cli::Main(argc, argv); }
