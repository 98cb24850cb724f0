// SPDX-License-Identifier: Apache-2.0
//
// The fixture every integration test builds on: a temp dir, a local and a cloud Mosquitto, the
// gateway under test, device publishers and a cloud subscriber. Everything it starts is killed
// in its destructors, also when an assertion failed half-way; on failure the tails of all logs
// are printed.

#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/gateway_process.h"
#include "support/mosquitto_process.h"
#include "support/mqtt_test_client.h"
#include "support/net.h"
#include "support/temp_dir.h"

namespace egw::test {

using json = nlohmann::json;

inline constexpr const char* k_gateway_id = "gw-it";
inline constexpr const char* k_telemetry_filter = "devices/+/telemetry/#";

// The cloud topic a device topic maps to with the default template.
inline std::string cloud_topic(const std::string& device_topic) {
    return std::string("gateways/") + k_gateway_id + "/" + device_topic;
}

// Payloads that carry their own identity, so order and loss can be checked at the cloud:
// "<device>:<n>" padded with '.' to at least `min_size` bytes.
inline std::string numbered_payload(const std::string& device, std::uint64_t n,
                                    std::size_t min_size = 0) {
    std::string p = device + ":" + std::to_string(n);
    if (p.size() < min_size) {
        p.append(min_size - p.size(), '.');
    }
    return p;
}

// Inverse of numbered_payload: {device, n}, or nullopt for a payload of another shape.
inline std::optional<std::pair<std::string, std::uint64_t>> parse_numbered(
    const std::string& payload) {
    const auto colon = payload.find(':');
    if (colon == std::string::npos) {
        return std::nullopt;
    }
    std::uint64_t n = 0;
    std::size_t i = colon + 1;
    if (i >= payload.size() || payload[i] < '0' || payload[i] > '9') {
        return std::nullopt;
    }
    for (; i < payload.size() && payload[i] >= '0' && payload[i] <= '9'; ++i) {
        n = n * 10 + static_cast<std::uint64_t>(payload[i] - '0');
    }
    return std::make_pair(payload.substr(0, colon), n);
}

// Delivery bookkeeping over what a cloud subscriber saw, keyed by payload identity.
struct delivery_report {
    std::size_t total = 0;             // data messages received (duplicates included)
    std::size_t unique = 0;            // distinct payload identities
    std::size_t duplicates = 0;        // total - unique
    std::vector<std::string> missing;  // expected identities never seen
};

inline delivery_report check_delivery(const std::vector<received_message>& msgs,
                                      const std::set<std::string>& expected_payload_ids) {
    delivery_report r;
    std::set<std::string> seen;
    for (const auto& m : msgs) {
        const auto id = parse_numbered(m.payload);
        if (!id) {
            continue;
        }
        ++r.total;
        seen.insert(id->first + ":" + std::to_string(id->second));
    }
    r.unique = seen.size();
    r.duplicates = r.total - r.unique;
    for (const auto& e : expected_payload_ids) {
        if (!seen.count(e)) {
            r.missing.push_back(e);
        }
    }
    return r;
}

class gateway_test : public ::testing::Test {
protected:
    void TearDown() override {
        if (HasFailure()) {
            dump_logs();
        }
    }

    // Creates (but does not start) the brokers, so their addresses are known.
    void make_brokers(mosquitto_options local_options = {}, mosquitto_options cloud_options = {}) {
        local_options.name = "local";
        cloud_options.name = "cloud";
        local_ = std::make_unique<mosquitto_process>(local_options);
        cloud_ = std::make_unique<mosquitto_process>(cloud_options);
    }

    void start_brokers() {
        if (!local_) {
            make_brokers();
        }
        local_->start();
        cloud_->start();
    }

    // The config most tests run with: everything on devices/+/telemetry/# goes to sink "cloud"
    // at QoS 1, MQTT 5; short keepalives and backoff so reconnects happen within test time.
    json base_config() const {
        json sink = {
            {"type", "mqtt"},
            {"uri", cloud_->uri()},
            {"client_id", "egw-it-uplink"},
            {"topic", "gateways/{gateway_id}/{topic}"},
            {"qos", 1},
            {"mqtt_version", 5},
            {"inflight", 64},
            {"batch", 256},
            {"keepalive_s", 5},
            {"backoff", {{"initial_ms", 100}, {"max_ms", 1000}}},
        };
        return {
            {"gateway_id", k_gateway_id},
            {"data_dir", (tmp_ / "data").string()},
            {"log_level", "info"},
            {"status_interval_ms", 500},
            {"local",
             {
                 {"uri", local_->uri()},
                 {"client_id", "egw-it-local"},
                 {"keepalive_s", 5},
                 {"clean_session", false},
                 {"max_payload_bytes", 1048576},
                 {"subscribe", json::array({{{"filter", k_telemetry_filter}, {"qos", 1}}})},
             }},
            {"routes", json::array({{{"from", k_telemetry_filter}, {"to", {"cloud"}}}})},
            {"sinks", {{"cloud", sink}}},
            {"buffer",
             {{"max_bytes", 64 * 1024 * 1024},
              {"when_full", "drop-oldest"},
              {"synchronous", "normal"}}},
        };
    }

