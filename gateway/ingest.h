// SPDX-License-Identifier: Apache-2.0
// The connection to the site's local broker: the only code that talks to it. Messages arrive
// on Paho's receive thread and are committed to the buffer right there, before the callback
// returns. Paho C (>= 1.3.10, the fix for paho.mqtt.c issue 522) sends the QoS 1 PUBACK only
// after the callback returned, so the local broker lets go of a message only once it is in the
// WAL, and a crash at any instant loses nothing accepted. That is buffer.commit "each"; with
// "group" the callback only queues the message and a writer thread commits the queue in one
// transaction, which takes the commit out from under Paho's global mutex (faster) and opens a
// window: what is queued at a crash is lost. Connection management runs on the loop thread.
#pragma once

#include <mqtt/async_client.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

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
    ingest(local_config cfg, storage::commit_mode commit, storage::buffer& buf, router& routes,
           counters& cnt, mailbox<event>& mb);
    ~ingest() override;
    ingest(const ingest&) = delete;
    ingest& operator=(const ingest&) = delete;

    // Loop thread.
    void handle(ingest_event& e);
    void pump();  // connects when due
    // Disconnects, then (group commit) stops the writer; what is still queued stays held for
    // the caller's last store_held().
    void stop(std::chrono::milliseconds budget);
    nlohmann::json status() const;

    // Paused: a message could not be stored (buffer full under when_full=block, disk full,
    // SQLite error). It is held in memory, in order with any that follow, and the local
    // session is disconnected so that the broker keeps the rest. Paho's receive thread must
    // never wait: it holds Paho's global lock while it calls us and it also carries the
    // sinks' acknowledgements, which are what frees space.
    bool paused() const { return paused_; }
    size_t held() const;
    // Stores the held (or, with group commit, queued) messages in order, in transactions of up
    // to group_batch; true when none is left. Worker or writer thread; callers are serialised.
    bool store_held();
    // Loop thread, after store_held() succeeded: reconnects the local session.
    void resume();

    // Loop thread: whether any sink is connected and so may take live rows. Must be set before
    // such a sink first reads the buffer (see post_live()).
    void set_live_wanted(bool wanted);

private:
    // Paho threads.
    void message_arrived(mqtt::const_message_ptr msg) override;
    void connection_lost(const std::string& cause) override;
    void on_success(const mqtt::token& tok) override;  // connect
    void on_failure(const mqtt::token& tok) override;

    void connect();
    void subscribe();
    void queue(std::string_view topic, std::string_view body, uint64_t sinks, int64_t ts);
    void write_queued();  // the group commit writer thread
    void stop_writer();
    bool counted(const storage::append_result& r, std::string_view topic);
    // Counts and logs (throttled) a write to the buffer that held ingest too long: the disk
    // stalled, or a checkpoint held the write lock through its fsync.
    void timed(std::chrono::steady_clock::time_point started, size_t rows);

    struct held_message {
        std::string topic, payload;
        uint64_t sinks;
        int64_t ts;
    };
    void hold_again(std::vector<held_message>& batch, size_t from);
    void post_live(uint64_t seq, const storage::incoming& row);

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
    const bool group_;
    std::mutex store_mu_;  // one store_held() at a time, so rows keep their order
    mutable std::mutex held_mu_;
    std::condition_variable queued_cv_;  // writer: something to store
    std::condition_variable room_cv_;    // Paho's thread: the queue has room again
    std::deque<held_message> held_;      // held_mu_; with group commit also the queue
    bool holding_ = false;               // held_mu_: storing failed, paused
    bool stop_writer_ = false;           // held_mu_
    std::thread writer_;
    std::atomic<bool> live_wanted_{true};
    std::string last_error_;
    log::throttle too_large_log_, no_route_log_, full_log_, error_log_, pause_log_, slow_log_;

    struct subscribe_listener final : mqtt::iaction_listener {
        ingest* self;
        void on_success(const mqtt::token& tok) override;
        void on_failure(const mqtt::token& tok) override;
    } subscribe_listener_;
};

}  // namespace egw
