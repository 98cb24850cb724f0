// SPDX-License-Identifier: Apache-2.0
// Small pieces the Lua runtime and the isolated plugin host share: the rules an output must
// follow (the same rules egw_host.emit applies to native plugins), the plugin log, and a
// monotonic clock. No state, any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "plugins/host/instance.h"

namespace egw::plugins::runtime {

// Resolves and checks an output in place: with `suffix`, out.topic is appended to the input
// topic; the result must be a non-empty topic without wildcards (+ #) or NUL, at most 65535
// bytes, and the payload at most `limits.max_output_bytes`. Returns an empty string when the
// output is valid, else the reason (e.g. "emit: topic contains a wildcard").
std::string check_output(output& out, bool suffix, std::string_view input_topic,
                         const call_limits& limits);

// The log of plugin `instance_name` (the "plugins" spdlog logger when the gateway created it,
// the default logger otherwise). level is EGW_LOG_*. Never throws.
void plugin_log(std::string_view instance_name, int level, std::string_view text) noexcept;

// A line that already names its instance (forwarded from an isolated child).
void plugin_log_line(int level, std::string_view line) noexcept;

// CLOCK_MONOTONIC in nanoseconds.
int64_t monotonic_ns() noexcept;

}  // namespace egw::plugins::runtime
