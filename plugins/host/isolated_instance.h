// SPDX-License-Identifier: Apache-2.0
// isolation: "process": a plugin instance (a native .so or a .lua script) run in a supervised
// child process, edge-gateway-plugin-host, in the manner of Postfix's master and its workers.
// A plugin that segfaults, aborts or hangs takes the child down, never the gateway.
//
// Each call writes its bytes into a shared memory region, sends a small request over a
// SOCK_SEQPACKET socketpair and waits for the reply up to limits.time_budget_ms + grace_ms (see
// isolation_protocol.h). EOF on the socket means the child died: the call fails as
// failure_kind::crashed; no reply in time: the child is killed (SIGKILL) and the call fails as
// failure_kind::timeout. Either way the child is reaped, counted in restarts(), logged
// (throttled), and started again at the next call after a backoff that doubles from
// min_backoff_ms to max_backoff_ms while children keep dying young; a child that lived
// stable_after_ms resets it. The new child gets create() with the same config and restore()
// with the last snapshot this object saw (taken through snapshot() or given to restore()), so a
// stateful instance resumes from the state the stage last committed or restored. retry() says
// yes to crashed and timeout until max_attempts calls of the message have failed; the stage then
// dead-letters it.
//
// Threads. heavy() is true, max_concurrent() is 1: a call blocks its worker-pool thread until
// the child answers, the deadline passes, or the backoff before a restart elapses. Calls are
// serialised by a mutex. Create and destroy on any one thread (the loop); the destructor closes
// the socket, which makes the child exit, and reaps it (SIGKILL if it lingers).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "plugins/host/instance.h"

namespace egw::plugins {

struct isolation_options {
    // The edge-gateway-plugin-host executable. Empty: next to the running binary
    // (/proc/self/exe), then the installed libexec path, then the build tree's.
    std::string host_path;
    // Calls of one message, crashes or hangs included, before retry() says no.
    unsigned max_attempts = 3;
    // How long past limits.time_budget_ms the gateway waits before it kills a child, so that a
    // Lua script's own budget (which stops it cleanly, keeping the child) fires first.
    uint32_t grace_ms = 100;
    // Starting a child: spawn, create(config) and restore(snapshot) must answer within this.
    uint32_t start_timeout_ms = 5000;
    uint32_t min_backoff_ms = 100;
    uint32_t max_backoff_ms = 10'000;
    // A child that lived this long before dying restarts without delay.
    uint32_t stable_after_ms = 10'000;
};

// Starts the child and creates the instance in it. Throws std::runtime_error when the child
// cannot start, or with the plugin's own reason when it rejects its config.
std::unique_ptr<instance> make_isolated_instance(const instance_spec& spec,
                                                 isolation_options opts = {});

// The path make_isolated_instance() would use for the child when opts.host_path is empty.
std::string default_plugin_host_path();

}  // namespace egw::plugins
