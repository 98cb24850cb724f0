// SPDX-License-Identifier: Apache-2.0
// deadband through its real .so: delta, max_silence_s, delta 0, bytes and topic unchanged, bad
// input, snapshot/restore, config rejections.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "plugin_test_util.h"

namespace egw::test {
namespace {

constexpr const char* kTopic = "devices/s7/telemetry/env";

class Deadband : public ::testing::Test {
protected:
    plugin_library lib_{plugin_path("deadband")};
    std::unique_ptr<plugin_harness> make(const std::string& config) {
        return std::make_unique<plugin_harness>(lib_, config);
    }
    // Feeds payloads at the given times; returns the indexes of the readings forwarded.
    static std::vector<int> forwarded(plugin_harness& h,
                                      const std::vector<std::pair<std::string, int64_t>>& in) {
        std::vector<int> idx;
        for (size_t i = 0; i < in.size(); ++i) {
            auto r = h.message(kTopic, in[i].first, in[i].second);
            EXPECT_TRUE(r.ok());
            EXPECT_LE(r.outputs.size(), 1u);
            if (!r.outputs.empty()) {
                EXPECT_EQ(r.outputs[0].topic, kTopic);
                EXPECT_EQ(r.outputs[0].payload, in[i].first);
                idx.push_back(static_cast<int>(i));
            }
        }
        return idx;
    }
};

TEST_F(Deadband, ForwardsWhenTheValueMovedByDeltaFromTheLastForwarded) {
    auto h = make(R"({"field":"temp","delta":0.5})");
    auto idx =
        forwarded(*h, {{R"({"temp":20.0})", kT0},        // first: forwarded
                       {R"({"temp":20.3})", kT0 + 1},    // 0.3
                       {R"({"temp":20.49})", kT0 + 2},   // 0.49
                       {R"({"temp":20.5})", kT0 + 3},    // 0.5 >= 0.5: forwarded
                       {R"({"temp":20.1})", kT0 + 4},    // 0.4 from 20.5
                       {R"({"temp":20.0})", kT0 + 5},    // 0.5 down: forwarded
                       {R"({"temp":19.6})", kT0 + 6},    // 0.4 (drift is measured from
                       {R"({"temp":19.7})", kT0 + 7}});  // the last forwarded, not the last seen)
    EXPECT_EQ(idx, (std::vector<int>{0, 3, 5}));
}

TEST_F(Deadband, OutputIsTheInputByteForByte) {
    auto h = make(R"({"field":"env.t","delta":1})");
    // Odd formatting and extra fields survive untouched: deadband never re-encodes.
    std::string p = "{ \"env\" : {\"t\": 5 , \"u\":\"C\"},\n \"seq\": 1e3 }";
    auto r = h->message(kTopic, p, kT0, "application/json; charset=utf-8");
    ASSERT_EQ(r.outputs.size(), 1u);
    EXPECT_EQ(r.outputs[0].topic, kTopic);
    EXPECT_EQ(r.outputs[0].payload, p);
    EXPECT_EQ(r.outputs[0].content_type, "application/json; charset=utf-8");
    EXPECT_EQ(r.outputs[0].priority, EGW_PRIORITY_ROUTE);
    r = h->message(kTopic, R"({"env":{"t":7}})", kT0 + 1);
    ASSERT_EQ(r.outputs.size(), 1u);
    EXPECT_EQ(r.outputs[0].content_type, "application/json");
}

TEST_F(Deadband, MaxSilenceForwardsAnUnchangedReading) {
    auto h = make(R"({"field":"temp","delta":10,"max_silence_s":300})");
    auto idx = forwarded(*h, {{R"({"temp":1})", kT0},
                              {R"({"temp":1})", kT0 + 299999},  // just short of 300 s
                              {R"({"temp":1})", kT0 + 300000},  // 300 s since the last forward
                              {R"({"temp":2})", kT0 + 300001},
                              {R"({"temp":1})", kT0 + 599999},
                              {R"({"temp":1})", kT0 + 600000}});
    EXPECT_EQ(idx, (std::vector<int>{0, 2, 5}));
    // No timer: silence is judged only when a reading arrives.
    EXPECT_EQ(h->timer_ms(), 0);
    EXPECT_EQ(lib_.descriptor().on_timer, nullptr);
}

TEST_F(Deadband, FractionalMaxSilence) {
    auto h = make(R"({"field":"temp","delta":100,"max_silence_s":0.5})");
    auto idx = forwarded(*h, {{R"({"temp":1})", kT0},
                              {R"({"temp":1})", kT0 + 499},
                              {R"({"temp":1})", kT0 + 500},
                              {R"({"temp":1})", kT0 + 999}});
    EXPECT_EQ(idx, (std::vector<int>{0, 2}));
}

TEST_F(Deadband, DeltaZeroForwardsEveryReading) {
    auto h = make(R"({"field":"temp","delta":0})");
    auto idx = forwarded(*h, {{R"({"temp":1})", kT0},
                              {R"({"temp":1})", kT0 + 1},
                              {R"({"temp":1})", kT0 + 1},
                              {R"({"temp":1.0000001})", kT0 + 2}});
    EXPECT_EQ(idx, (std::vector<int>{0, 1, 2, 3}));
}

TEST_F(Deadband, TopicsAreIndependent) {
    auto h = make(R"({"field":"temp","delta":5})");
    EXPECT_EQ(h->message("devices/a/telemetry/t", R"({"temp":1})", kT0).outputs.size(), 1u);
    EXPECT_EQ(h->message("devices/b/telemetry/t", R"({"temp":2})", kT0).outputs.size(), 1u);
    EXPECT_EQ(h->message("devices/a/telemetry/t", R"({"temp":3})", kT0).outputs.size(), 0u);
    auto r = h->message("devices/b/telemetry/t", R"({"temp":7})", kT0);
    ASSERT_EQ(r.outputs.size(), 1u);
    EXPECT_EQ(r.outputs[0].topic, "devices/b/telemetry/t");
}

TEST_F(Deadband, BadReadingsAreSkippedNotForwardedAndChangeNothing) {
    auto h = make(R"({"field":"a.b","delta":1})");
    EXPECT_EQ(h->message(kTopic, R"({"a":{"b":10}})", kT0).outputs.size(), 1u);
    for (std::string p : {std::string("{\"a\":{\"b\":"), std::string("\x89PNG\r\n\x1a\n\0\0", 10),
                          std::string(R"({"a":{"c":50}})"), std::string(R"({"b":50})"),
                          std::string(R"({"a":{"b":"50"}})"), std::string(R"({"a":5})")}) {
        auto r = h->message(kTopic, p, kT0 + 1);
        EXPECT_TRUE(r.ok());
        EXPECT_TRUE(r.outputs.empty());
    }
    EXPECT_EQ(h->count_logs(EGW_LOG_DEBUG, "skipped a reading"), 6u);
    EXPECT_EQ(h->count_logs(EGW_LOG_DEBUG, "malformed JSON (2 so far)"), 1u);
    EXPECT_EQ(h->count_logs(EGW_LOG_WARN, ""), 0u);
    EXPECT_EQ(h->count_logs(EGW_LOG_ERROR, ""), 0u);
    // The last forwarded value is still 10.
    EXPECT_EQ(h->message(kTopic, R"({"a":{"b":10.9}})", kT0 + 2).outputs.size(), 0u);
    EXPECT_EQ(h->message(kTopic, R"({"a":{"b":11}})", kT0 + 3).outputs.size(), 1u);
}

TEST_F(Deadband, SnapshotRestoreKeepsTheLastForwarded) {
    const char* config = R"({"field":"temp","delta":1,"max_silence_s":60})";
    auto h = make(config);
    EXPECT_EQ(h->message(kTopic, R"({"temp":5})", kT0).outputs.size(), 1u);
    std::string state = h->snapshot();
    auto h2 = make(config);
    ASSERT_EQ(h2->restore(state), EGW_OK);
    EXPECT_EQ(h2->message(kTopic, R"({"temp":5.5})", kT0 + 1000).outputs.size(), 0u);
    EXPECT_EQ(h2->message(kTopic, R"({"temp":5.5})", kT0 + 60000).outputs.size(), 1u);
    EXPECT_EQ(h2->restore("{"), EGW_ERROR);
}

TEST_F(Deadband, ConfigRejectionsNameTheKey) {
    auto reject = [&](const std::string& c) { return plugin_harness::rejection(lib_, c); };
    EXPECT_EQ(reject(R"({"field":"temp","delta":0.5,"max_silence_s":300})"), "");
    EXPECT_EQ(reject(R"({"delta":0.5})"), "field: required");
    EXPECT_EQ(reject(R"({"field":"temp"})"), "delta: required");
    EXPECT_EQ(reject(R"({"field":"temp","delta":-1})"), "delta: must be a number >= 0");
    EXPECT_EQ(reject(R"({"field":"temp","delta":"1"})"), "delta: must be a number");
    EXPECT_EQ(reject(R"({"field":"temp","delta":1,"max_silence_s":0})"),
              "max_silence_s: must be a number > 0");
    EXPECT_EQ(reject(R"({"field":"temp","delta":1,"max_silence":5})"), "max_silence: unknown key");
}

}  // namespace
}  // namespace egw::test
