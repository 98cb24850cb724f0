// SPDX-License-Identifier: Apache-2.0
#include "gateway/topic.h"

#include <gtest/gtest.h>

namespace egw {
namespace {

TEST(topic_filter, validates_wildcards) {
    EXPECT_EQ(filter_problem("devices/+/telemetry/#"), "");
    EXPECT_EQ(filter_problem("#"), "");
    EXPECT_NE(filter_problem(""), "");
    EXPECT_NE(filter_problem("a/#/b"), "");
    EXPECT_NE(filter_problem("a/b#"), "");
    EXPECT_NE(filter_problem("a/+b/c"), "");
}

TEST(topic_filter, matches_like_mqtt) {
    EXPECT_TRUE(topic_matches("devices/+/telemetry/#", "devices/d1/telemetry/temp"));
    EXPECT_TRUE(topic_matches("devices/+/telemetry/#", "devices/d1/telemetry/a/b"));
    EXPECT_TRUE(topic_matches("devices/+/telemetry/#", "devices/d1/telemetry"));
    EXPECT_FALSE(topic_matches("devices/+/telemetry/#", "devices/d1/camera/c1"));
    EXPECT_FALSE(topic_matches("devices/+/telemetry/#", "devices/telemetry"));
    EXPECT_TRUE(topic_matches("a/b", "a/b"));
    EXPECT_FALSE(topic_matches("a/b", "a/b/c"));
    EXPECT_FALSE(topic_matches("a/b/c", "a/b"));
    EXPECT_TRUE(topic_matches("a/+/c", "a//c"));
    EXPECT_TRUE(topic_matches("#", "anything/at/all"));
    EXPECT_FALSE(topic_matches("#", "$SYS/broker/uptime"));
    EXPECT_FALSE(topic_matches("+/broker", "$SYS/broker"));
    EXPECT_TRUE(topic_matches("$SYS/#", "$SYS/broker"));
}

TEST(topic_template, renders_placeholders) {
    topic_template t("gateways/{gateway_id}/{topic}", "gw-01");
    EXPECT_EQ(t.render("devices/d1/telemetry/temp", 7), "gateways/gw-01/devices/d1/telemetry/temp");
    topic_template s("x/{seq}/{topic}/{gateway_id}", "g");
    EXPECT_EQ(s.render("t", 42), "x/42/t/g");
    EXPECT_THROW(topic_template("a/{nope}", "g"), std::invalid_argument);
    EXPECT_THROW(topic_template("a/{topic", "g"), std::invalid_argument);
}

}  // namespace
}  // namespace egw
