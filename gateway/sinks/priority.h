// SPDX-License-Identifier: Apache-2.0
// Priority between a sink and its "NAME!high" sibling (docs/plugins.md, "Priority"): the
// sibling is an ordinary sink with its own bit and connection (config: add_priority_siblings);
// what makes its rows overtake NAME's backlog is that NAME holds its new sends while the
// sibling has rows waiting.
//
// Threads: loop thread only (called from gateway::pump_all before the sinks pump).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gateway/sinks/sink.h"
#include "storage/buffer.h"

namespace egw {

inline constexpr const char* priority_suffix = "!high";

// (bit of NAME, bit of NAME!high) for every sibling configured in `sinks`.
std::vector<std::pair<int, int>> priority_bits(const std::map<std::string, sink_config>& sinks,
                                               storage::buffer& buf);
// `mask` with every bit that has a sibling replaced by the sibling's bit.
uint64_t to_high(uint64_t mask, const std::vector<std::pair<int, int>>& bits);

// Holds NAME while NAME!high has rows waiting and is connected, or while NAME has been
// connected for less than a grace period (the sibling reconnects on its own backoff, a moment
// later, after an outage; without the grace NAME would send its backlog in that moment). The
// grace ends early once the sibling is connected, and NAME is never held longer than it when
// the sibling cannot connect at all.
void apply_priority_holds(const std::map<int, std::unique_ptr<sink>>& sinks, storage::buffer& buf);

}  // namespace egw
