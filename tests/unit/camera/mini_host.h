// SPDX-License-Identifier: Apache-2.0
//
// mini_host: the smallest egw_host that drives a real plugin .so the way the gateway does
// (dlopen with RTLD_NOW | RTLD_LOCAL, the ABI major check, create, on_message, on_timer,
// on_snapshot, on_restore, destroy), for the camera-motion tests and benchmark. It records
// outputs, the timer the plugin asked for, state bytes and log lines. The plugin stage's
// batching, dead letters and isolation are not here: the lead's harness covers those.
//
// Threads: one thread drives a mini_host. Ownership: it owns the dlopen handle and the
// instance; the instance is destroyed before the handle is closed.
#pragma once

#include <edge-gateway/plugin.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace egw::test {

struct host_output {
    std::string topic;
    std::string payload;
    std::string content_type;
    int priority = 0;
    std::vector<std::pair<std::string, std::string>> properties;
    std::string property(const std::string& key) const;
};

class mini_host {
public:
    // Throws std::runtime_error when the file does not load or has a different ABI major.
    explicit mini_host(const std::string& so_path, size_t max_payload = 16u << 20);
    ~mini_host();
    mini_host(const mini_host&) = delete;
    mini_host& operator=(const mini_host&) = delete;

    const egw_plugin& plugin() const { return *plugin_; }

    // Creates the instance (destroying a previous one). False with the plugin's reason.
    bool create(const std::string& config_json, std::string* error = nullptr);
    void destroy();

    // Hook calls; outputs are appended to `out` only when the call succeeded (the stage
    // discards a failed call's outputs).
    int message(const std::string& topic, const std::string& payload, int64_t ts_ms, uint64_t seq,
                std::vector<host_output>& out);
    int timer(int64_t now_ms, std::vector<host_output>& out);
    int snapshot(std::string& state);
    int restore(const std::string& state);

    // The last timer the plugin asked for (0: none or cancelled).
    int64_t timer_ms() const { return timer_ms_; }
    const std::vector<std::string>& logs() const { return logs_; }

private:
    struct call_ctx;
    static void on_log(void* ctx, int level, const char* text, size_t len);
    static int on_emit(egw_call* call, const egw_output* out);
    static void on_set_timer(egw_call* call, int64_t at_ms);
    static int on_write_state(egw_call* call, const uint8_t* data, size_t len);

    void* dl_ = nullptr;
    const egw_plugin* plugin_ = nullptr;
    egw_host host_{};
    void* instance_ = nullptr;
    size_t max_payload_;
    int64_t timer_ms_ = 0;
    std::vector<std::string> logs_;
};

}  // namespace egw::test
