// SPDX-License-Identifier: Apache-2.0
// Parsing and building the JSON payloads of the device and task topics (docs/devices.md).
// Pure functions: parsers never throw, they return an error message naming the first field that
// is wrong, so the gateway can answer a device or the cloud with it.
#pragma once

#include <string>
#include <string_view>
#include <variant>

#include "gateway/devices/model.h"

namespace egw::devices {

template <class T>
struct parsed {
    std::optional<T> value;
    std::string error;  // set when value is empty
    explicit operator bool() const { return value.has_value(); }
};

// devices/{id}/register: boot, caps and tasks are required.
struct registration {
    std::string boot;
    capabilities caps;
    std::vector<task_cap> tasks;
    std::map<std::string, std::string> labels;
};
parsed<registration> parse_register(std::string_view payload);

// devices/{id}/status: {"state": "online"|"offline", "boot": ...}
struct status_msg {
    bool online = false;
    std::string boot;
};
parsed<status_msg> parse_status(std::string_view payload);

// devices/{id}/tasks/{task}/state
struct device_report {
    std::string task;
    int attempt = 0;
    task_state state = task_state::accepted;  // accepted, rejected, running, succeeded, failed
    json progress;
    json result;
    std::string error;
    bool retryable = false;
};
parsed<device_report> parse_device_report(std::string_view payload);

// gateways/{gw}/tasks/submit (and `edge-gateway task submit FILE`).
parsed<task_spec> parse_submit(std::string_view payload);
parsed<task_spec> parse_submit_json(const json& j);

// gateways/{gw}/tasks/cancel: {"task": ...}
parsed<std::string> parse_cancel(std::string_view payload);

// The registry record published retained on gateways/{gw}/devices/{id}.
json device_record(const device& d);
// Back from a stored record (persistence). Returns false on a malformed record.
bool device_from_record(const json& j, device& out);

// What the cloud sees on gateways/{gw}/tasks/{task}/state for the task's current state.
json task_state_message(const task& t, time_ms now_ms);
// The task with every attempt (persistence, `edge-gateway tasks ID`).
json task_document(const task& t);
bool task_from_document(const json& j, task& out);

// The message to devices/{id}/tasks/{task}.
json task_message(const task& t, const attempt& a, int64_t ttl_ms);

// True when version `have` satisfies `want` (same major, have >= want, dotted numbers;
// non-numeric versions must be equal). An empty `want` matches anything.
bool version_satisfies(std::string_view have, std::string_view want);

}  // namespace egw::devices
