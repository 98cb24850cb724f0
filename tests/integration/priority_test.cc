// SPDX-License-Identifier: Apache-2.0
//
// Priority (issue 7, docs/plugins.md "Priority"): rows of a `priority: "high"` route drain
// before the ordinary backlog of the same mqtt sink after an outage, order is kept within each
// priority, and nothing is lost. Real daemon, real brokers; the order is the arrival order at a
// cloud subscriber whose persistent session queues everything published while it reconnects.

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "integration/gateway_test_fixture.h"

namespace egw::test {
namespace {

class priority_test : public gateway_test {
protected:
    // Ingests `n_normal` ordinary and `n_high` high rows interleaved (one high after every
    // `n_normal / n_high` ordinary ones) while the cloud is down, brings the cloud back and
    // checks the arrival order. `normal_topic`/`high_topic` are device topics.
    void run_outage(const json& config, const std::string& normal_topic,
                    const std::string& high_topic, int n_normal, int n_high) {
        start_brokers();
        start_gateway(config);
        connect_cloud_subscriber();
        auto& dev = connect_device(128);

        dev.publish(normal_topic, numbered_payload("warm", 0));
        dev.flush();
        ASSERT_TRUE(wait_for_data_count(1, 10s));
        ASSERT_TRUE(wait_sink_state("online", 10s)) << gateway_->last_status();
        ASSERT_TRUE(wait_sink_state("online", 10s, "cloud!high")) << gateway_->last_status();

        cloud_->stop();
        ASSERT_TRUE(wait_sink_state("offline", 15s)) << gateway_->last_status();

        std::set<std::string> expected;
        const int every = n_normal / n_high;
        int h = 0;
        for (int i = 0; i < n_normal; ++i) {
            dev.publish(normal_topic, numbered_payload("n", i));
            expected.insert("n:" + std::to_string(i));
            if ((i + 1) % every == 0 && h < n_high) {
                dev.publish(high_topic, numbered_payload("h", h));
                expected.insert("h:" + std::to_string(h));
                ++h;
            }
        }
        ASSERT_EQ(h, n_high);
        dev.flush(30s);
        ASSERT_TRUE(gateway_->wait_until(
            [&](const json& s) {
                return json_at(s, "sinks/cloud/rows_waiting") == n_normal &&
                       json_at(s, "sinks/cloud!high/rows_waiting") == n_high;
            },
            30s))
            << "backlog not buffered as expected; status " << gateway_->last_status();

        cloud_->start();
        ASSERT_TRUE(wait_for_unique(expected, 60s))
            << "missing " << check_delivery(data_messages(), expected).missing.size() << " of "
            << expected.size() << "; status " << gateway_->last_status();

        // First arrivals only (a resend after a reconnect is allowed by at-least-once).
        std::set<std::string> seen;
        std::map<std::string, long> last{{"n", -1}, {"h", -1}};
        size_t pos = 0, first_normal = SIZE_MAX, last_high = 0, order_breaks = 0;
        for (const auto& m : data_messages()) {
            const auto id = parse_numbered(m.payload);
            if (!id || id->first == "warm") continue;
            if (!seen.insert(id->first + ":" + std::to_string(id->second)).second) continue;
            if (id->first == "n" && first_normal == SIZE_MAX) first_normal = pos;
            if (id->first == "h") last_high = pos;
            if (static_cast<long>(id->second) <= last[id->first]) ++order_breaks;
            last[id->first] = static_cast<long>(id->second);
            ++pos;
        }
        std::cout << "[ info ] " << pos << " first arrivals: last high at " << last_high
                  << ", first ordinary at " << first_normal << "\n";
        EXPECT_EQ(pos, expected.size());
        EXPECT_LT(last_high, first_normal) << "a high row arrived after the ordinary backlog began";
        EXPECT_EQ(order_breaks, 0u);
        EXPECT_TRUE(gateway_->wait_until(
            [](const json& s) {
                return json_at(s, "sinks/cloud/rows_waiting") == 0 &&
                       json_at(s, "sinks/cloud!high/rows_waiting") == 0;
            },
            30s));
    }
};

TEST_F(priority_test, HighRouteDrainsBeforeOrdinaryBacklog) {
    make_brokers();
    json c = base_config();
    c["routes"] = json::array({
        {{"from", "devices/+/telemetry/normal"}, {"to", {"cloud"}}},
        {{"from", "devices/+/telemetry/alert"}, {"to", {"cloud"}}, {"priority", "high"}},
    });
    run_outage(c, "devices/d1/telemetry/normal", "devices/d1/telemetry/alert", 3000, 300);
}

// Through the plugin stage: the outputs of a high via route go to the sibling too.
TEST_F(priority_test, HighViaRouteOutputsDrainBeforeOrdinaryBacklog) {
    make_brokers();
    json c = base_config();
    c["plugins"] = {{"dirs", json::array({EGW_PLUGIN_DIR})},
                    {"instances", {{"pass", {{"plugin", "egw_fx_noop"}}}}}};
    c["routes"] = json::array({
        {{"from", "devices/+/telemetry/normal"}, {"to", {"cloud"}}},
        {{"from", "devices/+/telemetry/alert"},
         {"via", {"pass"}},
         {"to", {"cloud"}},
         {"priority", "high"}},
    });
    run_outage(c, "devices/d1/telemetry/normal", "devices/d1/telemetry/alert", 2000, 200);
}

}  // namespace
}  // namespace egw::test
