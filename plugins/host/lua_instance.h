// SPDX-License-Identifier: Apache-2.0
// The Lua runtime: a `.lua` file is a plugin with the same hooks as a native one (see
// docs/plugins-lua.md for the script API).
//
// One lua_State per instance, created by make_lua_instance() from the script and the instance's
// config. Every allocation of that state goes through an allocator that refuses past
// limits.memory_cap_bytes (failure_kind::memory), and a count hook checks the wall clock every
// few thousand instructions against limits.time_budget_ms (failure_kind::timeout). A Lua error is
// failure_kind::error with the script's message; an invalid emit{} is failure_kind::bad_output.
// After any of these the state stays usable: Lua unwinds to the host's protected call, so the
// next message runs in the same state (its globals as the failed call left them). Nothing is
// rebuilt.
//
// Threads. heavy() is true and max_concurrent() is 1: a script can run up to its whole budget,
// so it runs on the worker pool and never on the loop. The hooks take a mutex, so a caller that
// ignores max_concurrent still cannot enter the state twice.
#pragma once

#include <memory>

#include "plugins/host/instance.h"

namespace egw::plugins {

// Loads spec.path, runs it, and calls its init(config). Throws std::runtime_error with the
// script's reason when the file is missing, does not compile, fails while running, or init()
// raises an error (the config is rejected).
std::unique_ptr<instance> make_lua_instance(const instance_spec& spec);

}  // namespace egw::plugins
