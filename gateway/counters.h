// SPDX-License-Identifier: Apache-2.0
// Gateway-wide counters. Written from the ingest thread and the loop, read by status; relaxed
// atomics are enough because each is an independent monotonic count.
#pragma once

#include <atomic>
#include <cstdint>

namespace egw {

struct counters {
    using counter = std::atomic<uint64_t>;
    counter received{0};  // messages from the local broker
    counter buffered{0};  // committed to the buffer
    counter sent{0};      // publishes handed to a sink connection (retries count again)
    counter acked{0};     // publishes the cloud acknowledged
    counter rejected{0};  // publishes the cloud refused by reason code (let go: see mqtt_sink)
    counter dropped_no_route{0};
    counter dropped_too_large{0};
    counter dropped_buffer_full{0};
    counter dropped_disk_full{0};
    counter errors_buffer{0};
    counter errors_publish{0};
    counter errors_disk_full{0};  // ingest commits refused for lack of space (then retried)
    counter slow_writes{0};       // ingest writes that took slow_write_threshold or longer
};

}  // namespace egw
