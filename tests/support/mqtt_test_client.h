// SPDX-License-Identifier: Apache-2.0
//
// MQTT clients the tests use as devices (publisher, on the local broker) and as the cloud
// consumer (subscriber, on the cloud broker). Thin wrappers over Paho C++.

#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <mqtt/async_client.h>

namespace egw::test {

// One message as the subscriber saw it.
struct received_message {
    std::size_t order = 0;  // 0-based arrival index at this subscriber
    std::string topic;
    std::string payload;  // raw bytes
    int qos = 0;
    bool retained = false;
    std::optional<std::string> egw_gateway;  // MQTT 5 user property "egw-gateway"
    std::optional<std::string> egw_seq;      // MQTT 5 user property "egw-seq", as sent
    std::size_t user_property_count = 0;
    // MQTT 5: the Content Type (empty when absent) and every user property, in order.
    std::string content_type;
    std::vector<std::pair<std::string, std::string>> user_properties;
    // MQTT 5 request/response: Response Topic, Correlation Data (empty when absent) and the
    // Message Expiry Interval as the broker forwarded it (the time left, in seconds).
    std::string response_topic;
    std::string correlation_data;
    std::optional<std::uint32_t> message_expiry_s;
};

// Parses a decimal egw-seq; nullopt if absent or not a plain non-negative decimal number.
std::optional<std::uint64_t> parse_seq(const std::optional<std::string>& text);

struct subscriber_options {
    int mqtt_version = 5;  // 5 or 4 (3.1.1)
    // A persistent session (clean start off, session expiry 1 h) with automatic reconnect: the
    // broker queues QoS 1 messages while this client is away, including across a broker restart
    // (stop()/start() with persistence), so a test sees everything the gateway delivered even
    // if the gateway reconnects first.
    bool persistent_session = true;
    int keepalive_s = 10;
};

// Subscribes and records every message, thread-safely. The Paho callback thread appends; tests
// read snapshots and wait with deadlines.
class test_subscriber {
public:
    test_subscriber(std::string uri, std::string client_id, subscriber_options options = {});
    ~test_subscriber();

    test_subscriber(const test_subscriber&) = delete;
    test_subscriber& operator=(const test_subscriber&) = delete;

    // Connects and subscribes to each filter (QoS 1); throws mqtt::exception on failure. The
    // subscriptions are renewed on every automatic reconnect.
    void connect(std::vector<std::string> filters,
                 std::chrono::milliseconds timeout = std::chrono::seconds(10));
    void disconnect() noexcept;

    std::size_t count() const;
    bool wait_for_count(std::size_t n, std::chrono::milliseconds timeout) const;

    // Waits until some message satisfies `predicate`; returns the first such one.
    std::optional<received_message> wait_for(
        const std::function<bool(const received_message&)>& predicate,
        std::chrono::milliseconds timeout) const;

    std::vector<received_message> messages() const;
    void clear();

private:
    void on_message(const mqtt::const_message_ptr& msg) noexcept;

    std::string uri_;
    std::string client_id_;
    subscriber_options options_;
    std::unique_ptr<mqtt::async_client> client_;

    mutable std::mutex mutex_;
    std::vector<std::string> filters_;  // guarded by mutex_ (read on the Paho thread)
    mutable std::condition_variable cv_;
    std::vector<received_message> messages_;
    std::size_t next_order_ = 0;
};

// Publishes as a device. QoS 1 publishes keep at most `window` unacknowledged messages in
// flight: publish() blocks on the oldest when the window is full, which keeps a fast stream fast
// but bounded. Every publish() that returned normally and was followed by a flush() (or counted
// in acked()) has a PUBACK from the broker.
class test_publisher {
public:
    test_publisher(std::string uri, std::string client_id, int window = 64, int mqtt_version = 5);
    ~test_publisher();

    test_publisher(const test_publisher&) = delete;
    test_publisher& operator=(const test_publisher&) = delete;

    void connect(std::chrono::milliseconds timeout = std::chrono::seconds(10));
    void disconnect() noexcept;

    // Throws mqtt::exception if the broker refuses or an ack does not come within 10 s.
    void publish(const std::string& topic, const std::string& payload, int qos = 1,
                 bool retained = false);

    // Waits for every outstanding QoS 1 ack.
    void flush(std::chrono::milliseconds timeout = std::chrono::seconds(10));

    // Number of publishes whose PUBACK has been seen (QoS 0 count when sent).
    std::size_t acked() const { return acked_.load(); }

private:
    void retire_oldest(std::chrono::milliseconds timeout);

    std::string uri_;
    std::string client_id_;
    int window_;
    int mqtt_version_;
    std::unique_ptr<mqtt::async_client> client_;
    std::deque<mqtt::delivery_token_ptr> inflight_;
    std::atomic<std::size_t> acked_{0};
};

}  // namespace egw::test
