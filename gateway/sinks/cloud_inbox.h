// SPDX-License-Identifier: Apache-2.0
// What an mqtt sink's cloud connection does with the messages it receives: the downlink and
// the cloud's task commands (docs/devices.md). The sink subscribes to filters() on every
// connect and hands each message to on_message() on Paho's receive thread; Paho acknowledges
// the message to the cloud broker after on_message() returns, so whatever must survive a crash
// is committed by then (the relay stores it in the buffer).
//
// Lifetime: the gateway owns the inbox and keeps it for longer than any sink it is set on.
#pragma once

#include <MQTTAsync.h>

#include <string>
#include <string_view>
#include <vector>

namespace egw {

class cloud_inbox {
public:
    virtual ~cloud_inbox() = default;

    // Topic filters to subscribe to (QoS 1; MQTT 5: No Local, Retain As Published). Any thread.
    virtual std::vector<std::string> filters() const = 0;

    // Paho's receive thread; must not throw. `sink_bit` is the receiving sink's bit (answers to
    // the cloud go back through it). The message and topic belong to Paho.
    virtual void on_message(int sink_bit, std::string_view topic,
                            const MQTTAsync_message& message) noexcept = 0;

    // The subscription is in place (true) or gone with the connection (false). Any thread.
    virtual void on_subscribed(bool subscribed) noexcept = 0;
};

}  // namespace egw
