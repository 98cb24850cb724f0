// SPDX-License-Identifier: Apache-2.0
//
// Payload edge cases: empty, every byte value, large; oversized payloads are dropped, counted,
// and do not stop the flow.

#include <gtest/gtest.h>

#include "integration/gateway_test_fixture.h"

namespace egw::test {
namespace {

class payload_test : public gateway_test {
protected:
    void SetUp() override {
        start_brokers();
        json cfg = base_config();
        cfg["local"]["max_payload_bytes"] = k_max_payload;
        start_gateway(cfg);
        connect_cloud_subscriber();
        connect_device();
    }

    // Publishes one payload on its own topic and returns what the cloud got there.
    std::optional<received_message> round_trip(const std::string& stream,
                                               const std::string& payload) {
        const std::string topic = "devices/dp/telemetry/" + stream;
        device_->publish(topic, payload);
        device_->flush();
        return cloud_sub_->wait_for(
            [&](const received_message& m) { return m.topic == cloud_topic(topic); }, 15s);
    }

    static constexpr int k_max_payload = 512 * 1024;
};

TEST_F(payload_test, EmptyPayloadArrivesEmpty) {
    const auto m = round_trip("empty", "");
    ASSERT_TRUE(m) << "empty payload never arrived";
    EXPECT_EQ(m->payload.size(), 0u);
}

TEST_F(payload_test, AllByteValuesArriveIdentical) {
    std::string payload;
    for (int rep = 0; rep < 2; ++rep) {
        for (int b = 0; b < 256; ++b) {
            payload.push_back(static_cast<char>(b));
        }
    }
    const auto m = round_trip("binary", payload);
    ASSERT_TRUE(m) << "binary payload never arrived";
    ASSERT_EQ(m->payload.size(), payload.size());
    EXPECT_TRUE(m->payload == payload) << "binary payload altered in transit";
}

TEST_F(payload_test, Payload256KiBArrivesIdentical) {
    std::string payload(256 * 1024, '\0');
    std::uint32_t x = 2463534242u;  // xorshift32: incompressible-looking, reproducible bytes
    for (auto& c : payload) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        c = static_cast<char>(x & 0xff);
    }
    const auto m = round_trip("large", payload);
    ASSERT_TRUE(m) << "256 KiB payload never arrived";
    ASSERT_EQ(m->payload.size(), payload.size());
    EXPECT_TRUE(m->payload == payload) << "256 KiB payload altered in transit";
}

TEST_F(payload_test, OversizedPayloadIsDroppedCountedAndFlowContinues) {
    const std::string at_limit(k_max_payload, 'a');
    const std::string over_limit(k_max_payload + 1, 'b');
    device_->publish("devices/dp/telemetry/at-limit", at_limit);
    device_->publish("devices/dp/telemetry/over-limit", over_limit);
    for (int i = 0; i < 10; ++i) {
        device_->publish("devices/dp/telemetry/after", numbered_payload("dp", i));
    }
    device_->flush();

    ASSERT_TRUE(cloud_sub_->wait_for(
        [](const received_message& m) { return m.payload == numbered_payload("dp", 9); }, 15s))
        << "messages after the oversized one did not flow";
    const auto st = gateway_->wait_until(
        [](const json& s) { return json_at(s, "counters/dropped/too_large") == 1; }, 5s);
    EXPECT_TRUE(st) << "counters.dropped.too_large != 1; status " << gateway_->last_status();

    std::size_t after = 0;
    bool saw_at_limit = false;
    for (const auto& m : data_messages()) {
        EXPECT_NE(m.topic, cloud_topic("devices/dp/telemetry/over-limit"))
            << "oversized payload was forwarded";
        if (m.topic == cloud_topic("devices/dp/telemetry/at-limit")) {
            saw_at_limit = m.payload == at_limit;
        }
        after += m.topic == cloud_topic("devices/dp/telemetry/after");
    }
    EXPECT_TRUE(saw_at_limit) << "a payload of exactly max_payload_bytes must pass";
    EXPECT_EQ(after, 10u);
}

}  // namespace
}  // namespace egw::test
