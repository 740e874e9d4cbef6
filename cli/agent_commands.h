// `haven agent ...`: this machine as an agent of an appliance
// (docs/agents.md): enroll, back up files to it, list, browse and restore
// its own points, and show its identity. No repository and no passphrase
// here: the appliance holds both.
#ifndef HAVEN_CLI_AGENT_COMMANDS_H_
#define HAVEN_CLI_AGENT_COMMANDS_H_

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "cli/common.h"

namespace haven::cli {

// Adds `agent` and its subcommands to `app`; callbacks set `rc`. The flags
// live here, so the object must outlive app.parse().
struct AgentCommands {
  AgentCommands(CLI::App& app, const Globals& g, int& rc);
  AgentCommands(const AgentCommands&) = delete;
  AgentCommands& operator=(const AgentCommands&) = delete;

  CLI::App* agent = nullptr;  // more subcommands (run) attach here
  // --state-dir: agent.json and the upload cache (DefaultAgentStateDir()).
  std::string state_dir;

  struct Enroll {
    std::string url, token, fingerprint, name, kind = "guest";
    bool force = false;
  } enroll;
  struct Backup {
    std::vector<std::string> paths, excludes;
    std::string name, exclude_file;
    bool exclude_caches = false, one_file_system = false;
    int threads = 0;
  } backup;
  struct BackupVm {
    std::string vm, libvirt_uri = "qemu:///system";
    bool full = false;
  } backup_vm;
  std::string point, path;
  std::vector<std::string> paths;
  std::string to;
};

}  // namespace haven::cli

#endif  // HAVEN_CLI_AGENT_COMMANDS_H_
