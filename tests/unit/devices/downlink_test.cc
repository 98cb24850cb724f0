// SPDX-License-Identifier: Apache-2.0
// The downlink allow-list and the loop guard, without brokers.
#include "gateway/devices/downlink.h"

#include <gtest/gtest.h>

namespace egw::devices {
namespace {

std::vector<allow_entry> allow() {
    return {{"devices/+/cmd/#", 1, 16, false}, {"site/display", 0, 1024, true}};
}

TEST(devices_downlink, allows_caps_and_refuses_with_a_reason) {
    auto d =
        decide_downlink(allow(), "gw1", "gateways/gw1/down/devices/cam/cmd/reboot", 4, 2, false);
    EXPECT_TRUE(d.allowed);
    EXPECT_EQ(d.local_topic, "devices/cam/cmd/reboot");
    EXPECT_EQ(d.qos, 1);  // capped
    d = decide_downlink(allow(), "gw1", "gateways/gw1/down/site/display", 4, 2, true);
    EXPECT_TRUE(d.allowed);
    EXPECT_EQ(d.qos, 0);

    d = decide_downlink(allow(), "gw1", "gateways/gw1/down/devices/cam/config", 4, 1, false);
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.reason, "not allowed");
    d = decide_downlink(allow(), "gw1", "gateways/gw1/down/devices/cam/cmd/x", 4, 1, true);
    EXPECT_EQ(d.reason, "retained downlink not allowed");
    d = decide_downlink(allow(), "gw1", "gateways/gw1/down/devices/cam/cmd/x", 17, 1, false);
    EXPECT_EQ(d.reason, "payload of 17 bytes exceeds 16");
    d = decide_downlink(allow(), "gw1", "gateways/gw2/down/devices/cam/cmd/x", 1, 1, false);
    EXPECT_FALSE(d.allowed);
    d = decide_downlink({{"#", 1, 100, false}}, "gw1", "gateways/gw1/down/gateways/gw1/down/x", 1,
                        1, false);
    EXPECT_EQ(d.reason, "topic is reserved");  // even an allow-all cannot echo into our tree
    EXPECT_FALSE(decide_downlink({}, "gw1", "gateways/gw1/down/a", 1, 1, false).allowed);
}

TEST(devices_downlink, filter_overlap) {
    EXPECT_TRUE(filters_overlap("#", "gateways/g/down/#"));
    EXPECT_TRUE(filters_overlap("gateways/+/down/x", "gateways/g/down/#"));
    EXPECT_TRUE(filters_overlap("+/g/tasks/submit", "gateways/g/tasks/submit"));
    EXPECT_FALSE(filters_overlap("gateways/g/up/#", "gateways/g/down/#"));
    EXPECT_FALSE(filters_overlap("a/b", "a/b/c"));
    EXPECT_TRUE(filters_overlap("a/b/#", "a/b"));  // '#' also matches the parent level
    EXPECT_FALSE(filters_overlap("gateways/g/tasks/+/state", "gateways/g/tasks/submit"));
}

TEST(devices_downlink, uplink_loop_guard) {
    EXPECT_EQ(uplink_loop_problem("gateways/gw1/data/#", "gw1"), "");
    EXPECT_NE(uplink_loop_problem("#", "gw1"), "");
    EXPECT_NE(uplink_loop_problem("gateways/gw1/+/#", "gw1"), "");
    EXPECT_NE(uplink_loop_problem("gateways/gw1/tasks/+", "gw1"), "");
    EXPECT_EQ(uplink_loop_problem("gateways/gw1/tasks/+/state", "gw1"), "");
}

TEST(devices_downlink, uplink_filter_renders_the_sink_template) {
    EXPECT_EQ(uplink_filter("gateways/{gateway_id}/{topic}", "devices/+/cmd/#", "gw1"),
              "gateways/gw1/devices/+/cmd/#");
    EXPECT_EQ(uplink_filter("site/{gateway_id}/{seq}/{topic}", "a", "g"), "site/g/0/a");
    // The default template sends a local "down/#" into the downlink tree.
    EXPECT_NE(
        uplink_loop_problem(uplink_filter("gateways/{gateway_id}/{topic}", "down/#", "g"), "g"),
        "");
    EXPECT_EQ(uplink_loop_problem(
                  uplink_filter("gateways/{gateway_id}/{topic}", "devices/+/cmd/#", "g"), "g"),
              "");
    EXPECT_NE(
        uplink_loop_problem(uplink_filter("gateways/{gateway_id}/down/{topic}", "x/#", "g"), "g"),
        "");
}

TEST(devices_downlink, downlink_topics) {
    EXPECT_TRUE(is_downlink_topic("gateways/g/down/a/b", "g"));
    EXPECT_TRUE(is_downlink_topic("gateways/g/tasks/submit", "g"));
    EXPECT_TRUE(is_downlink_topic("gateways/g/tasks/cancel", "g"));
    EXPECT_FALSE(is_downlink_topic("gateways/g/tasks/t1/state", "g"));
    EXPECT_FALSE(is_downlink_topic("gateways/g/downlink/rejected", "g"));
    EXPECT_FALSE(is_downlink_topic("gateways/h/down/a", "g"));
}

TEST(devices_downlink, local_row_carries_the_qos) {
    int qos = -1;
    std::string_view topic;
    const std::string row = encode_local_row(1, "devices/d1/cmd/x");
    EXPECT_EQ(row, "1:devices/d1/cmd/x");
    ASSERT_TRUE(decode_local_row(row, qos, topic));
    EXPECT_EQ(qos, 1);
    EXPECT_EQ(topic, "devices/d1/cmd/x");
    const std::string colon = encode_local_row(0, "a:b/c");
    ASSERT_TRUE(decode_local_row(colon, qos, topic));
    EXPECT_EQ(qos, 0);
    EXPECT_EQ(topic, "a:b/c");
    EXPECT_FALSE(decode_local_row("devices/d1", qos, topic));
    EXPECT_FALSE(decode_local_row("3:x", qos, topic));
    EXPECT_FALSE(decode_local_row("1:", qos, topic));
}

}  // namespace
}  // namespace egw::devices
