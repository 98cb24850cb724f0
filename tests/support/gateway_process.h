// SPDX-License-Identifier: Apache-2.0
//
// gateway_process: the real edge-gateway daemon as a child process, with its config and logs in
// a temp dir, and the helpers tests use to watch it (log lines, `status --json`).

#pragma once

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/child_process.h"

namespace egw::test {

// Path of the daemon under test (EGW_GATEWAY_BIN, set by CMake from $<TARGET_FILE:edge-gateway>).
const std::string& gateway_binary();

// Runs the gateway binary with `args` (a CLI call such as --check-config or status) to completion.
command_result run_gateway_cli(const std::vector<std::string>& args,
                               const std::filesystem::path& work_dir,
                               std::chrono::milliseconds timeout = std::chrono::seconds(10));

class gateway_process {
public:
    // `dir` holds gateway.json and gateway.log; config["data_dir"] is created if missing.
    gateway_process(std::filesystem::path dir, nlohmann::json config);
    ~gateway_process() = default;

    gateway_process(const gateway_process&) = delete;
    gateway_process& operator=(const gateway_process&) = delete;

    // Replaces the config file (takes effect at the next start, or now with reload()).
    void set_config(nlohmann::json config);
    const nlohmann::json& config() const { return config_; }

    // Spawns `edge-gateway --config FILE`. stderr (the log) is appended to gateway.log; log
    // searches start at what this start wrote.
    void start();

    // start() and wait for the `info gateway: ready` line; false if it did not come (or the
    // process exited) within `timeout`.
    bool start_and_wait_ready(std::chrono::milliseconds timeout = std::chrono::seconds(10));

    // Waits until the log written since the last start() contains `needle`.
    bool wait_for_log(std::string_view needle, std::chrono::milliseconds timeout) const;

    // Log text since the last start() / of all starts.
    std::string log_since_start() const;
    std::string full_log() const;

    struct exit_info {
        std::optional<int> exit_code;  // nullopt: still running at the deadline (then killed)
        std::chrono::milliseconds elapsed{0};
    };

    // SIGTERM and wait up to `timeout` for the exit; SIGKILL after that.
    exit_info terminate(std::chrono::milliseconds timeout = std::chrono::seconds(10));

    // SIGKILL: a crash at an arbitrary instant.
    void kill9();

    // SIGHUP (reload routes and sinks from the config file).
    bool reload() { return signal(SIGHUP); }
    bool signal(int sig) { return process_.send_signal(sig); }
    bool running() const { return process_.running(); }

    // How the last run ended (exit code, or 128 + signal); nullopt while running.
    std::optional<int> exit_code() const {
        return process_.running() ? std::nullopt : process_.exit_code();
    }

    // Waits for exit without signalling (e.g. after a fatal config error).
    std::optional<int> wait_for_exit(std::chrono::milliseconds timeout) {
        return process_.wait_for_exit(timeout);
    }

    // `edge-gateway status --config FILE --json`, parsed; nullopt if it failed. Thread-safe.
    std::optional<nlohmann::json> status_json() const;

    // Polls status_json() until `predicate` holds; returns that status, or nullopt at the
    // deadline or as soon as the gateway process has exited (then last_status() shows the last
    // status seen, for the failure message).
    std::optional<nlohmann::json> wait_until(
        const std::function<bool(const nlohmann::json&)>& predicate,
        std::chrono::milliseconds timeout) const;
    // The last status seen, and why the latest status call failed if it did (e.g. the gateway
    // stopped answering on its control socket).
    std::string last_status() const;

    const std::filesystem::path& config_file() const { return config_file_; }
    const std::filesystem::path& log_file() const { return log_file_; }
    std::filesystem::path data_dir() const;

private:
    std::filesystem::path dir_;
    nlohmann::json config_;
    std::filesystem::path config_file_;
    std::filesystem::path log_file_;
    std::size_t log_offset_ = 0;
    mutable child_process process_;  // mutable: checking liveness reaps a dead child
    // status_json() may run on several threads at once (a sampler beside a waiting test).
    mutable std::atomic<unsigned> status_calls_{0};
    mutable std::mutex status_mutex_;
    mutable nlohmann::json last_status_;     // guarded by status_mutex_
    mutable std::string last_status_error_;  // guarded by status_mutex_
};

// Safe accessor for nested status values: json_at(s, "sinks/cloud/state"), null if absent.
nlohmann::json json_at(const nlohmann::json& j, std::string_view slash_path);

// The integer at `slash_path`, or `fallback` if it is absent or not a number.
std::int64_t json_int(const nlohmann::json& j, std::string_view slash_path,
                      std::int64_t fallback = -1);

}  // namespace egw::test
