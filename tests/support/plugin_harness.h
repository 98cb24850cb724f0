// SPDX-License-Identifier: Apache-2.0
// A minimal plugin host for tests and benchmarks: dlopens a plugin .so exactly as the gateway
// does (RTLD_NOW | RTLD_LOCAL, the egw_plugin_entry symbol), implements the egw_host services
// (emit, set_timer, write_state, log), and drives one instance's hooks by hand, so a plugin's
// behaviour can be asserted to the value without a broker, a buffer or a daemon.
//
// It depends on <edge-gateway/plugin.h> only, never on the gateway's sources: what passes here
// is what a plugin author can rely on from the header.
//
// Threads: none of its own; every hook runs on the caller's thread. Not thread-safe.
// Ownership: plugin_library owns the dlopen handle and must outlive every plugin_harness made
// from it. Hook results own copies of everything the plugin emitted.
#pragma once

#include <edge-gateway/plugin.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace egw::test {

// A loaded plugin file. Throws std::runtime_error (with dlerror's text) when the file cannot be
// loaded or lacks egw_plugin_entry. Does not check the version: tests of version checks read
// descriptor() themselves.
class plugin_library {
public:
    explicit plugin_library(const std::string& path);
    ~plugin_library();
    plugin_library(const plugin_library&) = delete;
    plugin_library& operator=(const plugin_library&) = delete;

    const egw_plugin& descriptor() const { return *desc_; }
    const std::string& path() const { return path_; }

private:
    std::string path_;
    void* handle_ = nullptr;
    const egw_plugin* desc_ = nullptr;
};

// One output, copied at emit() time, with the topic resolved (a suffix appended to the input
// topic).
struct emitted {
    std::string topic;
    std::string payload;
    std::string content_type;
    int priority = 0;
};

struct log_line {
    int level = 0;
    std::string text;
};

struct hook_result {
    int rc = EGW_OK;
    std::vector<emitted> outputs;
    // An emit() the harness refused (empty topic, wildcard, oversized, a suffix without an
    // input): the call counts as failed whatever rc says, as in the gateway.
    bool bad_output = false;
    // A C++ exception crossed the ABI (the harness caught it; the gateway does the same).
    bool threw = false;
    std::string what;
    bool ok() const { return rc == EGW_OK && !bad_output && !threw; }
};

// One instance of a plugin and the host state around it: its timer, its last snapshot, its log.
class plugin_harness {
public:
    // Creates an instance from config_json. Throws std::runtime_error carrying the plugin's own
    // reason when create() rejects the config.
    plugin_harness(const plugin_library& lib, std::string_view config_json);
    ~plugin_harness();
    plugin_harness(const plugin_harness&) = delete;
    plugin_harness& operator=(const plugin_harness&) = delete;

    // The plugin's reason for rejecting config_json, or "" when create() accepts it (the
    // instance is then destroyed at once).
    static std::string rejection(const plugin_library& lib, std::string_view config_json);

    // on_message with a fresh sequence number. device_id is derived like the gateway does
    // (second level of devices/{id}/...).
    hook_result message(std::string_view topic, std::string_view payload, int64_t ts_ms,
                        std::string_view content_type = {});
    // on_timer(now_ms), whatever the armed timer says (EGW_OK when the plugin has no on_timer).
    hook_result timer(int64_t now_ms);
    // What the host's loop does as wall-clock time passes: on_timer when a timer is armed and
    // due at now_ms, repeatedly while the plugin re-arms at or before now_ms.
    hook_result advance_to(int64_t now_ms);
    // on_snapshot; returns the state written. Throws std::runtime_error when the hook fails.
    std::string snapshot();
    // on_restore; the hook's return code.
    int restore(std::string_view state);

    // The armed timer (epoch ms), 0 when none.
    int64_t timer_ms() const { return timer_ms_; }
    const std::vector<log_line>& logs() const { return logs_; }
    // Log lines at `level` containing `needle`.
    size_t count_logs(int level, std::string_view needle) const;
    const egw_plugin& descriptor() const { return *desc_; }

    // The gateway's limit for an output payload (local.max_payload_bytes).
    size_t max_output_bytes = 1 << 20;

    // For the egw_host trampolines (harness.cc); not for tests.
    struct call_state;
    static const egw_host kHost;

private:
    const egw_plugin* desc_;
    void* instance_ = nullptr;
    uint64_t next_seq_ = 1;
    int64_t timer_ms_ = 0;
    std::vector<log_line> logs_;
};

}  // namespace egw::test
