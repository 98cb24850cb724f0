// SPDX-License-Identifier: Apache-2.0
// `edge-gateway dead-letters`: the control-socket command {"cmd": "dead-letters", "op": "list" |
// "replay" | "drop", "id": N | "all": true} (server side, loop thread; SQLite work on the worker
// pool) and the CLI that sends it.
#pragma once

#include <uv.h>

#include <string>

#include "gateway/control.h"
#include "plugins/host/stage.h"
#include "storage/buffer.h"

namespace egw {

void register_plugin_commands(control_server& server, uv_loop_t* loop, storage::buffer& buf,
                              plugins::stage& stage);

// The CLI: prints the reply (a table, or JSON with as_json). `op` is list, replay or drop;
// `id` is required unless `all`. Exit code: 0, 1 (no gateway, or it refused), 2 (usage).
int dead_letters_cli(const std::string& socket_path, const std::string& op, int64_t id, bool all,
                     bool as_json);

}  // namespace egw
