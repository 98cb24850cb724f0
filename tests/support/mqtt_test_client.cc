// SPDX-License-Identifier: Apache-2.0

#include "support/mqtt_test_client.h"

#include <charconv>
#include <iostream>

namespace egw::test {

namespace {

// How long a lost connection waits before Paho retries: short, tests are bounded in time.
constexpr auto k_reconnect_min = std::chrono::seconds(1);
constexpr auto k_reconnect_max = std::chrono::seconds(2);
// Session expiry for persistent MQTT 5 sessions: far longer than any test.
constexpr int k_session_expiry_s = 3600;
// Paho refuses a publish (MQTTASYNC_MAX_BUFFERED_MESSAGES) once this many commands wait to be
// written; its default (100) is below the windows the tests use.
constexpr int k_max_buffered = 100000;

}  // namespace

std::optional<std::uint64_t> parse_seq(const std::optional<std::string>& text) {
    if (!text || text->empty()) {
        return std::nullopt;
    }
    std::uint64_t value = 0;
    const char* first = text->data();
    const char* last = first + text->size();
    const auto [ptr, ec] = std::from_chars(first, last, value);
    if (ec != std::errc{} || ptr != last) {
        return std::nullopt;
    }
    return value;
}

// ---------------------------------------------------------------------------------------------
// test_subscriber

test_subscriber::test_subscriber(std::string uri, std::string client_id, subscriber_options options)
    : uri_(std::move(uri)), client_id_(std::move(client_id)), options_(options) {
    client_ = std::make_unique<mqtt::async_client>(
        uri_, client_id_, mqtt::create_options(options_.mqtt_version, k_max_buffered));
    client_->set_message_callback([this](mqtt::const_message_ptr msg) { on_message(msg); });
    // Renew subscriptions after an automatic reconnect: a no-op for a kept session, needed if
    // the broker lost it (killed without persistence).
    client_->set_connected_handler([this](const std::string&) {
        std::vector<std::string> filters;
        {
            std::lock_guard lock(mutex_);
            filters = filters_;
        }
        for (const auto& f : filters) {
            try {
                client_->subscribe(f, 1);
            } catch (const std::exception& e) {
                std::cerr << "[egw-test] resubscribe " << f << ": " << e.what() << "\n";
            }
        }
    });
}

test_subscriber::~test_subscriber() { disconnect(); }

void test_subscriber::connect(std::vector<std::string> filters, std::chrono::milliseconds timeout) {
    mqtt::connect_options_builder b;
    b.mqtt_version(options_.mqtt_version)
        .keep_alive_interval(std::chrono::seconds(options_.keepalive_s))
        .automatic_reconnect(k_reconnect_min, k_reconnect_max)
        .connect_timeout(std::chrono::seconds(5));
    if (options_.mqtt_version >= 5) {
        b.clean_start(!options_.persistent_session);
        if (options_.persistent_session) {
            b.properties({{mqtt::property::SESSION_EXPIRY_INTERVAL, k_session_expiry_s}});
        }
    } else {
        b.clean_session(!options_.persistent_session);
    }
    auto tok = client_->connect(b.finalize());
    if (!tok->wait_for(timeout)) {
        throw mqtt::exception(MQTTASYNC_FAILURE, "connect timeout " + uri_);
    }
    for (const auto& f : filters) {
        if (!client_->subscribe(f, 1)->wait_for(timeout)) {
            throw mqtt::exception(MQTTASYNC_FAILURE, "subscribe timeout " + f);
        }
    }
    // From now on the connected handler renews these after each automatic reconnect.
    std::lock_guard lock(mutex_);
    filters_ = std::move(filters);
}

void test_subscriber::disconnect() noexcept {
    try {
        if (client_ && client_->is_connected()) {
            client_->disconnect(std::chrono::milliseconds(200))->wait_for(std::chrono::seconds(2));
        }
    } catch (const std::exception&) {
    }
}

void test_subscriber::on_message(const mqtt::const_message_ptr& msg) noexcept {
    received_message m;
    m.topic = msg->get_topic();
    m.payload = msg->get_payload_str();
    m.qos = msg->get_qos();
    m.retained = msg->is_retained();
    const MQTTProperties& props = msg->get_properties().c_struct();
    for (int i = 0; i < props.count; ++i) {
        const MQTTProperty& p = props.array[i];
        if (p.identifier == MQTTPROPERTY_CODE_CONTENT_TYPE) {
            m.content_type.assign(p.value.data.data, p.value.data.len);
            continue;
        }
        if (p.identifier == MQTTPROPERTY_CODE_RESPONSE_TOPIC) {
            m.response_topic.assign(p.value.data.data, p.value.data.len);
            continue;
        }
        if (p.identifier == MQTTPROPERTY_CODE_CORRELATION_DATA) {
            m.correlation_data.assign(p.value.data.data, p.value.data.len);
            continue;
        }
        if (p.identifier == MQTTPROPERTY_CODE_MESSAGE_EXPIRY_INTERVAL) {
            m.message_expiry_s = p.value.integer4;
            continue;
        }
        if (p.identifier != MQTTPROPERTY_CODE_USER_PROPERTY) {
            continue;
        }
        ++m.user_property_count;
        const std::string key(p.value.data.data, p.value.data.len);
        std::string value(p.value.value.data, p.value.value.len);
        m.user_properties.emplace_back(key, value);
        if (key == "egw-gateway") {
            m.egw_gateway = std::move(value);
        } else if (key == "egw-seq") {
            m.egw_seq = std::move(value);
        }
    }
    {
        std::lock_guard lock(mutex_);
        m.order = next_order_++;
        messages_.push_back(std::move(m));
    }
    cv_.notify_all();
}

std::size_t test_subscriber::count() const {
    std::lock_guard lock(mutex_);
    return messages_.size();
}

bool test_subscriber::wait_for_count(std::size_t n, std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return messages_.size() >= n; });
}

