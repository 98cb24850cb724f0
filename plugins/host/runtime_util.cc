// SPDX-License-Identifier: Apache-2.0
#include "plugins/host/runtime_util.h"

#include <spdlog/spdlog.h>
#include <time.h>

#include "edge-gateway/plugin.h"

namespace egw::plugins::runtime {

std::string check_output(output& out, bool suffix, std::string_view input_topic,
                         const call_limits& limits) {
    if (suffix) {
        if (out.topic.empty()) return "emit: empty topic suffix";
        out.topic.insert(0, input_topic);
    }
    if (out.topic.empty()) return "emit: empty topic";
    // 65535: the longest topic MQTT can carry (a 16-bit length).
    if (out.topic.size() > 65535) return "emit: topic longer than 65535 bytes";
    if (out.topic.find_first_of(std::string_view("+#\0", 3)) != std::string::npos)
        return "emit: topic '" + out.topic + "' contains a wildcard or NUL";
    if (out.payload.size() > limits.max_output_bytes)
        return "emit: payload of " + std::to_string(out.payload.size()) +
               " bytes is above the limit of " + std::to_string(limits.max_output_bytes);
    if (out.priority < EGW_PRIORITY_ROUTE || out.priority > EGW_PRIORITY_HIGH)
        return "emit: priority " + std::to_string(out.priority) + " is not 0, 1 or 2";
    return {};
}

namespace {

spdlog::level::level_enum to_spdlog(int level) {
    switch (level) {
        case EGW_LOG_DEBUG:
            return spdlog::level::debug;
        case EGW_LOG_INFO:
            return spdlog::level::info;
        case EGW_LOG_WARN:
            return spdlog::level::warn;
        default:
            return spdlog::level::err;
    }
}

}  // namespace

void plugin_log_line(int level, std::string_view line) noexcept {
    try {
        auto logger = spdlog::get("plugins");
        if (!logger) logger = spdlog::default_logger();
        logger->log(to_spdlog(level), "{}", line);
    } catch (...) {
    }
}

void plugin_log(std::string_view instance_name, int level, std::string_view text) noexcept {
    try {
        auto logger = spdlog::get("plugins");
        if (!logger) logger = spdlog::default_logger();
        logger->log(to_spdlog(level), "{}: {}", instance_name, text);
    } catch (...) {
        // Logging must never take a plugin call down.
    }
}

int64_t monotonic_ns() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace egw::plugins::runtime
