// SPDX-License-Identifier: Apache-2.0
// `edge-gateway devices`, `edge-gateway tasks` and `edge-gateway task submit|cancel`: requests
// to the running gateway's control socket (commands "devices", "tasks", "task_submit",
// "task_cancel", registered by the gateway over devices::service). Runs in the CLI process.
#pragma once

#include <string>

namespace egw::devices {

// Returns the process exit code: 0, 1 when the gateway answered with an error, 3 when no
// gateway answered.
int devices_cli(const std::string& socket_path, bool as_json);
int tasks_cli(const std::string& socket_path, const std::string& state, const std::string& id,
              bool as_json);
int task_cli(const std::string& socket_path, const std::string& action, const std::string& arg,
             bool as_json);

}  // namespace egw::devices
