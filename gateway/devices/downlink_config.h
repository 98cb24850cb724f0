// SPDX-License-Identifier: Apache-2.0
// Reads the `downlink` key (docs/devices.md, Downlink) into config::downlink, checks the routes
// against it and adds the internal sink that delivers downlinks to the local broker.
//
// The internal sink is an ordinary sink of the configuration (name `downlink_sink_name`, type
// `downlink_sink_type`): it gets a stable bit in the buffer, its rows wait there while the
// local broker is down, reload replaces it when the local connection changes and the ack job
// removes what the local broker acknowledged, like for every other sink. Users cannot name a
// sink so (the schema allows no '!' in names).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gateway/config.h"

namespace egw::devices {

inline constexpr const char* downlink_sink_name = "!downlink";
inline constexpr const char* downlink_sink_type = "downlink-local";

// Called by config.cc after the sinks and routes are read (`doc` is schema-valid). Adds
// problems at downlink.sink, downlink.allow[i].filter and routes[i] (a route whose uplink
// topics could land in the downlink or task topics, for any mqtt sink it sends to).
void read_downlink(const nlohmann::json& doc, config& c, std::vector<config_problem>& problems);

}  // namespace egw::devices
