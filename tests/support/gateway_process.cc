// SPDX-License-Identifier: Apache-2.0

#include "support/gateway_process.h"

#include <signal.h>

#include <system_error>

#include "support/net.h"
#include "support/temp_dir.h"

#ifndef EGW_GATEWAY_BIN
#define EGW_GATEWAY_BIN "edge-gateway"
#endif

namespace egw::test {

const std::string& gateway_binary() {
    static const std::string bin = EGW_GATEWAY_BIN;
    return bin;
}

command_result run_gateway_cli(const std::vector<std::string>& args,
                               const std::filesystem::path& work_dir,
                               std::chrono::milliseconds timeout) {
    std::vector<std::string> argv{gateway_binary()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, work_dir, "cli", timeout);
}

gateway_process::gateway_process(std::filesystem::path dir, nlohmann::json config)
    : dir_(std::move(dir)), config_file_(dir_ / "gateway.json"), log_file_(dir_ / "gateway.log") {
    set_config(std::move(config));
}

void gateway_process::set_config(nlohmann::json config) {
    config_ = std::move(config);
    if (config_.contains("data_dir") && config_["data_dir"].is_string()) {
        std::filesystem::create_directories(config_["data_dir"].get<std::string>());
    }
    // Write to a temp name and rename, so a reload never sees a half-written file.
    const auto tmp = dir_ / "gateway.json.tmp";
    write_file(tmp, config_.dump(2));
    std::filesystem::rename(tmp, config_file_);
}

std::filesystem::path gateway_process::data_dir() const {
    return config_.value("data_dir", std::string{});
}

void gateway_process::start() {
    process_.kill_and_reap();
    std::error_code ec;
    const auto size = std::filesystem::file_size(log_file_, ec);
    log_offset_ = ec ? 0 : static_cast<std::size_t>(size);
    process_ = child_process::spawn({gateway_binary(), "--config", config_file_.string()},
                                    dir_ / "gateway.stdout", log_file_);
}

bool gateway_process::start_and_wait_ready(std::chrono::milliseconds timeout) {
    start();
    return poll_until(
               [this] {
                   return log_since_start().find("info gateway: ready") != std::string::npos ||
                          !process_.running();
               },
               timeout) &&
           process_.running();
}

std::string gateway_process::log_since_start() const {
    const std::string all = read_file(log_file_);
    return log_offset_ <= all.size() ? all.substr(log_offset_) : all;
}

std::string gateway_process::full_log() const { return read_file(log_file_); }

bool gateway_process::wait_for_log(std::string_view needle,
                                   std::chrono::milliseconds timeout) const {
    return poll_until([&] { return log_since_start().find(needle) != std::string::npos; }, timeout,
                      50ms);
}

gateway_process::exit_info gateway_process::terminate(std::chrono::milliseconds timeout) {
    exit_info info;
    const auto t0 = clock_type::now();
    if (!process_.send_signal(SIGTERM)) {
        info.exit_code = process_.exit_code();
        return info;
    }
    info.exit_code = process_.wait_for_exit(timeout);
    info.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - t0);
    if (!info.exit_code) {
        process_.kill_and_reap();
    }
    return info;
}

void gateway_process::kill9() { process_.kill_and_reap(); }

std::optional<nlohmann::json> gateway_process::status_json() const {
    const auto r =
        run_command({gateway_binary(), "status", "--config", config_file_.string(), "--json"}, dir_,
                    "status-" + std::to_string(++status_calls_), 3s);
    std::string error;
    auto j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
    if (r.exit_code != 0) {
        error = r.exit_code < 0 ? "`status` timed out: the gateway does not answer on its socket"
                                : "`status` exit " + std::to_string(r.exit_code) + ": " + r.err;
    } else if (j.is_discarded()) {
        error = "`status --json` printed invalid JSON: " + r.out;
    }
    std::lock_guard lock(status_mutex_);
    last_status_error_ = error;
    if (!error.empty()) {
        return std::nullopt;
    }
    last_status_ = j;
    return j;
}

std::string gateway_process::last_status() const {
    std::lock_guard lock(status_mutex_);
    std::string s = last_status_.dump();
    if (!last_status_error_.empty()) {
        s += " [latest status call failed: " + last_status_error_ + "]";
    }
    return s;
}

std::optional<nlohmann::json> gateway_process::wait_until(
    const std::function<bool(const nlohmann::json&)>& predicate,
    std::chrono::milliseconds timeout) const {
    std::optional<nlohmann::json> hit;
    poll_until(
        [&] {
            auto s = status_json();
            if (s && predicate(*s)) {
                hit = std::move(s);
                return true;
            }
            return !process_.running();
        },
        timeout, 100ms);
    return hit;
}

nlohmann::json json_at(const nlohmann::json& j, std::string_view slash_path) {
    const nlohmann::json* cur = &j;
    std::size_t pos = 0;
    while (pos <= slash_path.size()) {
        const auto end = std::min(slash_path.find('/', pos), slash_path.size());
        const std::string key(slash_path.substr(pos, end - pos));
        if (!cur->is_object() || !cur->contains(key)) {
            return nullptr;
        }
        cur = &(*cur)[key];
        pos = end + 1;
    }
    return *cur;
}

std::int64_t json_int(const nlohmann::json& j, std::string_view slash_path, std::int64_t fallback) {
    const auto v = json_at(j, slash_path);
    return v.is_number() ? v.get<std::int64_t>() : fallback;
}

}  // namespace egw::test
