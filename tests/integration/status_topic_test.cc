// SPDX-License-Identifier: Apache-2.0
//
// The gateway's retained status topic at the cloud: online while running (republished), offline
// via the last will after kill -9, offline published by the gateway itself on graceful stop.

#include <gtest/gtest.h>

#include "integration/gateway_test_fixture.h"

namespace egw::test {
namespace {

const std::string k_status_topic = std::string("gateways/") + k_gateway_id + "/status";

bool is_status(const received_message& m, const std::string& state) {
    if (m.topic != k_status_topic) {
        return false;
    }
    const auto j = json::parse(m.payload, nullptr, false);
    return !j.is_discarded() && j.is_object() && j.value("gateway_id", "") == k_gateway_id &&
           j.value("state", "") == state;
}

class status_topic_test : public gateway_test {
protected:
    // A fresh subscriber is handed the retained message on subscribing. The first status may
    // be stored a little after the sink reports online, so probe with new connections until
    // the retained message is there.
    std::optional<received_message> retained_status(const std::string& state) {
        std::optional<received_message> hit;
        poll_until(
            [&] {
                test_subscriber probe(cloud_->uri(),
                                      "egw-it-status-probe-" + std::to_string(++probes_),
                                      subscriber_options{5, false, 10});
                probe.connect({k_status_topic});
                hit = probe.wait_for(
                    [&](const received_message& m) { return m.retained && is_status(m, state); },
                    1s);
                return hit.has_value();
            },
            10s, 100ms);
        return hit;
    }

    int probes_ = 0;
};

TEST_F(status_topic_test, RetainedOnlineStatusIsPublishedAndRepublished) {
    start_brokers();
    json cfg = base_config();
    cfg["status_interval_ms"] = 300;
    start_gateway(cfg);
    ASSERT_TRUE(wait_sink_state("online", 10s)) << gateway_->last_status();

    const auto retained = retained_status("online");
    ASSERT_TRUE(retained) << "no retained online status on " << k_status_topic;
    std::cout << "[ info ] status payload: " << retained->payload << "\n";

    // Republished every status_interval_ms: a live subscriber sees several.
    auto& live = connect_cloud_subscriber({k_status_topic}, subscriber_options{5, false, 10});
    EXPECT_TRUE(poll_until(
        [&] {
            int online = 0;
            for (const auto& m : live.messages()) {
                online += is_status(m, "online");
            }
            return online >= 3;
        },
        5s))
        << "status not republished every status_interval_ms";
}

TEST_F(status_topic_test, LastWillOfflineIsRetainedAfterKill9) {
    start_brokers();
    json cfg = base_config();
    cfg["sinks"]["cloud"]["keepalive_s"] = 2;
    start_gateway(cfg);
    ASSERT_TRUE(wait_sink_state("online", 10s)) << gateway_->last_status();
    auto& live = connect_cloud_subscriber({k_status_topic}, subscriber_options{5, false, 10});
    ASSERT_TRUE(live.wait_for([](const auto& m) { return is_status(m, "online"); }, 5s));

    gateway_->kill9();
    // The broker publishes the will once the TCP connection drops (at once on kill) or at the
    // latest after 1.5 x keepalive.
    const auto will = live.wait_for([](const auto& m) { return is_status(m, "offline"); }, 10s);
    ASSERT_TRUE(will) << "no last will after kill -9";
    EXPECT_TRUE(retained_status("offline")) << "the last will must be retained";
}

TEST_F(status_topic_test, GracefulStopPublishesRetainedOffline) {
    start_brokers();
    start_gateway();
    ASSERT_TRUE(wait_sink_state("online", 10s)) << gateway_->last_status();
    auto& live = connect_cloud_subscriber({k_status_topic}, subscriber_options{5, false, 10});
    ASSERT_TRUE(live.wait_for([](const auto& m) { return is_status(m, "online"); }, 5s));

    ASSERT_EQ(gateway_->terminate().exit_code, 0);
    EXPECT_TRUE(live.wait_for([](const auto& m) { return is_status(m, "offline"); }, 5s))
        << "no offline status on graceful stop";
    EXPECT_TRUE(retained_status("offline"));
}

TEST_F(status_topic_test, StatusCliReportsShape) {
    start_brokers();
    auto& gw = start_gateway();
    ASSERT_TRUE(wait_sink_state("online", 10s)) << gw.last_status();
    const auto s = gw.status_json();
    ASSERT_TRUE(s);
    EXPECT_EQ(json_at(*s, "gateway_id"), k_gateway_id);
    for (const char* path : {"version",
                             "uptime_s",
                             "local/connected",
                             "local/subscribed",
                             "counters/received",
                             "counters/buffered",
                             "counters/sent",
                             "counters/acked",
                             "counters/dropped/no_route",
                             "counters/dropped/too_large",
                             "counters/dropped/buffer_full",
                             "counters/dropped/disk_full",
                             "counters/errors/buffer",
                             "counters/errors/publish",
                             "buffer/rows",
                             "buffer/bytes",
                             "buffer/max_bytes",
                             "buffer/when_full",
                             "buffer/degraded",
                             "sinks/cloud/state",
                             "sinks/cloud/connected",
                             "sinks/cloud/rows_waiting",
                             "sinks/cloud/bytes_waiting",
                             "sinks/cloud/oldest_age_s",
                             "sinks/cloud/eta_s",
                             "sinks/cloud/sent",
                             "sinks/cloud/acked",
                             "sinks/cloud/rate_msg_s",
                             "sinks/cloud/inflight",
                             "sinks/cloud/reconnects",
                             "sinks/cloud/last_error"}) {
        EXPECT_FALSE(json_at(*s, path).is_null()) << "status lacks " << path << ": " << s->dump();
    }
    EXPECT_EQ(json_at(*s, "buffer/max_bytes"), 64 * 1024 * 1024);
    EXPECT_EQ(json_at(*s, "buffer/when_full"), "drop-oldest");

    // The human table works too.
    const auto table =
        run_gateway_cli({"status", "--config", gw.config_file().string()}, tmp_.path(), 5s);
    EXPECT_EQ(table.exit_code, 0) << table.err;
    EXPECT_NE(table.out.find(k_gateway_id), std::string::npos) << table.out;
    // --socket PATH reaches the same gateway.
    const auto by_socket =
        run_gateway_cli({"status", "--socket", (gw.data_dir() / "control.sock").string(), "--json"},
                        tmp_.path(), 5s);
    EXPECT_EQ(by_socket.exit_code, 0) << by_socket.err;
}

}  // namespace
}  // namespace egw::test
