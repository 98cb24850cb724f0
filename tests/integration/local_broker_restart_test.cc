// SPDX-License-Identifier: Apache-2.0
//
// Local broker restarts: the gateway notices, reconnects, resubscribes and keeps forwarding.

#include <gtest/gtest.h>

#include <set>

#include "integration/gateway_test_fixture.h"

namespace egw::test {
namespace {

class local_broker_restart_test : public gateway_test {
protected:
    std::set<std::string> publish_batch(const std::string& device, int from, int to) {
        std::set<std::string> ids;
        for (int i = from; i < to; ++i) {
            device_->publish("devices/" + device + "/telemetry/x", numbered_payload(device, i));
            ids.insert(device + ":" + std::to_string(i));
        }
        device_->flush();
        return ids;
    }

    bool wait_local(bool connected, std::chrono::milliseconds timeout) {
        return gateway_
            ->wait_until(
                [&](const json& s) {
                    return json_at(s, "local/connected") == connected &&
                           (!connected || json_at(s, "local/subscribed") == true);
                },
                timeout)
            .has_value();
    }
};

// The broker loses every session (killed, no persistence): only a real resubscription brings
// messages back.
TEST_F(local_broker_restart_test, ResubscribesAfterLocalBrokerLostItsSessions) {
    mosquitto_options local_opts;
    local_opts.persistence = false;
    make_brokers(local_opts, {});
    start_brokers();
    start_gateway();
    connect_cloud_subscriber();
    connect_device();

    auto expected = publish_batch("lr1", 0, 10);
    ASSERT_TRUE(wait_for_unique(expected, 10s));

    device_.reset();
    local_->kill();
    ASSERT_TRUE(wait_local(false, 15s))
        << "local.connected stayed true; " << gateway_->last_status();
    local_->start();
    ASSERT_TRUE(wait_local(true, 20s))
        << "gateway did not reconnect+resubscribe; " << gateway_->last_status();
    connect_device();
    auto more = publish_batch("lr1", 10, 30);
    expected.insert(more.begin(), more.end());
    EXPECT_TRUE(wait_for_unique(expected, 15s))
        << "missing " << check_delivery(data_messages(), expected).missing.size();
}

// The broker restarts with its persistence file: the gateway's persistent session survives, so
// messages published right after the restart, before the gateway is back, are still delivered.
TEST_F(local_broker_restart_test, PersistentSessionKeepsMessagesPublishedBeforeReconnect) {
    start_brokers();
    start_gateway();
    connect_cloud_subscriber();
    connect_device();

    auto expected = publish_batch("lr2", 0, 10);
    ASSERT_TRUE(wait_for_unique(expected, 10s));

    device_.reset();
    local_->stop();
    ASSERT_TRUE(wait_local(false, 15s)) << gateway_->last_status();
    local_->start();
    connect_device();
    auto more = publish_batch("lr2", 10, 60);
    expected.insert(more.begin(), more.end());

    EXPECT_TRUE(wait_for_unique(expected, 20s))
        << "missing " << check_delivery(data_messages(), expected).missing.size();
    EXPECT_TRUE(wait_local(true, 10s)) << gateway_->last_status();
}

}  // namespace
}  // namespace egw::test
