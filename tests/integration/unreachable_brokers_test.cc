// SPDX-License-Identifier: Apache-2.0
//
// Brokers unreachable at start: the gateway starts anyway, says it is offline, keeps retrying,
// and forwards once the brokers appear.

#include <gtest/gtest.h>

#include <set>

#include "integration/gateway_test_fixture.h"

namespace egw::test {
namespace {

class unreachable_brokers_test : public gateway_test {};

TEST_F(unreachable_brokers_test, StartsWithBrokersDownAndDeliversOnceTheyAppear) {
    make_brokers();  // ports chosen, nothing listening yet
    auto& gw = start_gateway();
    ASSERT_TRUE(gw.running());

    const auto down = gw.wait_until(
        [](const json& s) {
            return json_at(s, "local/connected") == false &&
                   json_at(s, "sinks/cloud/state") == "offline" &&
                   json_at(s, "sinks/cloud/connected") == false;
        },
        10s);
    ASSERT_TRUE(down) << "expected local disconnected and sink offline; " << gw.last_status();

    // Several reconnect attempts fail meanwhile (backoff 100..1000 ms): the gateway must stay up.
    ASSERT_TRUE(gw.wait_until(
        [](const json& s) {
            const auto up = json_at(s, "uptime_s");
            return up.is_number() && up.get<double>() >= 3.0;
        },
        10s))
        << gw.last_status();
    ASSERT_TRUE(gw.running()) << "gateway exited while brokers were down:\n"
                              << tail_file(gw.log_file(), 20);

    cloud_->start();
    connect_cloud_subscriber();
    local_->start();
    ASSERT_TRUE(gw.wait_until(
        [](const json& s) {
            return json_at(s, "local/connected") == true &&
                   json_at(s, "local/subscribed") == true &&
                   json_at(s, "sinks/cloud/connected") == true;
        },
        20s))
        << "gateway did not connect once brokers appeared; " << gw.last_status();

    auto& dev = connect_device();
    std::set<std::string> expected;
    for (int i = 0; i < 20; ++i) {
        dev.publish("devices/u1/telemetry/x", numbered_payload("u1", i));
        expected.insert("u1:" + std::to_string(i));
    }
    dev.flush();
    EXPECT_TRUE(wait_for_unique(expected, 15s))
        << "missing " << check_delivery(data_messages(), expected).missing.size();
}

TEST_F(unreachable_brokers_test, CloudDownAtStartBuffersThenDelivers) {
    make_brokers();
    local_->start();
    cloud_->start();
    connect_cloud_subscriber();  // registers the persistent session
    cloud_->stop();

    auto& gw = start_gateway();
    ASSERT_TRUE(wait_sink_state("offline", 10s)) << gw.last_status();
    auto& dev = connect_device();
    std::set<std::string> expected;
    for (int i = 0; i < 100; ++i) {
        dev.publish("devices/u2/telemetry/x", numbered_payload("u2", i));
        expected.insert("u2:" + std::to_string(i));
    }
    dev.flush();
    ASSERT_TRUE(gw.wait_until([](const json& s) { return json_int(s, "buffer/rows") == 100; }, 10s))
        << gw.last_status();

    cloud_->start();
    EXPECT_TRUE(wait_for_unique(expected, 30s))
        << "missing " << check_delivery(data_messages(), expected).missing.size();
    EXPECT_TRUE(wait_sink_state("online", 15s)) << gw.last_status();
}

}  // namespace
}  // namespace egw::test