std::optional<received_message> test_subscriber::wait_for(
    const std::function<bool(const received_message&)>& predicate,
    std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mutex_);
    std::optional<received_message> hit;
    std::size_t checked = 0;
    cv_.wait_for(lock, timeout, [&] {
        for (; checked < messages_.size(); ++checked) {
            if (predicate(messages_[checked])) {
                hit = messages_[checked];
                return true;
            }
        }
        return false;
    });
    return hit;
}

std::vector<received_message> test_subscriber::messages() const {
    std::lock_guard lock(mutex_);
    return messages_;
}

void test_subscriber::clear() {
    std::lock_guard lock(mutex_);
    messages_.clear();
}

// ---------------------------------------------------------------------------------------------
// test_publisher

test_publisher::test_publisher(std::string uri, std::string client_id, int window, int mqtt_version)
    : uri_(std::move(uri)),
      client_id_(std::move(client_id)),
      window_(window),
      mqtt_version_(mqtt_version) {
    client_ = std::make_unique<mqtt::async_client>(
        uri_, client_id_, mqtt::create_options(mqtt_version_, k_max_buffered));
}

test_publisher::~test_publisher() { disconnect(); }

void test_publisher::connect(std::chrono::milliseconds timeout) {
    mqtt::connect_options_builder b;
    b.mqtt_version(mqtt_version_)
        .keep_alive_interval(std::chrono::seconds(10))
        .max_inflight(window_)
        .connect_timeout(std::chrono::seconds(5));
    if (mqtt_version_ >= 5) {
        b.clean_start(true);
    } else {
        b.clean_session(true);
    }
    auto tok = client_->connect(b.finalize());
    if (!tok->wait_for(timeout)) {
        throw mqtt::exception(MQTTASYNC_FAILURE, "connect timeout " + uri_);
    }
}

void test_publisher::disconnect() noexcept {
    try {
        if (client_ && client_->is_connected()) {
            flush(std::chrono::seconds(2));
            client_->disconnect(std::chrono::milliseconds(200))->wait_for(std::chrono::seconds(2));
        }
    } catch (const std::exception&) {
    }
}

void test_publisher::retire_oldest(std::chrono::milliseconds timeout) {
    auto tok = std::move(inflight_.front());
    inflight_.pop_front();
    if (!tok->wait_for(timeout)) {
        throw mqtt::exception(MQTTASYNC_FAILURE, "publish ack timeout");
    }
    ++acked_;
}

void test_publisher::publish(const std::string& topic, const std::string& payload, int qos,
                             bool retained) {
    while (static_cast<int>(inflight_.size()) >= window_) {
        retire_oldest(std::chrono::seconds(10));
    }
    auto msg = mqtt::make_message(topic, payload.data(), payload.size(), qos, retained);
    auto tok = client_->publish(msg);
    if (qos == 0) {
        ++acked_;
        return;
    }
    inflight_.push_back(std::move(tok));
}

void test_publisher::flush(std::chrono::milliseconds timeout) {
    while (!inflight_.empty()) {
        retire_oldest(timeout);
    }
}

}  // namespace egw::test
