// SPDX-License-Identifier: Apache-2.0
#include "gateway/log.h"

#include <spdlog/sinks/stdout_sinks.h>

#include <mutex>

namespace egw::log {
namespace {

std::mutex mu;
spdlog::level::level_enum current = spdlog::level::info;

}  // namespace

std::shared_ptr<spdlog::logger> get(const std::string& component) {
    std::lock_guard lock(mu);
    if (auto l = spdlog::get(component)) return l;
    static auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    auto l = std::make_shared<spdlog::logger>(component, sink);
    l->set_pattern("%l %n: %v");
    l->set_level(current);
    l->flush_on(spdlog::level::trace);
    spdlog::register_logger(l);
    return l;
}

bool set_level(const std::string& level) {
    auto lvl = spdlog::level::from_str(level == "warn" ? "warning" : level);
    if (lvl == spdlog::level::off && level != "off") return false;
    std::lock_guard lock(mu);
    current = lvl;
    spdlog::set_level(lvl);
    return true;
}

}  // namespace egw::log
