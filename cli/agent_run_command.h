// `haven agent run`: the enrolled agent's service (agent/agent_service.h),
// run by haven-agent.service. Exit codes: 0 stopped by SIGTERM or SIGINT;
// 1 not enrolled, or refused by the appliance (revoked): the unit's
// RestartPreventExitStatus=1 keeps systemd from restarting it, since
// only a new enrollment helps. Transport failures never end it: it
// reconnects.
#ifndef HAVEN_CLI_AGENT_RUN_COMMAND_H_
#define HAVEN_CLI_AGENT_RUN_COMMAND_H_

#include <CLI/CLI.hpp>

#include "cli/common.h"

namespace haven::cli {

// Adds `run` to the `agent` command group. With `state_dir` (the group's
// own --state-dir variable, read when `run` runs) that is the state
// directory; without, `run` takes --state-dir DIR itself (default
// $HAVEN_AGENT_DIR, else /var/lib/haven-agent).
void AddAgentRunCommand(CLI::App& agent, Globals& g, int& rc,
                        const std::string* state_dir = nullptr);

}  // namespace haven::cli

#endif  // HAVEN_CLI_AGENT_RUN_COMMAND_H_
