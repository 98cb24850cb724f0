// SPDX-License-Identifier: Apache-2.0
// A sink that publishes to an MQTT broker (the cloud) through Paho's async client: the I/O
// half of a sink, around sink_machine. Loop thread only, except the Paho callbacks, which only
// post events.
//
// It drives Paho C directly rather than through the C++ wrapper: per publish the wrapper
// builds a message, a property list and a token, copies them again for Paho C, and on every
// acknowledgement searches its list of pending tokens, all on the hot path of every row.
#pragma once

#include <MQTTAsync.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gateway/config.h"
#include "gateway/counters.h"
#include "gateway/events.h"
#include "gateway/log.h"
#include "gateway/mailbox.h"
#include "gateway/paho.h"
#include "gateway/sink_machine.h"
#include "gateway/sinks/cloud_inbox.h"
#include "gateway/sinks/sink.h"
#include "gateway/topic.h"
#include "storage/buffer.h"

namespace egw {

// The settings (sink_config's mqtt fields) from a sink's JSON; see sinks/sink.h parse_sink.
void parse_mqtt_sink(const nlohmann::json& s, const std::string& path, const config& c,
                     sink_config& out, std::vector<config_problem>& problems);

class mqtt_sink final : public sink {
public:
    mqtt_sink(int id, sink_config cfg, const std::string& gateway_id, int bit, storage::buffer& buf,
              counters& cnt, mailbox<event>& mb);
    ~mqtt_sink() override;

    void handle(sink_event& e) override;
    void on_live(storage::stored_row& row, bool last) override;
    // Connects when due, reads the buffer when behind, publishes up to the window.
    void pump() override;
    // Retained gateway status on gateways/{gateway_id}/status; not buffered, best effort.
    void publish_status(const std::string& json) override;
    // Publishes `offline_status` and disconnects, waiting at most `budget`.
    void stop(const std::string& offline_status, std::chrono::milliseconds budget) override;
    // Once per second: updates the delivery rate used for the time-to-drain estimate.
    void tick(double seconds) override;
    nlohmann::json status() override;

    bool wants_live() const override { return machine_.connected(); }
    // PUBACKs are posted without waking the loop (see on_success in mqtt_sink.cc).
    bool polls_acks() const override { return machine_.inflight() > 0; }
    uint64_t ack_committed() const override { return machine_.ack_committed(); }
    uint64_t acked_through() const override { return machine_.acked_through(); }
    void ack_commit_done(uint64_t through) override { machine_.ack_commit_done(through); }
    mqtt_sink* as_mqtt() override { return this; }
    void set_held(bool held) override { held_ = held; }
    std::chrono::steady_clock::duration connected_for() const override {
        if (!machine_.connected()) return {};
        return std::chrono::steady_clock::now() - connected_at_;
    }

    sink_machine& machine() { return machine_; }

    // The downlink (docs/devices.md): this connection also subscribes to inbox->filters() and
    // hands what arrives to it; nullptr: subscribes to nothing. Loop thread; a connected sink
    // subscribes (or unsubscribes) at once. The inbox outlives the sink (cloud_inbox.h).
    void set_inbox(cloud_inbox* inbox);

private:
    // One Paho client and the state its callbacks use (Paho threads; they only post events,
    // tagged with the generation). Every connection attempt gets a fresh one: Paho keeps the
    // publishes it had not yet written when a connection dropped and sends them first on the
    // next connection, ahead of the rows the sink rewinds to, which would break the order.
    // Events from a replaced client are ignored.
    struct link final {
        // What a publish's callbacks need: the row's sequence number. Slots are reused only
        // after the loop handled the publish's outcome, so a late callback never reads a
        // reused one; the deque keeps their addresses stable as it grows (up to the window).
        struct slot {
            link* owner;
            uint32_t index;
            uint64_t seq;
        };

        link(mqtt_sink& sink, uint64_t generation);
        ~link();
        link(const link&) = delete;
        link& operator=(const link&) = delete;

        void post(sink_event::kind what, uint64_t seq, std::string text, int code = 0,
                  int32_t slot_index = -1);
        slot* take_slot(uint64_t seq);
        void release_slot(int32_t index);
        bool connected() const { return MQTTAsync_isConnected(cli) != 0; }
        // Asks Paho to close the connection; `wait` > 0 waits for it at most that long.
        void disconnect(std::chrono::milliseconds wait = std::chrono::milliseconds(0));
        void on_connect_failed(int code, int reason, const char* message);  // Paho thread
        static void disconnected(void* ctx);                                // Paho thread

        mqtt_sink& self;
        const uint64_t gen;
        bool used = false;  // a connect was attempted with it
        MQTTAsync cli = nullptr;
        std::deque<slot> slots;
        std::vector<int32_t> free_slots;
        std::mutex mu;  // guards the fields below, written by Paho threads
        std::condition_variable cv;
        std::string tls_error;  // the last TLS error OpenSSL reported during a handshake
        bool disconnect_done = false;
    };

    void connect();
    // Hands one row to Paho; returns Paho's return code. The row's retain flag goes with it;
    // on MQTT 5 also its content type and user properties (3.1.1 has no properties).
    int publish(const storage::stored_row& row);
    void add_row_properties(const storage::stored_row& row);
    void force_reconnect(const std::string& why);
    // Subscribes the new connection to the inbox's filters (loop thread, after connected).
    void subscribe_inbox();
    // A message on the subscription (Paho's receive thread).
    static int message_arrived(void* ctx, char* topic, int topic_len, MQTTAsync_message* m);

    std::string gateway_id_;
    std::string status_topic_;
    storage::buffer& buf_;
    counters& cnt_;
    mailbox<event>& mb_;
    topic_template topic_;
    std::unique_ptr<link> link_;
    uint64_t generation_ = 0;
    bool held_ = false;  // set_held: no new publishes
    std::chrono::steady_clock::time_point connected_at_{};
    sink_machine machine_;
    std::vector<storage::stored_row> read_scratch_;
    // One publish's MQTT 5 properties; they point into the row and are copied by Paho before
    // MQTTAsync_sendMessage returns, so one vector serves every publish.
    std::vector<MQTTProperty> props_;
    uint64_t props_dropped_ = 0;
    log::throttle props_log_;
    std::string last_error_;
    std::string last_status_;
    uint64_t sent_ = 0, acked_ = 0, acked_at_last_tick_ = 0;
    double rate_ = 0;
    bool stopping_ = false;
    log::throttle reject_log_;
    std::atomic<cloud_inbox*> inbox_{nullptr};  // read by Paho's receive thread
};

}  // namespace egw
