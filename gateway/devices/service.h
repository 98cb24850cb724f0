// SPDX-License-Identifier: Apache-2.0
// The daemon's adapter around the devices engine (engine.h): its own Paho connection to the
// local broker (client id `{local.client_id}-devices`), subscribed to the device topics, a timer
// for the engine's deadlines, timeouts and pings, the store written on the worker pool, and the
// cloud side through the buffer (task states and registry records wait there while the cloud is
// away, like every other message).
//
// Threads. Everything here runs on the loop thread except Paho's callbacks, which only post to
// this service's mailbox, and the store/buffer writes, which run on the libuv worker pool, one
// batch at a time. The engine is Sans-I/O: this class feeds it events with the wall-clock time
// and carries out the effects it returns.
//
// Order of the cloud side. A batch is first written to the store (task rows with their seq),
// then its states and records are appended to the buffer, then the store marks them published:
// after a crash between the two, start-up appends the current state of each unpublished task
// again (store.h).
#pragma once

#include <mqtt/async_client.h>
#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gateway/config.h"
#include "gateway/devices/engine.h"
#include "gateway/devices/store.h"
#include "gateway/mailbox.h"
#include "storage/buffer.h"

namespace egw::devices {

class service : private mqtt::callback {
public:
    struct options {
        uv_loop_t* loop = nullptr;
        local_config local;
        std::string db_path;  // the buffer's file
        std::string gateway_id;
        storage::buffer* buf = nullptr;
        // The sinks' bits that task states and registry records go to (the cloud).
        std::function<uint64_t()> cloud_bits;
        // A row just appended to the buffer (the gateway hands it to the live sinks).
        storage::buffer::stored_fn on_stored;
    };
    // Loads the registry and the task table from the store (start-up, before the loop runs).
    explicit service(options o);
    ~service() override;
    service(const service&) = delete;
    service& operator=(const service&) = delete;

    void start();
    void stop();

    // Control socket commands (loop thread).
    nlohmann::json devices_json() const;
    nlohmann::json tasks_json(const nlohmann::json& req) const;
    nlohmann::json submit(const std::string& payload);
    nlohmann::json cancel(const std::string& id);
    nlohmann::json status() const;

    // From the cloud (the downlink connection), loop thread. A command that is refused is
    // answered on gateways/{gw}/downlink/rejected (through the buffer) and counted.
    void cloud_submit(std::string_view payload);
    void cloud_cancel(std::string_view payload);

private:
    struct inbound {
        enum kind { message, connected, connect_failed, lost } what = message;
        std::string topic, payload;
    };
    void on_inbound(std::vector<inbound>& batch);
    void handle_message(const std::string& topic, const std::string& payload, time_ms now);
    void apply(effects& fx);
    void flush();
    void arm_timer();
    void on_timer();
    void connect();
    void subscribe();
    void answer_refused(const std::string& what, const std::string& reason);

    // mqtt::callback, on Paho's thread: post and return.
    void connected(const std::string& cause) override;
    void connection_lost(const std::string& cause) override;
    void message_arrived(mqtt::const_message_ptr msg) override;

    options o_;
    engine eng_;
    std::unique_ptr<store> store_;  // used by the worker only while a write is in flight
    std::unique_ptr<mailbox<inbound>> mb_;
    std::unique_ptr<mqtt::iaction_listener> connect_listener_;  // outlives the client
    std::unique_ptr<mqtt::async_client> cli_;
    uv_timer_t* timer_ = nullptr;
    uv_timer_t* reconnect_ = nullptr;
    bool connected_ = false, stopping_ = false;
    bool writing_ = false;
    batch pending_;
    struct cloud_row {
        std::string topic, payload;
    };
    std::vector<cloud_row> pending_cloud_;
    uint64_t store_errors_ = 0, published_to_devices_ = 0, publish_errors_ = 0;
    uint64_t refused_registers_ = 0, refused_cloud_commands_ = 0;
};

}  // namespace egw::devices
