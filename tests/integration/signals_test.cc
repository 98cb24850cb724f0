// SPDX-License-Identifier: Apache-2.0
//
// Signals: SIGTERM stops gracefully (exit 0 within 5 s, buffer kept); SIGHUP reloads routes and
// sinks without losing buffered rows.

#include <gtest/gtest.h>

#include <set>

#include "integration/gateway_test_fixture.h"

namespace egw::test {
namespace {

constexpr auto k_graceful_limit = std::chrono::milliseconds(5000);

class signals_test : public gateway_test {
protected:
    std::set<std::string> publish_batch(const std::string& topic, const std::string& device,
                                        int from, int to) {
        std::set<std::string> ids;
        for (int i = from; i < to; ++i) {
            device_->publish(topic, numbered_payload(device, i));
            ids.insert(device + ":" + std::to_string(i));
        }
        device_->flush();
        return ids;
    }
};

TEST_F(signals_test, SigtermWhenIdleExits0Within5s) {
    start_brokers();
    auto& gw = start_gateway();
    ASSERT_TRUE(wait_sink_state("online", 10s)) << gw.last_status();
    const auto exit = gw.terminate(10s);
    ASSERT_TRUE(exit.exit_code) << "did not exit within 10 s of SIGTERM";
    EXPECT_EQ(*exit.exit_code, 0);
    EXPECT_LT(exit.elapsed, k_graceful_limit) << "took " << exit.elapsed.count() << " ms";
}

TEST_F(signals_test, SigtermWithBacklogAndCloudDownExits0Within5sAndKeepsRows) {
    start_brokers();
    connect_cloud_subscriber();
    cloud_->stop();
    auto& gw = start_gateway();
    connect_device();
    const auto expected = publish_batch("devices/s2/telemetry/x", "s2", 0, 1000);
    ASSERT_TRUE(
        gw.wait_until([](const json& s) { return json_int(s, "buffer/rows") == 1000; }, 15s))
        << gw.last_status();

    const auto exit = gw.terminate(10s);
    ASSERT_TRUE(exit.exit_code) << "did not exit within 10 s of SIGTERM";
    EXPECT_EQ(*exit.exit_code, 0);
    EXPECT_LT(exit.elapsed, k_graceful_limit) << "took " << exit.elapsed.count() << " ms";

    cloud_->start();
    ASSERT_TRUE(gw.start_and_wait_ready());
    EXPECT_TRUE(wait_for_unique(expected, 30s))
        << "missing " << check_delivery(data_messages(), expected).missing.size();
}

TEST_F(signals_test, SigtermDuringStreamExits0Within5s) {
    start_brokers();
    auto& gw = start_gateway();
    connect_cloud_subscriber();
    connect_device(64);
    for (int i = 0; i < 2000; ++i) {
        device_->publish("devices/s3/telemetry/x", numbered_payload("s3", i));
    }
    // No flush: stop while messages are still moving.
    const auto exit = gw.terminate(10s);
    ASSERT_TRUE(exit.exit_code) << "did not exit within 10 s of SIGTERM";
    EXPECT_EQ(*exit.exit_code, 0);
    EXPECT_LT(exit.elapsed, k_graceful_limit) << "took " << exit.elapsed.count() << " ms";
}

TEST_F(signals_test, SigintExits0) {
    start_brokers();
    auto& gw = start_gateway();
    ASSERT_TRUE(gw.signal(SIGINT));
    const auto code = gw.wait_for_exit(10s);
    ASSERT_TRUE(code) << "did not exit within 10 s of SIGINT";
    EXPECT_EQ(*code, 0);
}

// Buffered rows for sink "cloud" wait while its broker is down; a reload points the sink at
// another broker, and the rows go there.
TEST_F(signals_test, SighupWithChangedSinkUriDeliversBufferedRows) {
    start_brokers();
    mosquitto_options other;
    other.name = "cloud2";
    extra_broker_ = std::make_unique<mosquitto_process>(other);
    extra_broker_->start();
    cloud_->stop();

    auto& gw = start_gateway();
    ASSERT_TRUE(wait_sink_state("offline", 10s)) << gw.last_status();
    connect_device();
    const auto expected = publish_batch("devices/s4/telemetry/x", "s4", 0, 200);
    ASSERT_TRUE(gw.wait_until([](const json& s) { return json_int(s, "buffer/rows") == 200; }, 10s))
        << gw.last_status();

    test_subscriber cloud2_sub(extra_broker_->uri(), "egw-it-cloud2-sub");
    cloud2_sub.connect({"gateways/#"});
    json cfg = gw.config();
    cfg["sinks"]["cloud"]["uri"] = extra_broker_->uri();
    gw.set_config(cfg);
    ASSERT_TRUE(gw.reload());

    const bool all = poll_until(
        [&] { return check_delivery(cloud2_sub.messages(), expected).missing.empty(); }, 30s, 50ms);
    EXPECT_TRUE(all) << "after reload, missing "
                     << check_delivery(cloud2_sub.messages(), expected).missing.size();
    EXPECT_TRUE(gw.running());
    EXPECT_TRUE(wait_sink_state("online", 10s)) << gw.last_status();
    EXPECT_EQ(json_int(gw.status_json().value_or(json{}), "counters/dropped/buffer_full"), 0);
}

// A reload that widens a route: messages that matched no route before are forwarded after.
TEST_F(signals_test, SighupWithChangedRouteForwardsNewlyRoutedTopics) {
    start_brokers();
    json cfg = base_config();
    cfg["routes"][0]["from"] = "devices/+/telemetry/a";
    auto& gw = start_gateway(cfg);
    connect_cloud_subscriber();
    connect_device();

    publish_batch("devices/s5/telemetry/b", "s5b", 0, 5);
    const auto routed = publish_batch("devices/s5/telemetry/a", "s5a", 0, 5);
    ASSERT_TRUE(wait_for_unique(routed, 10s));
    ASSERT_TRUE(gw.wait_until(
        [](const json& s) { return json_int(s, "counters/dropped/no_route") == 5; }, 5s))
        << gw.last_status();

    cfg["routes"][0]["from"] = "devices/+/telemetry/#";
    gw.set_config(cfg);
    ASSERT_TRUE(gw.reload());

    // The reload is asynchronous: probe until the new route is live, then check a batch.
    int probe = 0;
    const bool live = poll_until(
        [&] {
            device_->publish("devices/s5/telemetry/probe", numbered_payload("probe", probe++));
            device_->flush();
            return cloud_sub_
                ->wait_for(
                    [](const received_message& m) {
                        return m.topic.find("/telemetry/probe") != std::string::npos;
                    },
                    200ms)
                .has_value();
        },
        15s, 10ms);
    ASSERT_TRUE(live) << "route change not applied after SIGHUP";
    const auto after = publish_batch("devices/s5/telemetry/b", "s5c", 0, 20);
    EXPECT_TRUE(wait_for_unique(after, 10s));
    EXPECT_TRUE(gw.running());
}

}  // namespace
}  // namespace egw::test
