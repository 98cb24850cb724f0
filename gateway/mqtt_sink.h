// SPDX-License-Identifier: Apache-2.0
// A sink that publishes to an MQTT broker (the cloud) through Paho's async client: the I/O
// half of a sink, around sink_machine. Loop thread only, except the Paho callbacks, which only
// post events.
#pragma once

#include <mqtt/async_client.h>

#include <chrono>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "gateway/config.h"
#include "gateway/counters.h"
#include "gateway/events.h"
#include "gateway/log.h"
#include "gateway/mailbox.h"
#include "gateway/paho.h"
#include "gateway/sink_machine.h"
#include "gateway/topic.h"
#include "storage/buffer.h"

namespace egw {

class mqtt_sink final : private mqtt::callback, private mqtt::iaction_listener {
public:
    mqtt_sink(int id, sink_config cfg, const std::string& gateway_id, int bit, storage::buffer& buf,
              counters& cnt, mailbox<event>& mb);
    ~mqtt_sink() override;
    mqtt_sink(const mqtt_sink&) = delete;
    mqtt_sink& operator=(const mqtt_sink&) = delete;

    void handle(sink_event& e);
    void on_live(const storage::stored_row& row);
    // Connects when due, reads the buffer when behind, publishes up to the window.
    void pump();
    // Retained gateway status on gateways/{gateway_id}/status; not buffered, best effort.
    void publish_status(const std::string& json);
    // Publishes `offline_status` and disconnects, waiting at most `budget`.
    void stop(const std::string& offline_status, std::chrono::milliseconds budget);
    // Once per second: updates the delivery rate used for the time-to-drain estimate.
    void tick(double seconds);

    nlohmann::json status();
    const sink_config& config() const { return cfg_; }
    sink_machine& machine() { return machine_; }
    int bit() const { return bit_; }
    int id() const { return id_; }

private:
    // mqtt::callback (Paho thread)
    void connection_lost(const std::string& cause) override;
    // mqtt::iaction_listener for publishes (Paho thread)
    void on_success(const mqtt::token& tok) override;
    void on_failure(const mqtt::token& tok) override;

    void connect();
    void force_reconnect(const std::string& why);

    int id_;
    sink_config cfg_;
    std::string gateway_id_;
    std::string status_topic_;
    int bit_;
    storage::buffer& buf_;
    counters& cnt_;
    mailbox<event>& mb_;
    topic_template topic_;
    mqtt::properties props_base_;
    std::unique_ptr<mqtt::async_client> cli_;
    sink_machine machine_;
    std::vector<storage::stored_row> read_scratch_;
    std::string last_error_;
    std::string last_status_;
    uint64_t sent_ = 0, acked_ = 0, acked_at_last_tick_ = 0;
    double rate_ = 0;
    bool stopping_ = false;
    log::throttle reject_log_;

    // Connect results arrive on a separate listener so they are not taken for publishes.
    struct connect_listener final : mqtt::iaction_listener {
        mqtt_sink* self;
        void on_success(const mqtt::token& tok) override;
        void on_failure(const mqtt::token& tok) override;
    } connect_listener_;
};

}  // namespace egw
