// SPDX-License-Identifier: Apache-2.0
//
// Forwarding: what a device publishes locally reaches the cloud byte for byte, under the
// templated topic, with the MQTT 5 identity properties; 3.1.1 sinks work too.

#include <gtest/gtest.h>

#include <iostream>
#include <map>

#include "integration/gateway_test_fixture.h"

namespace egw::test {
namespace {

class forwarding_test : public gateway_test {};

TEST_F(forwarding_test, ForwardsPayloadByteExactToTemplatedTopic) {
    start_brokers();
    start_gateway();
    auto& cloud = connect_cloud_subscriber();
    auto& dev = connect_device();

    dev.publish("devices/d1/telemetry/temp", R"({"t":21.5})");
    dev.publish("devices/d2/telemetry/a/b/c", "x y\tz\n");
    dev.flush();

    ASSERT_TRUE(wait_for_data_count(2, 10s)) << "got " << cloud.count();
    const auto msgs = data_messages();
    ASSERT_EQ(msgs.size(), 2u);
    EXPECT_EQ(msgs[0].topic, "gateways/gw-it/devices/d1/telemetry/temp");
    EXPECT_EQ(msgs[0].payload, R"({"t":21.5})");
    EXPECT_EQ(msgs[0].qos, 1);
    EXPECT_FALSE(msgs[0].retained);
    EXPECT_EQ(msgs[1].topic, "gateways/gw-it/devices/d2/telemetry/a/b/c");
    EXPECT_EQ(msgs[1].payload, "x y\tz\n");
}

TEST_F(forwarding_test, Mqtt5UserPropertiesCarryGatewayIdAndStrictlyIncreasingSeq) {
    start_brokers();
    start_gateway();
    connect_cloud_subscriber();
    auto& dev = connect_device();

    constexpr int k_count = 200;
    for (int i = 0; i < k_count; ++i) {
        dev.publish("devices/d1/telemetry/seq", numbered_payload("d1", i));
    }
    dev.flush();
    ASSERT_TRUE(wait_for_data_count(k_count, 20s)) << "got " << data_messages().size();

    std::optional<std::uint64_t> prev;
    for (const auto& m : data_messages()) {
        ASSERT_TRUE(m.egw_gateway.has_value()) << "no egw-gateway on " << m.payload;
        EXPECT_EQ(*m.egw_gateway, k_gateway_id);
        const auto seq = parse_seq(m.egw_seq);
        ASSERT_TRUE(seq.has_value())
            << "egw-seq missing or not decimal: " << m.egw_seq.value_or("<absent>");
        if (prev) {
            EXPECT_GT(*seq, *prev) << "seq not strictly increasing at " << m.payload;
        }
        prev = seq;
    }
}

TEST_F(forwarding_test, Mqtt311SinkForwardsWithoutUserProperties) {
    start_brokers();
    json cfg = base_config();
    cfg["sinks"]["cloud"]["mqtt_version"] = 3;
    start_gateway(cfg);
    connect_cloud_subscriber();
    auto& dev = connect_device();

    for (int i = 0; i < 20; ++i) {
        dev.publish("devices/d3/telemetry/v311", numbered_payload("d3", i));
    }
    dev.flush();
    ASSERT_TRUE(wait_for_data_count(20, 10s)) << "got " << data_messages().size();
    const auto msgs = data_messages();
    for (std::size_t i = 0; i < msgs.size(); ++i) {
        EXPECT_EQ(msgs[i].topic, "gateways/gw-it/devices/d3/telemetry/v311");
        EXPECT_EQ(msgs[i].payload, numbered_payload("d3", i));
        EXPECT_EQ(msgs[i].user_property_count, 0u) << "3.1.1 cannot carry user properties";
    }
}

TEST_F(forwarding_test, TopicTemplateSeqPlaceholderMatchesSeqProperty) {
    start_brokers();
    json cfg = base_config();
    cfg["sinks"]["cloud"]["topic"] = "site/{gateway_id}/n/{seq}/{topic}";
    start_gateway(cfg);
    auto& cloud = connect_cloud_subscriber({"site/#"});
    auto& dev = connect_device();

    for (int i = 0; i < 5; ++i) {
        dev.publish("devices/d4/telemetry/s", numbered_payload("d4", i));
    }
    dev.flush();
    ASSERT_TRUE(cloud.wait_for_count(5, 10s)) << "got " << cloud.count();
    for (const auto& m : cloud.messages()) {
        ASSERT_TRUE(m.egw_seq.has_value());
        EXPECT_EQ(m.topic, "site/gw-it/n/" + *m.egw_seq + "/devices/d4/telemetry/s");
    }
}

TEST_F(forwarding_test, MessageMatchingNoRouteIsCountedAndNotForwarded) {
    start_brokers();
    json cfg = base_config();
    // Subscribe to more than the route covers: devices/+/other/# matches no route.
    cfg["local"]["subscribe"] = json::array({{{"filter", "devices/#"}, {"qos", 1}}});
    start_gateway(cfg);
    connect_cloud_subscriber();
    auto& dev = connect_device();

    dev.publish("devices/d5/other/x", numbered_payload("d5", 0));
    dev.publish("devices/d5/telemetry/after", numbered_payload("d5", 1));
    dev.flush();
    ASSERT_TRUE(wait_for_data_count(1, 10s));
    const auto st = gateway_->wait_until(
        [](const json& s) { return json_at(s, "counters/dropped/no_route") == 1; }, 5s);
    EXPECT_TRUE(st) << "counters.dropped.no_route != 1; status " << gateway_->last_status();
    const auto msgs = data_messages();
    ASSERT_EQ(msgs.size(), 1u);
    EXPECT_EQ(msgs[0].topic, "gateways/gw-it/devices/d5/telemetry/after");
}

TEST_F(forwarding_test, SeqKeepsIncreasingAcrossRestart) {
    start_brokers();
    auto& gw = start_gateway();
    connect_cloud_subscriber();
    auto& dev = connect_device();

    for (int i = 0; i < 10; ++i) {
        dev.publish("devices/d6/telemetry/r", numbered_payload("d6", i));
    }
    dev.flush();
    ASSERT_TRUE(wait_for_data_count(10, 10s));
    ASSERT_EQ(gw.terminate().exit_code, 0);
    ASSERT_TRUE(gw.start_and_wait_ready());
    for (int i = 10; i < 20; ++i) {
        dev.publish("devices/d6/telemetry/r", numbered_payload("d6", i));
    }
    dev.flush();
    ASSERT_TRUE(wait_for_data_count(20, 10s)) << "got " << data_messages().size();

    // A graceful stop may leave sent-but-unacked rows, which are sent again after the restart
    // with their original seq (at least once): judge order and uniqueness by first arrival.
    std::map<std::string, std::uint64_t> seq_of_payload;
    std::map<std::uint64_t, std::string> payload_of_seq;
    std::optional<std::uint64_t> prev;
    std::size_t duplicates = 0;
    for (const auto& m : data_messages()) {
        const auto seq = parse_seq(m.egw_seq);
        ASSERT_TRUE(seq);
        const auto [it, first] = seq_of_payload.try_emplace(m.payload, *seq);
        if (!first) {
            ++duplicates;
            EXPECT_EQ(it->second, *seq) << "a resent message must keep its seq: " << m.payload;
            continue;
        }
        const auto [pit, fresh] = payload_of_seq.try_emplace(*seq, m.payload);
        EXPECT_TRUE(fresh) << "seq " << *seq << " reused for " << m.payload << " and "
                           << pit->second;
        if (prev) {
            EXPECT_GT(*seq, *prev) << "seq went backwards after restart at " << m.payload;
        }
        prev = seq;
    }
    std::cout << "[ info ] duplicates after graceful restart: " << duplicates << "\n";
}

}  // namespace
}  // namespace egw::test
