// SPDX-License-Identifier: Apache-2.0
// threshold-alert through its real .so: strict thresholds with hysteresis, once per transition,
// rate rules, per-topic state, bad input, snapshot/restore, config rejections.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "plugin_test_util.h"

namespace egw::test {
namespace {

using nlohmann::json;

constexpr const char* kTopic = "devices/oven/telemetry/env";

class ThresholdAlert : public ::testing::Test {
protected:
    plugin_library lib_{plugin_path("threshold-alert")};
    std::unique_ptr<plugin_harness> make(const std::string& config) {
        return std::make_unique<plugin_harness>(lib_, config);
    }
    // Feeds (value, ts) readings of "temp" and returns the alert states emitted, in order, as
    // "raised@<value>" / "cleared@<value>".
    static std::vector<std::string> feed(plugin_harness& h,
                                         const std::vector<std::pair<double, int64_t>>& readings,
                                         const char* topic = kTopic) {
        std::vector<std::string> states;
        for (auto [v, ts] : readings) {
            auto r = h.message(topic, json{{"temp", v}}.dump(), ts);
            EXPECT_TRUE(r.ok());
            for (const auto& o : r.outputs) {
                json a = parse(o);
                states.push_back(a["state"].get<std::string>() + "@" + json(a["value"]).dump());
            }
        }
        return states;
    }
};

TEST_F(ThresholdAlert, AboveWithHysteresisOncePerTransition) {
    auto h = make(R"({"rules":[{"field":"temp","above":80,"clear_below":75}]})");
    auto states = feed(*h, {{70, kT0},
                            {80, kT0 + 1},    // strict: 80 is not above 80
                            {80.5, kT0 + 2},  // raised
                            {85, kT0 + 3},    // still raised: no second alert
                            {90, kT0 + 4},
                            {76, kT0 + 5},    // inside the hysteresis band
                            {75, kT0 + 6},    // strict: 75 is not below 75
                            {74.9, kT0 + 7},  // cleared
                            {70, kT0 + 8},
                            {81, kT0 + 9}});  // raised again
    EXPECT_EQ(states, (std::vector<std::string>{"raised@80.5", "cleared@74.9", "raised@81.0"}));
}

TEST_F(ThresholdAlert, AlertPayloadIsExact) {
    auto h = make(R"({"rules":[{"field":"temp","above":80,"clear_below":75}]})");
    auto r = h->message(kTopic, R"({"temp":81.5,"hum":3})", kT0 + 42);
    ASSERT_EQ(r.outputs.size(), 1u);
    EXPECT_EQ(r.outputs[0].topic, std::string(kTopic) + "/alert");
    EXPECT_EQ(r.outputs[0].content_type, "application/json");
    EXPECT_EQ(r.outputs[0].payload,
              R"({"field":"temp","value":81.5,"rule":0,"state":"raised","ts_ms":1764446400042})");
}

TEST_F(ThresholdAlert, BelowWithClearAbove) {
    auto h = make(R"({"rules":[{"field":"temp","below":5,"clear_above":8}]})");
    auto states = feed(*h, {{6, kT0},
                            {5, kT0 + 1},
                            {4, kT0 + 2},
                            {3, kT0 + 3},
                            {8, kT0 + 4},
                            {8.5, kT0 + 5},
                            {9, kT0 + 6}});
    EXPECT_EQ(states, (std::vector<std::string>{"raised@4.0", "cleared@8.5"}));
}

TEST_F(ThresholdAlert, WithoutHysteresisItClearsWhenTheTriggerNoLongerHolds) {
    auto h = make(R"({"rules":[{"field":"temp","above":80}]})");
    auto states = feed(*h, {{81, kT0}, {82, kT0 + 1}, {80, kT0 + 2}, {79, kT0 + 3}});
    EXPECT_EQ(states, (std::vector<std::string>{"raised@81.0", "cleared@80.0"}));
}

TEST_F(ThresholdAlert, RateOfChangePerSecond) {
    auto h = make(R"({"rules":[{"field":"temp","rate_above":2}]})");
    std::vector<json> alerts;
    const std::pair<double, int64_t> readings[] = {
        {10, kT0},           // no previous reading: no rate
        {11, kT0 + 1000},    // 1/s
        {14, kT0 + 2000},    // 3/s: raised
        {15.5, kT0 + 2500},  // 3/s: still raised
        {16, kT0 + 3500},    // 0.5/s: cleared
        {16, kT0 + 3500},    // same ingest time: no rate, nothing
    };
    for (auto [v, ts] : readings) {
        auto r = h->message(kTopic, json{{"temp", v}}.dump(), ts);
        ASSERT_TRUE(r.ok());
        for (const auto& o : r.outputs) alerts.push_back(parse(o));
    }
    ASSERT_EQ(alerts.size(), 2u);
    EXPECT_EQ(alerts[0]["state"], "raised");
    EXPECT_EQ(alerts[0]["value"].get<double>(), 14.0);
    EXPECT_EQ(alerts[0]["rate"].get<double>(), 3.0);
    EXPECT_EQ(alerts[0]["ts_ms"].get<int64_t>(), kT0 + 2000);
    EXPECT_EQ(alerts[1]["state"], "cleared");
    EXPECT_EQ(alerts[1]["rate"].get<double>(), 0.5);
    EXPECT_EQ(alerts[1]["ts_ms"].get<int64_t>(), kT0 + 3500);
}

TEST_F(ThresholdAlert, FallingRateWithHysteresis) {
    auto h = make(R"({"rules":[{"field":"temp","rate_below":-2,"clear_above":-1}]})");
    auto states = feed(*h, {{20, kT0}, {17, kT0 + 1000}, {15.5, kT0 + 2000}, {15, kT0 + 3000}});
    // -3/s raises, -1.5/s is inside the band, -0.5/s clears.
    EXPECT_EQ(states, (std::vector<std::string>{"raised@17.0", "cleared@15.0"}));
}

TEST_F(ThresholdAlert, RulesAndTopicsAreIndependent) {
    auto h = make(R"({"rules":[{"field":"temp","above":80},{"field":"env.hum","below":10}]})");
    auto r = h->message("devices/a/telemetry/t", R"({"temp":90,"env":{"hum":5}})", kT0);
    ASSERT_EQ(r.outputs.size(), 2u);
    EXPECT_EQ(parse(r.outputs[0])["rule"], 0);
    EXPECT_EQ(parse(r.outputs[1])["rule"], 1);
    EXPECT_EQ(parse(r.outputs[1])["field"], "env.hum");
    // Another topic starts from "not raised".
    r = h->message("devices/b/telemetry/t", R"({"temp":90})", kT0 + 1);
    ASSERT_EQ(r.outputs.size(), 1u);
    EXPECT_EQ(r.outputs[0].topic, "devices/b/telemetry/t/alert");
    // A reading with only one of the fields evaluates that rule alone.
    r = h->message("devices/a/telemetry/t", R"({"env":{"hum":50}})", kT0 + 2);
    ASSERT_EQ(r.outputs.size(), 1u);
    EXPECT_EQ(parse(r.outputs[0])["state"], "cleared");
    EXPECT_EQ(parse(r.outputs[0])["rule"], 1);
}

TEST_F(ThresholdAlert, BadReadingsAreSkippedAndChangeNothing) {
    auto h = make(R"({"rules":[{"field":"temp","above":80}]})");
    ASSERT_EQ(feed(*h, {{90, kT0}}).size(), 1u);
    for (std::string p : {std::string("{\"temp\":"), std::string("\xff\xfe\x00\x01", 4),
                          std::string(R"({"hum":1})"), std::string(R"({"temp":"99"})"),
                          std::string(R"({"temp":[1]})")}) {
        auto r = h->message(kTopic, p, kT0 + 1);
        EXPECT_TRUE(r.ok());
        EXPECT_TRUE(r.outputs.empty());
    }
    EXPECT_EQ(h->count_logs(EGW_LOG_DEBUG, "skipped a reading"), 5u);
    EXPECT_EQ(h->count_logs(EGW_LOG_ERROR, ""), 0u);
    // Still raised: the next low reading clears.
    EXPECT_EQ(feed(*h, {{70, kT0 + 2}}), (std::vector<std::string>{"cleared@70.0"}));
}

TEST_F(ThresholdAlert, SnapshotKeepsRaisedStateAndRateHistory) {
    const char* config = R"({"rules":[{"field":"temp","above":80,"clear_below":75},)"
                         R"({"field":"temp","rate_above":5}]})";
    auto h = make(config);
    ASSERT_EQ(feed(*h, {{81, kT0}}).size(), 1u);
    std::string state = h->snapshot();
    auto h2 = make(config);
    ASSERT_EQ(h2->restore(state), EGW_OK);
    // Still raised after the restart: no second "raised"; the rate uses the reading before it
    // ((90 - 81) / 1 s = 9/s > 5).
    auto states = feed(*h2, {{90, kT0 + 1000}, {74, kT0 + 100000}});
    EXPECT_EQ(states, (std::vector<std::string>{"raised@90.0", "cleared@74.0", "cleared@74.0"}));
    // A snapshot of other rules is ignored (indexes would mean other rules).
    auto h3 = make(R"({"rules":[{"field":"temp","above":80}]})");
    EXPECT_EQ(h3->restore(state), EGW_OK);
    EXPECT_EQ(h3->count_logs(EGW_LOG_WARN, "other rules"), 1u);
    EXPECT_EQ(h3->restore("nonsense"), EGW_ERROR);
}

TEST_F(ThresholdAlert, ConfigRejectionsNameTheKey) {
    auto reject = [&](const std::string& c) { return plugin_harness::rejection(lib_, c); };
    EXPECT_EQ(reject(R"({"rules":[{"field":"temp","above":80,"clear_below":75}]})"), "");
    EXPECT_EQ(reject("{}"), "rules: required");
    EXPECT_EQ(reject(R"({"rules":[]})"), "rules: must be a non-empty array of rules");
    EXPECT_EQ(reject(R"({"rules":{"field":"t"}})"), "rules: must be a non-empty array of rules");
    EXPECT_EQ(reject(R"({"rules":[7]})"), "rules[0]: must be an object");
    EXPECT_EQ(reject(R"({"rules":[{"above":80}]})"), "rules[0].field: required");
    EXPECT_EQ(reject(R"({"rules":[{"field":"t","above":1},{"field":"t"}]})"),
              "rules[1]: needs exactly one of above, below, rate_above, rate_below");
    EXPECT_EQ(reject(R"({"rules":[{"field":"t","above":1,"below":0}]})"),
              "rules[0]: needs exactly one of above, below, rate_above, rate_below");
    EXPECT_EQ(reject(R"({"rules":[{"field":"t","above":"80"}]})"),
              "rules[0].above: must be a number");
    EXPECT_EQ(reject(R"({"rules":[{"field":"t","above":80,"clear_below":85}]})"),
              "rules[0].clear_below: must not be greater than the raise threshold");
    EXPECT_EQ(reject(R"({"rules":[{"field":"t","below":5,"clear_above":1}]})"),
              "rules[0].clear_above: must not be less than the raise threshold");
    EXPECT_EQ(reject(R"({"rules":[{"field":"t","above":80,"clear_above":85}]})"),
              "rules[0].clear_above: only with below or rate_below");
    EXPECT_EQ(reject(R"({"rules":[{"field":"t","abov":80}]})"), "rules[0].abov: unknown key");
    EXPECT_EQ(reject(R"({"rules":[{"field":"t","above":80}],"x":1})"), "x: unknown key");
}

}  // namespace
}  // namespace egw::test
