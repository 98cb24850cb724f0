// SPDX-License-Identifier: Apache-2.0
// `edge-gateway status`: asks the running gateway over its control socket.
#pragma once

#include <string>

namespace egw {

// Prints the gateway's status (a table, or the raw JSON) and returns the exit code:
// 0, or 1 when no gateway answers on `socket_path`.
int print_status(const std::string& socket_path, bool as_json);

}  // namespace egw
