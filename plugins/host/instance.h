// SPDX-License-Identifier: Apache-2.0
// The host's view of one plugin instance, whatever runs it: a native .so in process
// (native_instance), a Lua script (lua_instance), or either of those in a supervised child
// process (isolated_instance). The plugin stage only ever talks to this interface, so the
// three runtimes are interchangeable behind a route's `via`.
//
// Threads. An instance is created and destroyed on the loop thread. Its hooks run on the loop
// when heavy() is false, and on the worker pool otherwise, at most max_concurrent() at once
// (1 when stateful()). Implementations never throw out of a hook: every failure is a
// `failed` result with a reason.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace egw::plugins {

// A message handed to an instance (a view: valid for the call).
struct message_view {
    std::string_view topic;
    std::string_view payload;
    int qos = 1;
    int64_t ts_ms = 0;
    uint64_t seq = 0;
    std::string_view device_id;
    std::string_view content_type;
};

// An output, copied out of the plugin. `topic` is already resolved (a suffix was appended to
// the input topic) and validated.
struct output {
    std::string topic;
    std::string payload;
    std::string content_type;
    int priority = 0;  // EGW_PRIORITY_*
    std::vector<std::pair<std::string, std::string>> properties;
};

// Why a call failed; the stage counts per kind and dead-letters the message with `reason`.
enum class failure_kind {
    none,
    error,       // the hook returned EGW_ERROR (or a Lua error)
    exception,   // a C++ exception crossed the boundary
    bad_output,  // an invalid topic, an oversized payload
    timeout,     // past the time budget (Lua instruction hook, isolation's deadline)
    memory,      // past the memory cap (Lua allocator)
    crashed,     // the isolated child died (segfault, abort)
};
const char* to_string(failure_kind k);

struct call_result {
    failure_kind failure = failure_kind::none;
    std::string reason;  // empty when ok
    std::vector<output> outputs;
    // The timer the instance asked for during the call: -1 unchanged, 0 cancel, else epoch ms.
    int64_t timer_ms = -1;
    bool ok() const { return failure == failure_kind::none; }
};

// Limits the host imposes on every call.
struct call_limits {
    uint64_t max_output_bytes = 1 << 20;   // per output payload (local.max_payload_bytes)
    uint32_t time_budget_ms = 1000;        // Lua and isolation enforce it
    uint64_t memory_cap_bytes = 64 << 20;  // Lua
};

class instance {
public:
    virtual ~instance() = default;

    virtual bool heavy() const = 0;
    virtual unsigned max_concurrent() const = 0;
    virtual bool stateful() const = 0;

    virtual call_result on_message(const message_view& m) = 0;
    virtual call_result on_timer(int64_t now_ms) = 0;
    // The whole state, or failed. Only for stateful() instances.
    virtual call_result snapshot(std::string& state) = 0;
    // Right after creation, before any message.
    virtual call_result restore(std::string_view state) = 0;

    // Restarts of an isolated child (0 elsewhere), for status.
    virtual uint64_t restarts() const { return 0; }

    // After a failed call: may the stage call again with the same message? `attempts` counts
    // the calls of that message that failed so far (>= 1). Only a transient failure says yes
    // (an isolated child that crashed or hung, and is restarted), up to the instance's limit;
    // by default never, since the other failures repeat for the same input.
    virtual bool retry(const call_result& r, unsigned attempts) const {
        (void)r;
        (void)attempts;
        return false;
    }
};

// How an instance is made: the resolved plugin file and the instance's settings. The factory
// functions throw std::runtime_error with a clear message when the file cannot be loaded or the
// plugin rejects its config (the message is the plugin's own reason).
struct instance_spec {
    std::string name;       // the instance name in plugins.instances
    std::string path;       // resolved .so or .lua file
    nlohmann::json config;  // the instance's "config"
    call_limits limits;
};

}  // namespace egw::plugins
