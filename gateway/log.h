// SPDX-License-Identifier: Apache-2.0
// Logging: one spdlog logger per component, all writing `<level> <component>: <message>`
// lines to stderr, which journald stamps and stores when run under systemd.
#pragma once

#include <spdlog/spdlog.h>

#include <atomic>
#include <memory>
#include <string>

namespace egw::log {

// The logger for `component`, created on first use.
std::shared_ptr<spdlog::logger> get(const std::string& component);

// Sets the level of every logger; returns false for an unknown level name.
bool set_level(const std::string& level);

// For bad input that can arrive thousands of times a second: lets the first few occurrences
// through, then one in every 1000, so the log says it keeps happening without drowning.
class throttle {
public:
    bool allow() {
        uint64_t n = count_.fetch_add(1, std::memory_order_relaxed);
        return n < 10 || n % 1000 == 0;
    }
    uint64_t count() const { return count_.load(std::memory_order_relaxed); }

private:
    std::atomic<uint64_t> count_{0};
};

}  // namespace egw::log
