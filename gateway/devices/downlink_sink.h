// SPDX-License-Identifier: Apache-2.0
// The internal sink that publishes downlinks on the local broker (docs/devices.md, Downlink).
// The relay (relay.h) stores each allowed downlink in the buffer for this sink's bit, with the
// QoS to use in the row's topic (downlink.h encode_local_row); this sink delivers them in
// order through sink_machine, like the cloud sink delivers uplink rows: while the local broker
// is down they wait in the buffer, and a row leaves the buffer once the local broker
// acknowledged it (QoS 1 and 2) or it was written to the socket (QoS 0).
//
// Threads: loop thread only, except Paho's callbacks, which only post sink_events tagged with
// the client's generation (a fresh Paho client per connection attempt, as mqtt_sink does, so
// that Paho never resends old publishes ahead of the rewound rows). MQTT 3.1.1, clean session,
// never retained.
#pragma once

#include <MQTTAsync.h>

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "gateway/sink_machine.h"
#include "gateway/sinks/sink.h"

namespace egw::devices {

class downlink_sink final : public sink {
public:
    downlink_sink(int id, sink_config cfg, int bit, storage::buffer& buf, mailbox<event>& mb);
    ~downlink_sink() override;

    void handle(sink_event& e) override;
    void on_live(storage::stored_row& row, bool last) override;
    void pump() override;
    void tick(double) override {}
    void stop(const std::string& offline_status, std::chrono::milliseconds budget) override;
    nlohmann::json status() override;
    bool wants_live() const override { return machine_.connected(); }
    uint64_t ack_committed() const override { return machine_.ack_committed(); }
    uint64_t acked_through() const override { return machine_.acked_through(); }
    void ack_commit_done(uint64_t through) override { machine_.ack_commit_done(through); }

private:
    // One Paho client; callbacks reach the loop through `post`. A publish's context is a slot
    // in `slots` (stable addresses), reused once the loop handled its outcome.
    struct client {
        struct slot {
            client* owner;
            int32_t index;
            uint64_t seq;
        };
        client(downlink_sink& sink, uint64_t gen);
        ~client();
        client(const client&) = delete;
        client& operator=(const client&) = delete;
        void post(sink_event::kind what, uint64_t seq, std::string text, int32_t slot_index = -1);
        slot* take_slot(uint64_t seq);

        downlink_sink& self;
        const uint64_t gen;
        MQTTAsync cli = nullptr;
        bool used = false;
        std::deque<slot> slots;
        std::vector<int32_t> free_slots;
    };

    void connect();
    int publish(const storage::stored_row& row);

    storage::buffer& buf_;
    mailbox<event>& mb_;
    sink_machine machine_;
    std::unique_ptr<client> cli_;
    uint64_t generation_ = 0;
    std::vector<storage::stored_row> scratch_;
    std::string last_error_;
    uint64_t sent_ = 0, acked_ = 0, malformed_ = 0;
    bool stopping_ = false;
};

// The make function of the sink registry (sinks/sink.cc).
std::unique_ptr<sink> make_downlink_sink(const sink_context& ctx);
// Its parse function: a user cannot configure this type (config adds it itself).
void parse_downlink_sink(const nlohmann::json& s, const std::string& path, const config& c,
                         sink_config& out, std::vector<config_problem>& problems);

}  // namespace egw::devices
