// SPDX-License-Identifier: Apache-2.0
// The connection to the site's local broker: the only code that talks to it. Messages arrive
// on Paho's receive thread and are committed to the buffer right there, before the callback
// returns. Paho C (>= 1.3.10, the fix for paho.mqtt.c issue 522) sends the QoS 1 PUBACK only
// after the callback returned, so the local broker lets go of a message only once it is in the
// WAL, and a crash at any instant loses nothing accepted. Connection management runs on the
// loop thread.
#pragma once

#include <mqtt/async_client.h>

#include <deque>
#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "gateway/config.h"
#include "gateway/counters.h"
#include "gateway/events.h"
#include "gateway/log.h"
#include "gateway/mailbox.h"
#include "gateway/router.h"
#include "gateway/sink_machine.h"
#include "storage/buffer.h"

namespace egw {

class ingest final : private mqtt::callback, private mqtt::iaction_listener {
public:
    ingest(local_config cfg, storage::buffer& buf, router& routes, counters& cnt,
           mailbox<event>& mb);
    ~ingest() override;
    ingest(const ingest&) = delete;
    ingest& operator=(const ingest&) = delete;

    // Loop thread.
    void handle(ingest_event& e);
    void pump();  // connects when due
    void stop(std::chrono::milliseconds budget);
    nlohmann::json status() const;

    // Paused: a message could not be stored (buffer full under when_full=block, disk full,
    // SQLite error). It is held in memory, in order with any that follow, and the local
    // session is disconnected so that the broker keeps the rest. Paho's receive thread must
    // never wait: it holds Paho's global lock while it calls us and it also carries the
    // sinks' acknowledgements, which are what frees space.
    bool paused() const { return paused_; }
    size_t held() const;
    // Worker thread: stores the held messages in order; true when none is left.
    bool store_held();
    // Loop thread, after store_held() succeeded: reconnects the local session.
    void resume();

private:
    // Paho threads.
    void message_arrived(mqtt::const_message_ptr msg) override;
    void connection_lost(const std::string& cause) override;
    void on_success(const mqtt::token& tok) override;  // connect
    void on_failure(const mqtt::token& tok) override;

    void connect();
    void subscribe();
    bool counted(const storage::append_result& r, std::string_view topic);

    struct held_message {
        std::string topic, payload;
        uint64_t sinks;
        int64_t ts;
    };

    local_config cfg_;
    storage::buffer& buf_;
    router& routes_;
    counters& cnt_;
    mailbox<event>& mb_;
    storage::buffer::stored_fn post_;
    std::shared_ptr<spdlog::logger> log_;
    std::unique_ptr<mqtt::async_client> cli_;
    // Reuses the sink's reconnect policy; the data-path parts stay unused.
    sink_machine conn_;
    bool subscribed_ = false;
    bool stopping_ = false;
    bool paused_ = false;
    mutable std::mutex held_mu_;
    std::deque<held_message> held_;  // held_mu_
    bool holding_ = false;           // held_mu_
    std::string last_error_;
    log::throttle too_large_log_, no_route_log_, full_log_, error_log_, pause_log_;

    struct subscribe_listener final : mqtt::iaction_listener {
        ingest* self;
        void on_success(const mqtt::token& tok) override;
        void on_failure(const mqtt::token& tok) override;
    } subscribe_listener_;
};

}  // namespace egw
