// SPDX-License-Identifier: Apache-2.0
// Helpers shared by the shipped-plugin tests: where the built .so files are, and a parsed view of
// an output payload.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "support/plugin_harness.h"

namespace egw::test {

inline std::string plugin_path(const std::string& name) {
    return std::string(EGW_PLUGIN_DIR) + "/" + name + ".so";
}

inline nlohmann::json parse(const emitted& e) { return nlohmann::json::parse(e.payload); }

// An epoch time on a 60 s boundary (2025-11-29T20:00:00Z), so that windows of 10 s start at T0.
constexpr int64_t kT0 = 1764446400000;

}  // namespace egw::test
