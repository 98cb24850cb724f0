// SPDX-License-Identifier: Apache-2.0
//
// Cloud outage: while the cloud broker is down, thousands of messages from several devices wait
// in the buffer; when it returns they are all delivered, each device's messages in order, and
// the sink goes offline -> draining/online in status.

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "integration/gateway_test_fixture.h"

namespace egw::test {
namespace {

class cloud_outage_test : public gateway_test {};

// Order per device: the first arrival of each message must follow the previous one's.
std::size_t order_violations(const std::vector<received_message>& msgs) {
    std::map<std::string, std::int64_t> last;
    std::set<std::string> first_seen;
    std::size_t violations = 0;
    for (const auto& m : msgs) {
        const auto id = parse_numbered(m.payload);
        if (!id || id->first == "warm") {
            continue;
        }
        const std::string key = id->first + ":" + std::to_string(id->second);
        if (!first_seen.insert(key).second) {
            continue;  // a duplicate: order is judged by first arrival
        }
        auto [it, fresh] = last.try_emplace(id->first, -1);
        if (static_cast<std::int64_t>(id->second) <= it->second) {
            if (++violations <= 5) {
                ADD_FAILURE() << "order broken for " << id->first << ": " << id->second << " after "
                              << it->second;
            }
        }
        it->second = static_cast<std::int64_t>(id->second);
    }
    return violations;
}

TEST_F(cloud_outage_test, BacklogFromSeveralDevicesDeliveredCompleteAndInOrder) {
    constexpr int k_devices = 5;
    constexpr int k_per_device = 1000;  // 5,000 messages in total

    start_brokers();
    start_gateway();
    connect_cloud_subscriber();
    auto& dev = connect_device(128);

    // Warm-up: the path works before the outage.
    dev.publish("devices/warm/telemetry/x", numbered_payload("warm", 0));
    dev.flush();
    ASSERT_TRUE(wait_for_data_count(1, 10s));
    ASSERT_TRUE(wait_sink_state("online", 10s)) << gateway_->last_status();

    // The subscriber's persistent session is saved by the broker on SIGTERM, so everything
    // delivered after the restart is queued for it even before it reconnects.
    cloud_->stop();
    ASSERT_TRUE(wait_sink_state("offline", 15s))
        << "sink did not report offline; status " << gateway_->last_status();

    std::set<std::string> expected;
    for (int n = 0; n < k_per_device; ++n) {
        for (int d = 0; d < k_devices; ++d) {
            const std::string device = "d" + std::to_string(d);
            dev.publish("devices/" + device + "/telemetry/seq", numbered_payload(device, n));
            expected.insert(device + ":" + std::to_string(n));
        }
    }
    dev.flush(30s);
    const int total = k_devices * k_per_device;
    ASSERT_TRUE(gateway_->wait_until(
        [&](const json& s) { return json_at(s, "sinks/cloud/rows_waiting") == total; }, 30s))
        << "backlog not buffered; status " << gateway_->last_status();

    cloud_->start();

    // Watch the state while the backlog drains: it must leave offline (draining, or online if
    // the drain is faster than a status poll) and end online with nothing waiting.
    std::set<std::string> states;
    const bool drained = poll_until(
        [&] {
            const auto s = gateway_->status_json();
            if (!s) {
                return false;
            }
            const auto state = json_at(*s, "sinks/cloud/state");
            if (state.is_string()) {
                states.insert(state.get<std::string>());
            }
            return state == "online" && json_at(*s, "sinks/cloud/rows_waiting") == 0;
        },
        60s, 100ms);
    EXPECT_TRUE(drained) << "sink never got back online with an empty backlog; status "
                         << gateway_->last_status();
    std::string seen;
    for (const auto& s : states) {
        seen += s + " ";
    }
    std::cout << "[ info ] sink states seen after the cloud returned: " << seen << "\n";
    EXPECT_TRUE(states.count("draining") || states.count("online")) << seen;

    ASSERT_TRUE(wait_for_unique(expected, 60s))
        << "missing " << check_delivery(data_messages(), expected).missing.size() << " of "
        << total;

    const auto msgs = data_messages();
    const auto report = check_delivery(msgs, expected);
    std::cout << "[ info ] delivered " << report.total << " (" << report.duplicates
              << " duplicates)\n";
    EXPECT_TRUE(report.missing.empty());

    EXPECT_EQ(order_violations(msgs), 0u);
}

TEST_F(cloud_outage_test, LiveMessagesFlowAgainAfterShortOutage) {
    start_brokers();
    start_gateway();
    connect_cloud_subscriber();
    auto& dev = connect_device();

    cloud_->stop();
    ASSERT_TRUE(wait_sink_state("offline", 15s)) << gateway_->last_status();
    cloud_->start();
    ASSERT_TRUE(wait_sink_state("online", 15s)) << gateway_->last_status();

    std::set<std::string> expected;
    for (int i = 0; i < 50; ++i) {
        dev.publish("devices/live/telemetry/x", numbered_payload("live", i));
        expected.insert("live:" + std::to_string(i));
    }
    dev.flush();
    EXPECT_TRUE(wait_for_unique(expected, 15s))
        << "missing " << check_delivery(data_messages(), expected).missing.size();
    const auto st = gateway_->status_json();
    ASSERT_TRUE(st);
    EXPECT_GE(json_int(*st, "sinks/cloud/reconnects"), 1)
        << "reconnect not counted: " << st->dump();
}

// The cloud goes away and comes back twice while a device streams at full speed: rows committed
// while the sink is offline, connecting, draining and online must all arrive, in order. (While
// no sink is connected, committed rows are not handed to the loop at all; the switch back must
// not skip any.)
TEST_F(cloud_outage_test, StreamAcrossCloudRestartsLosesNothingAndKeepsOrder) {
    constexpr std::size_t k_count = 20000;
    start_brokers();
    start_gateway();
    connect_cloud_subscriber();
    auto& dev = connect_device(64);
    ASSERT_TRUE(wait_sink_state("online", 10s)) << gateway_->last_status();

    std::atomic<bool> publish_failed{false};
    std::string publish_error;
    std::jthread publisher([&] {
        try {
            for (std::size_t i = 0; i < k_count; ++i) {
                dev.publish("devices/s1/telemetry/x", numbered_payload("s1", i));
            }
            dev.flush(60s);
        } catch (const std::exception& e) {
            publish_error = e.what();
            publish_failed = true;
        }
    });
    const auto at = [&](std::size_t n) {
        return poll_until([&] { return dev.acked() >= n || publish_failed; }, 60s, 1ms);
    };
    ASSERT_TRUE(at(2000));
    cloud_->stop();
    ASSERT_TRUE(at(6000));
    cloud_->start();
    ASSERT_TRUE(at(11000));
    cloud_->stop();
    ASSERT_TRUE(at(14000));
    cloud_->start();
    publisher.join();
    ASSERT_FALSE(publish_failed) << publish_error;

    std::set<std::string> expected;
    for (std::size_t i = 0; i < k_count; ++i) expected.insert("s1:" + std::to_string(i));
    EXPECT_TRUE(wait_for_unique(expected, 60s))
        << "missing " << check_delivery(data_messages(), expected).missing.size() << "; status "
        << gateway_->last_status();
    const auto msgs = data_messages();
    const auto report = check_delivery(msgs, expected);
    std::cout << "[ info ] stream across 2 cloud restarts: delivered " << report.total << " ("
              << report.duplicates << " duplicates), lost " << report.missing.size() << "\n";
    EXPECT_EQ(order_violations(msgs), 0u);
}

}  // namespace
}  // namespace egw::test
