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

class mqtt_sink final {
public:
    mqtt_sink(int id, sink_config cfg, const std::string& gateway_id, int bit, storage::buffer& buf,
              counters& cnt, mailbox<event>& mb);
    ~mqtt_sink();
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
    // One Paho client and the callbacks bound to it (Paho threads; they only post events,
    // tagged with the generation). Every connection attempt gets a fresh one: Paho keeps the
    // publishes it had not yet written when a connection dropped and sends them first on the
    // next connection, ahead of the rows the sink rewinds to, which would break the order.
    // Events from a replaced client are ignored.
    struct link final : mqtt::callback, mqtt::iaction_listener {
        link(mqtt_sink& sink, uint64_t generation);
        mqtt_sink& self;
        const uint64_t gen;
        bool used = false;  // a connect was attempted with it
        void post(sink_event::kind what, uint64_t seq, std::string text, int code = 0);
        void connection_lost(const std::string& cause) override;
        void on_success(const mqtt::token& tok) override;  // publishes
        void on_failure(const mqtt::token& tok) override;
        struct connect_listener final : mqtt::iaction_listener {
            link* l;
            void on_success(const mqtt::token& tok) override;
            void on_failure(const mqtt::token& tok) override;
        } on_connect;
        // Last member: destroyed first, so no callback runs once the listeners above are gone.
        std::unique_ptr<mqtt::async_client> cli;
    };

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
    std::unique_ptr<link> link_;
    uint64_t generation_ = 0;
    sink_machine machine_;
    std::vector<storage::stored_row> read_scratch_;
    std::string last_error_;
    std::string last_status_;
    uint64_t sent_ = 0, acked_ = 0, acked_at_last_tick_ = 0;
    double rate_ = 0;
    bool stopping_ = false;
    log::throttle reject_log_;
};

}  // namespace egw