    // Creates the gateway with `config`, starts it and waits for `info gateway: ready`.
    gateway_process& start_gateway(const json& config) {
        gateway_ = std::make_unique<gateway_process>(tmp_.path(), config);
        if (!gateway_->start_and_wait_ready()) {
            // Abort the test at once (gtest reports the exception) rather than waiting out
            // every later deadline against a gateway that is not there.
            throw std::runtime_error("gateway did not log 'info gateway: ready'");
        }
        // Devices publish right after this returns; on a fresh local broker (no session yet)
        // anything published before the gateway's subscription exists would simply be lost.
        if (local_ && local_->running() &&
            !gateway_->wait_until(
                [](const json& s) { return json_at(s, "local/subscribed") == true; }, 10s)) {
            throw std::runtime_error("gateway did not subscribe on the local broker");
        }
        return *gateway_;
    }

    gateway_process& start_gateway() { return start_gateway(base_config()); }

    // A cloud-side consumer on `filters` (default: everything under gateways/).
    test_subscriber& connect_cloud_subscriber(std::vector<std::string> filters = {"gateways/#"},
                                              subscriber_options options = {}) {
        cloud_sub_ = std::make_unique<test_subscriber>(
            cloud_->uri(), "egw-it-cloud-sub-" + std::to_string(++client_counter_), options);
        cloud_sub_->connect(std::move(filters));
        return *cloud_sub_;
    }

    test_publisher& connect_device(int window = 64) {
        device_ = std::make_unique<test_publisher>(
            local_->uri(), "egw-it-device-" + std::to_string(++client_counter_), window);
        device_->connect();
        return *device_;
    }

    // Waits for a sink state in `status`; returns the status seen, or nullopt.
    std::optional<json> wait_sink_state(const std::string& state, std::chrono::milliseconds timeout,
                                        const std::string& sink = "cloud") {
        return gateway_->wait_until(
            [&](const json& s) { return json_at(s, "sinks/" + sink + "/state") == state; },
            timeout);
    }

    // Messages at the cloud whose topic is under gateways/{id}/devices/ (data, not status).
    std::vector<received_message> data_messages() const {
        std::vector<received_message> out;
        const std::string prefix = std::string("gateways/") + k_gateway_id + "/devices/";
        for (auto& m : cloud_sub_->messages()) {
            if (m.topic.rfind(prefix, 0) == 0) {
                out.push_back(std::move(m));
            }
        }
        return out;
    }

    bool wait_for_data_count(std::size_t n, std::chrono::milliseconds timeout) const {
        return poll_until([&] { return data_messages().size() >= n; }, timeout, 20ms);
    }

    // Waits until `expected` payload identities have all arrived at least once.
    bool wait_for_unique(const std::set<std::string>& expected,
                         std::chrono::milliseconds timeout) const {
        return poll_until([&] { return check_delivery(data_messages(), expected).missing.empty(); },
                          timeout, 50ms);
    }

    void dump_logs() const {
        if (gateway_) {
            if (const auto code = gateway_->exit_code()) {
                std::cerr << "----- gateway is NOT running: exit code " << *code
                          << (*code > 128 ? " (killed by a signal: 128 + signo)" : "") << "\n";
            }
            std::cerr << "----- gateway log (tail) " << gateway_->log_file().string() << "\n"
                      << tail_file(gateway_->log_file(), 40) << "\n"
                      << "----- last status: " << gateway_->last_status() << "\n";
        }
        for (const auto* b : {local_.get(), cloud_.get(), extra_broker_.get()}) {
            if (b) {
                std::cerr << "----- " << b->name() << " log (tail)\n"
                          << tail_file(b->log_file(), 15) << "\n";
            }
        }
    }

    // Declaration order = reverse destruction order: clients go first, then the gateway, then
    // the brokers, and the temp dir last.
    temp_dir tmp_{"egw-it"};
    std::unique_ptr<mosquitto_process> local_;
    std::unique_ptr<mosquitto_process> cloud_;
    std::unique_ptr<mosquitto_process> extra_broker_;
    std::unique_ptr<gateway_process> gateway_;
    std::unique_ptr<test_subscriber> cloud_sub_;
    std::unique_ptr<test_publisher> device_;
    int client_counter_ = 0;
};

}  // namespace egw::test
