// SPDX-License-Identifier: Apache-2.0
// The downlink relay (docs/devices.md, Downlink): the cloud_inbox of the mqtt sink named by
// `downlink.sink`. What the cloud sends on gateways/{gw}/down/{topic} is decided by the
// allow-list (downlink.h) and either stored in the buffer for the internal sink that publishes
// it on the local broker (downlink_sink.h), or refused and answered on
// gateways/{gw}/downlink/rejected through the buffer and the receiving sink. Task submits and
// cancels go to the devices service on the loop.
//
// Threads. on_message() runs on Paho's receive thread of the cloud connection and commits to
// the buffer before it returns, so that Paho's PUBACK to the cloud broker comes after the
// message is safe, as ingest does for the local broker. configure(), attach() and status() run
// on the loop; the policy they install is an immutable snapshot swapped under a mutex.
// Counters are relaxed atomics.
#pragma once

#include <uv.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gateway/config.h"
#include "gateway/log.h"
#include "gateway/mailbox.h"
#include "gateway/sinks/cloud_inbox.h"
#include "gateway/sinks/sink.h"
#include "storage/buffer.h"

namespace egw::devices {

class downlink_relay final : public cloud_inbox {
public:
    // A submit or cancel from the cloud, handed to the loop.
    struct task_command {
        bool submit = true;
        std::string payload;
    };

    // `on_stored` is the gateway's: it hands a committed row to the live sinks.
    downlink_relay(uv_loop_t* loop, std::string gateway_id, storage::buffer& buf,
                   storage::buffer::stored_fn on_stored);
    ~downlink_relay() override;
    downlink_relay(const downlink_relay&) = delete;
    downlink_relay& operator=(const downlink_relay&) = delete;

    // Loop thread, at start-up and after every reload (the sinks already made for `c`): takes
    // the policy from c.downlink and sets itself as the inbox of that mqtt sink only.
    void configure(const config& c, std::map<int, std::unique_ptr<sink>>& sinks);

    // Loop thread: where the cloud's task commands go (the devices service).
    std::function<void(const task_command&)> on_task;

    // Loop thread: the mailbox goes before the loop ends (shutdown).
    void close();

    // The `downlink` block of status (and so of /metrics).
    nlohmann::json status() const;

    // cloud_inbox
    std::vector<std::string> filters() const override;
    void on_message(int sink_bit, std::string_view topic,
                    const MQTTAsync_message& m) noexcept override;
    void on_subscribed(bool subscribed) noexcept override { subscribed_.store(subscribed); }

private:
    struct uplink_route {
        std::string from;
        std::vector<std::string> templates;  // of the mqtt sinks it sends to
    };
    struct policy {
        std::string sink;
        std::vector<allow_entry> allow;
        int local_bit = -1;
        std::vector<uplink_route> routes;
    };

    std::shared_ptr<const policy> snapshot() const;
    void handle(int sink_bit, std::string_view topic, const MQTTAsync_message& m);
    // The reason a relayed message would come back down, or empty (the run-time loop guard).
    std::string loop_reason(const policy& p, std::string_view local_topic) const;
    void refuse(int sink_bit, std::string_view topic, std::string_view local_topic,
                const std::string& reason);

    const std::string gateway_id_;
    const std::string submit_topic_, cancel_topic_;
    storage::buffer& buf_;
    storage::buffer::stored_fn on_stored_;
    std::unique_ptr<mailbox<task_command>> tasks_;

    mutable std::mutex mu_;
    std::shared_ptr<const policy> policy_;  // mu_; null: no downlink configured

    std::atomic<bool> subscribed_{false};
    std::atomic<uint64_t> received_{0}, buffered_{0}, tasks_received_{0}, store_errors_{0};
    std::atomic<uint64_t> rejected_not_allowed_{0}, rejected_retained_{0}, rejected_too_large_{0},
        rejected_loop_{0}, rejected_other_{0};
    log::throttle refuse_log_, error_log_;
};

}  // namespace egw::devices
