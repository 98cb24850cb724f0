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

}  // namespace
}  // namespace egw::devices
