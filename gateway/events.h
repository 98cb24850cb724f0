// SPDX-License-Identifier: Apache-2.0
// Everything other threads tell the loop thread, through one mailbox so that it is handled
// in the order it happened.
#pragma once

#include <cstdint>
#include <string>
#include <variant>

#include "storage/buffer.h"

namespace egw {

struct sink_event {
    enum kind { connected, connect_failed, lost, acked, publish_failed };
    int sink_id;
    kind what;
    uint64_t seq = 0;
    std::string text;
    int code = 0;       // MQTT 5 reason code of a failed publish
    uint64_t gen = 0;   // the sink's Paho client it came from (mqtt_sink::link)
    int32_t slot = -1;  // the publish's callback slot in that client, to release
};

struct ingest_event {
    enum kind { connected, connect_failed, lost, subscribed, subscribe_failed, pause };
    kind what;
    std::string text;
};

using event = std::variant<storage::stored_row, sink_event, ingest_event>;

}  // namespace egw
