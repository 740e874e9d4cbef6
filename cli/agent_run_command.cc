#include "cli/agent_run_command.h"

#include <unistd.h>

#include <cstdio>
#include <memory>

#include "agent/agent_service.h"

namespace haven::cli {
namespace {

std::string HostName() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0')
    return "localhost";
  return name;
}

// One line per event on stderr: the journal adds the time.
void LogLine(const std::string& line) {
  std::string text = "haven agent: " + line + "\n";
  std::fwrite(text.data(), 1, text.size(), stderr);
  std::fflush(stderr);
}

}  // namespace

void AddAgentRunCommand(CLI::App& agent, Globals& g, int& rc,
                        const std::string* group_state_dir) {
  auto state_dir = std::make_shared<std::string>();
  auto libvirt_uri = std::make_shared<std::string>("qemu:///system");
  CLI::App* run = agent.add_subcommand(
      "run",
      "Serve the appliance this machine is enrolled with: keep a request "
      "open\nfor jobs and run them (haven-agent.service runs this). Stops "
      "on SIGTERM.");
  if (!group_state_dir)
    run->add_option("--state-dir", *state_dir,
                    "the agent's state directory (default $HAVEN_AGENT_DIR, "
                    "else /var/lib/haven-agent)");
  run->add_option("--libvirt-uri", *libvirt_uri,
                  "the hypervisor a host agent backs up and restores onto")
      ->capture_default_str();
  run->callback([state_dir, libvirt_uri, group_state_dir, &g, &rc] {
    agent::AgentServiceOptions o;
    o.cancel = g.cancel;
    o.log = LogLine;
    o.hostname = HostName();
    o.version = "0.1.0";
    o.libvirt_uri = *libvirt_uri;
    std::string dir = group_state_dir ? *group_state_dir : *state_dir;
    if (dir.empty()) dir = agent::DefaultAgentStateDir();
    Status s = agent::RunAgentService(dir, o);
    if (s.ok()) {
      rc = kExitOk;
      return;
    }
    LogLine(s.message());
    rc = kExitFailure;
  });
}

}  // namespace haven::cli
