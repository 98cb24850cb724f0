// SPDX-License-Identifier: Apache-2.0
// The downlink policy, free of I/O: which cloud messages on gateways/{gw}/down/{topic} may be
// published on the local broker, at what QoS, and which uplink topics would loop back into the
// downlink or task topics. The Paho adapter and --check-config call these; unit tests drive
// them directly.
//
// Default deny: a topic is relayed only when an allow entry's filter matches it. A retained
// message is refused unless the entry says `retain: true`. The QoS is capped at the entry's, as a
// Mosquitto bridge's topic QoS caps what crosses it. The payload is capped per entry.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace egw::devices {

struct allow_entry {
    std::string filter;                // local topic filter (MQTT wildcards)
    int qos = 1;                       // cap
    size_t max_payload_bytes = 65536;  // larger payloads are refused
    bool retain = false;               // retained downlinks allowed
    bool operator==(const allow_entry&) const = default;
};

struct downlink_decision {
    bool allowed = false;
    std::string local_topic;  // where to publish it (allowed) or what was asked (refused)
    int qos = 0;
    std::string reason;  // why it was refused: the payload of gateways/{gw}/downlink/rejected
};

// `cloud_topic` arrived on the cloud connection; `qos` and `retained` as received.
downlink_decision decide_downlink(const std::vector<allow_entry>& allow,
                                  std::string_view gateway_id, std::string_view cloud_topic,
                                  size_t payload_bytes, int qos, bool retained);

// True if some topic matches both filters (MQTT wildcards in either).
bool filters_overlap(std::string_view a, std::string_view b);

// The cloud topics that only the cloud publishes (downlink, submit, cancel) for this gateway.
std::vector<std::string> downlink_filters(std::string_view gateway_id);

// Empty if no cloud topic matched by `uplink_filter` (what a route can publish to the cloud)
// lies in the downlink or task-command topics; else the reason (for --check-config).
std::string uplink_loop_problem(std::string_view uplink_filter, std::string_view gateway_id);

// The cloud topics a sink's topic template (placeholders {gateway_id}, {topic}, {seq}) makes of
// the local topics `local_filter` matches, as a filter: {topic} becomes the filter itself and
// {seq} a number (a number never equals a literal level of the downlink topics).
std::string uplink_filter(std::string_view topic_template, std::string_view local_filter,
                          std::string_view gateway_id);

// True if `cloud_topic` (no wildcards) is one the gateway takes from the cloud.
bool is_downlink_topic(std::string_view cloud_topic, std::string_view gateway_id);

// The local topic as stored in the buffer for the local delivery target, with the QoS to
// publish it at: "<qos>:<topic>" (one digit, a colon, the topic as is). The buffer row has no
// room for a QoS of its own.
std::string encode_local_row(int qos, std::string_view local_topic);
// Inverse; false for a row of another shape.
bool decode_local_row(std::string_view row_topic, int& qos, std::string_view& local_topic);

}  // namespace egw::devices
