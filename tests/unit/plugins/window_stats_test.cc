// SPDX-License-Identifier: Apache-2.0
// window-stats through its real .so: window alignment and boundaries, exact summaries, timer
// closes, skipped readings, late readings, snapshot/restore continuity, config rejections.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "plugin_test_util.h"

namespace egw::test {
namespace {

using nlohmann::json;

class WindowStats : public ::testing::Test {
protected:
    plugin_library lib_{plugin_path("window-stats")};
    std::unique_ptr<plugin_harness> make(
        const std::string& config = R"({"field":"temp","window_s":10})") {
        return std::make_unique<plugin_harness>(lib_, config);
    }
    static std::string reading(double v) { return json{{"temp", v}}.dump(); }
};

constexpr const char* kTopic = "devices/s1/telemetry/env";

TEST_F(WindowStats, DescriptorIsFastAndStateful) {
    const auto& d = lib_.descriptor();
    EXPECT_EQ(d.abi_major, 1u);
    EXPECT_EQ(d.struct_size, sizeof(egw_plugin));
    EXPECT_STREQ(d.name, "window-stats");
    EXPECT_EQ(d.flags & EGW_PLUGIN_HEAVY, 0u);
    EXPECT_NE(d.on_timer, nullptr);
    EXPECT_NE(d.on_snapshot, nullptr);
    EXPECT_NE(d.on_restore, nullptr);
}

TEST_F(WindowStats, ExactSummaryWhenTheNextWindowStarts) {
    auto h = make();
    EXPECT_TRUE(h->message(kTopic, R"({"temp":20})", kT0 + 1000).outputs.empty());
    EXPECT_TRUE(h->message(kTopic, R"({"temp":22})", kT0 + 4000).outputs.empty());
    // The last millisecond of [T0, T0 + 10 s) still belongs to the first window.
    EXPECT_TRUE(h->message(kTopic, R"({"temp":24})", kT0 + 9999).outputs.empty());
    // The end is exclusive: T0 + 10 s starts the next window and closes the first.
    auto r = h->message(kTopic, R"({"temp":30})", kT0 + 10000);
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r.outputs.size(), 1u);
    EXPECT_EQ(r.outputs[0].topic, std::string(kTopic) + "/window");
    EXPECT_EQ(r.outputs[0].content_type, "application/json");
    EXPECT_EQ(r.outputs[0].priority, EGW_PRIORITY_ROUTE);
    json s = parse(r.outputs[0]);
    EXPECT_EQ(s["field"], "temp");
    EXPECT_EQ(s["count"], 3);
    EXPECT_EQ(s["min"].get<double>(), 20.0);
    EXPECT_EQ(s["max"].get<double>(), 24.0);
    EXPECT_EQ(s["mean"].get<double>(), 22.0);
    // Population stddev of {20, 22, 24}: sqrt(8 / 3).
    EXPECT_DOUBLE_EQ(s["stddev"].get<double>(), std::sqrt(8.0 / 3.0));
    EXPECT_EQ(s["last"].get<double>(), 24.0);
    EXPECT_EQ(s["window_start_ms"].get<int64_t>(), kT0);
    EXPECT_EQ(s["window_end_ms"].get<int64_t>(), kT0 + 10000);
    // The keys in the documented order, nothing else.
    std::vector<std::string> keys;
    auto ordered = nlohmann::ordered_json::parse(r.outputs[0].payload);
    for (auto& [k, v] : ordered.items()) keys.push_back(k);
    EXPECT_EQ(keys, (std::vector<std::string>{"field", "count", "min", "max", "mean", "stddev",
                                              "last", "window_start_ms", "window_end_ms"}));
}

TEST_F(WindowStats, WindowsAlignToMultiplesOfTheWidthNotToTheFirstReading) {
    auto h = make(R"({"field":"temp","window_s":60})");
    h->message(kTopic, reading(1.5), kT0 + 37000);
    h->message(kTopic, reading(2.5), kT0 + 59999);
    auto r = h->message(kTopic, reading(9), kT0 + 60000);
    ASSERT_EQ(r.outputs.size(), 1u);
    json s = parse(r.outputs[0]);
    EXPECT_EQ(s["window_start_ms"].get<int64_t>(), kT0);
    EXPECT_EQ(s["window_end_ms"].get<int64_t>(), kT0 + 60000);
    EXPECT_EQ(s["count"], 2);
    EXPECT_EQ(s["mean"].get<double>(), 2.0);
    EXPECT_EQ(s["stddev"].get<double>(), 0.5);
    EXPECT_EQ(s["last"].get<double>(), 2.5);
}

TEST_F(WindowStats, TimerClosesTheWindowWithoutANewMessage) {
    auto h = make();
    h->message(kTopic, reading(1), kT0 + 2000);
    h->message(kTopic, reading(2), kT0 + 3000);
    h->message(kTopic, reading(3), kT0 + 4000);
    h->message(kTopic, reading(4), kT0 + 5000);
    // Armed at the end plus the 200 ms grace for stragglers: within a second of the end.
    EXPECT_EQ(h->timer_ms(), kT0 + 10200);
    EXPECT_TRUE(h->advance_to(kT0 + 10199).outputs.empty());
    auto r = h->advance_to(kT0 + 10200);
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r.outputs.size(), 1u);
    json s = parse(r.outputs[0]);
    EXPECT_EQ(s["count"], 4);
    EXPECT_EQ(s["mean"].get<double>(), 2.5);
    EXPECT_EQ(s["stddev"].get<double>(), std::sqrt(1.25));
    EXPECT_EQ(s["min"].get<double>(), 1.0);
    EXPECT_EQ(s["max"].get<double>(), 4.0);
    EXPECT_EQ(s["last"].get<double>(), 4.0);
    // Nothing open: no timer, and a late fire emits nothing.
    EXPECT_EQ(h->timer_ms(), 0);
    EXPECT_TRUE(h->timer(kT0 + 20000).outputs.empty());
}

TEST_F(WindowStats, OneReadingHasStddevZero) {
    auto h = make();
    h->message(kTopic, reading(-7.25), kT0 + 500);
    auto r = h->advance_to(kT0 + 11000);
    ASSERT_EQ(r.outputs.size(), 1u);
    json s = parse(r.outputs[0]);
    EXPECT_EQ(s["count"], 1);
    EXPECT_EQ(s["min"].get<double>(), -7.25);
    EXPECT_EQ(s["max"].get<double>(), -7.25);
    EXPECT_EQ(s["mean"].get<double>(), -7.25);
    EXPECT_EQ(s["stddev"].get<double>(), 0.0);
    EXPECT_EQ(s["last"].get<double>(), -7.25);
}

TEST_F(WindowStats, EmptyWindowsEmitNothing) {
    auto h = make();
    h->message(kTopic, reading(1), kT0 + 1000);
    // Three windows pass with no reading; only the two that had one are summarized.
    auto r = h->message(kTopic, reading(2), kT0 + 41000);
    ASSERT_EQ(r.outputs.size(), 1u);
    EXPECT_EQ(parse(r.outputs[0])["window_start_ms"].get<int64_t>(), kT0);
    r = h->advance_to(kT0 + 60000);
    ASSERT_EQ(r.outputs.size(), 1u);
    EXPECT_EQ(parse(r.outputs[0])["window_start_ms"].get<int64_t>(), kT0 + 40000);
    // A window of skipped readings only is empty too.
    h->message(kTopic, "not json", kT0 + 61000);
    EXPECT_EQ(h->timer_ms(), 0);
    EXPECT_TRUE(h->advance_to(kT0 + 80000).outputs.empty());
}

TEST_F(WindowStats, BadReadingsAreSkippedCountedAndNeverFail) {
    auto h = make(R"({"field":"env.temp","window_s":10})");
    const std::string bad[] = {
        "{\"env\":{\"temp\":",                   // truncated JSON
        std::string("\x00\xff\xfe\x80\x01", 5),  // binary
        "",                                      // empty payload
        R"({"env":{"hum":40}})",                 // field missing
        R"({"temp":20})",                        // not at the dotted path
        R"({"env":{"temp":"21.5"}})",            // a string, not a number
        R"({"env":{"temp":true}})",              // a boolean
        R"({"env":{"temp":null}})",              // null
        R"({"env":[1,2]})",                      // a step that is not an object
        R"([1,2,3])",                            // not an object at all
        R"({"env":{"temp":1e999}})",             // out of double range: malformed
    };
    h->message(kTopic, R"({"env":{"temp":10}})", kT0 + 100);
    for (const auto& p : bad) {
        auto r = h->message(kTopic, p, kT0 + 200);
        EXPECT_TRUE(r.ok()) << p;
        EXPECT_TRUE(r.outputs.empty()) << p;
    }
    h->message(kTopic, R"({"env":{"temp":20,"hum":3}})", kT0 + 300);
    auto r = h->advance_to(kT0 + 10200);
    ASSERT_EQ(r.outputs.size(), 1u);
    json s = parse(r.outputs[0]);
    EXPECT_EQ(s["field"], "env.temp");
    EXPECT_EQ(s["count"], 2);
    EXPECT_EQ(s["mean"].get<double>(), 15.0);
    // Each skip is logged at debug with its running count, never as a warning or an error.
    EXPECT_EQ(h->count_logs(EGW_LOG_DEBUG, "skipped a reading"), std::size(bad));
    EXPECT_EQ(h->count_logs(EGW_LOG_DEBUG, "malformed JSON (4 so far)"), 1u);
    EXPECT_EQ(h->count_logs(EGW_LOG_DEBUG, "field missing (4 so far)"), 1u);
    EXPECT_EQ(h->count_logs(EGW_LOG_DEBUG, "field not numeric (3 so far)"), 1u);
    EXPECT_EQ(h->count_logs(EGW_LOG_WARN, ""), 0u);
    EXPECT_EQ(h->count_logs(EGW_LOG_ERROR, ""), 0u);
}

TEST_F(WindowStats, DottedPathFollowsTheExactNesting) {
    auto h = make(R"({"field":"a.b.c","window_s":10})");
    struct probe {
        const char* payload;
        bool counted;
    };
    const probe probes[] = {
        {R"({"a":{"b":{"c":1}}})", true},
        {R"({"x":[{"a":5}],"a":{"z":{"c":9},"b":{"d":{"c":9},"c":2}}})", true},  // siblings ignored
        {R"({"c":9,"b":{"c":9},"a":{"c":9}})", false},                           // wrong levels
        {R"({"a":{"b":{"c":{"v":1}}}})", false},                                 // an object there
        {R"({"a":{"b":[{"c":1}]}})", false},                                     // an array step
        {R"({"a":{"b":{"c":1}},"a":{"b":{"c":4}}})", true},  // last duplicate wins
        {R"({"a":{"b":{"c":-0.5e1}}})", true},
    };
    for (const auto& p : probes)
        EXPECT_TRUE(h->message(kTopic, p.payload, kT0 + 1).ok()) << p.payload;
    auto r = h->advance_to(kT0 + 10200);
    ASSERT_EQ(r.outputs.size(), 1u);
    json s = parse(r.outputs[0]);
    // 1, 2, 4 (the duplicate's last value) and -5.
    EXPECT_EQ(s["count"], 4);
    EXPECT_EQ(s["min"].get<double>(), -5.0);
    EXPECT_EQ(s["max"].get<double>(), 4.0);
    EXPECT_EQ(s["mean"].get<double>(), 0.5);
    EXPECT_EQ(s["last"].get<double>(), -5.0);
    EXPECT_EQ(h->count_logs(EGW_LOG_DEBUG, "skipped a reading"), 3u);
}

TEST_F(WindowStats, TopicsHaveTheirOwnWindows) {
    auto h = make();
    h->message("devices/a/telemetry/t", reading(1), kT0 + 1000);
    h->message("devices/b/telemetry/t", reading(100), kT0 + 2000);
    h->message("devices/a/telemetry/t", reading(3), kT0 + 3000);
    auto r = h->advance_to(kT0 + 10200);
    ASSERT_EQ(r.outputs.size(), 2u);
    EXPECT_EQ(r.outputs[0].topic, "devices/a/telemetry/t/window");
    EXPECT_EQ(parse(r.outputs[0])["mean"].get<double>(), 2.0);
    EXPECT_EQ(r.outputs[1].topic, "devices/b/telemetry/t/window");
    EXPECT_EQ(parse(r.outputs[1])["count"], 1);
}

TEST_F(WindowStats, IngestTimeOfAnyTopicClosesDueWindows) {
    auto h = make();
    h->message("devices/a/telemetry/t", reading(1), kT0 + 1000);
    // b's reading 200 ms past a's window end closes a's window without waiting for the timer.
    EXPECT_TRUE(h->message("devices/b/telemetry/t", reading(5), kT0 + 10199).outputs.empty());
    auto r = h->message("devices/b/telemetry/t", reading(5), kT0 + 10200);
    ASSERT_EQ(r.outputs.size(), 1u);
    EXPECT_EQ(r.outputs[0].topic, "devices/a/telemetry/t/window");
}

TEST_F(WindowStats, LateReadingIsCountedNotSummarizedTwice) {
    auto h = make();
    h->message(kTopic, reading(1), kT0 + 1000);
    ASSERT_EQ(h->advance_to(kT0 + 10200).outputs.size(), 1u);
    // Ingest time from the already summarized window (a clock step back): not a second summary.
    auto r = h->message(kTopic, reading(2), kT0 + 9000);
    EXPECT_TRUE(r.ok());
    EXPECT_TRUE(r.outputs.empty());
    EXPECT_EQ(h->timer_ms(), 0);
    EXPECT_EQ(h->count_logs(EGW_LOG_WARN, "late reading"), 1u);
}

// Drives one stream through the plugin like the host would (timers fired as time passes) and
// optionally, every `restart_every` messages, snapshots, destroys the instance, and makes a new
// one restored from the snapshot: a kill -9 after a committed batch.
std::vector<emitted> run_stream(const plugin_library& lib, int restart_every) {
    const std::string config = R"({"field":"v","window_s":5})";
    auto h = std::make_unique<plugin_harness>(lib, config);
    std::vector<emitted> out;
    auto keep = [&](hook_result r) {
        EXPECT_TRUE(r.ok());
        for (auto& o : r.outputs) out.push_back(std::move(o));
    };
    std::mt19937_64 rng(42);
    std::uniform_real_distribution<double> value(-50, 50);
    std::uniform_int_distribution<int> gap(1, 2500);
    int64_t ts = kT0 + 123;
    for (int i = 0; i < 600; ++i) {
        ts += gap(rng);
        std::string topic = "devices/d" + std::to_string(rng() % 4) + "/telemetry/x";
        keep(h->advance_to(ts - 1));
        keep(h->message(topic, json{{"v", value(rng)}}.dump(), ts));
        if (restart_every > 0 && i % restart_every == restart_every - 1) {
            std::string state = h->snapshot();
            h = std::make_unique<plugin_harness>(lib, config);
            EXPECT_EQ(h->restore(state), EGW_OK);
            // on_restore has no egw_call, so the instance cannot re-arm its timer there; a host
            // fires on_timer once after restoring (nothing is due yet: the last message at ts
            // already closed what was) and the instance re-arms from it.
            keep(h->timer(ts));
        }
    }
    keep(h->timer(ts + 60000));
    return out;
}

TEST_F(WindowStats, SnapshotRestoreContinuesExactlyLikeAnUninterruptedRun) {
    auto straight = run_stream(lib_, 0);
    auto restarted = run_stream(lib_, 7);
    ASSERT_GT(straight.size(), 100u);
    ASSERT_EQ(straight.size(), restarted.size());
    for (size_t i = 0; i < straight.size(); ++i) {
        EXPECT_EQ(straight[i].topic, restarted[i].topic) << i;
        EXPECT_EQ(straight[i].payload, restarted[i].payload) << i;  // to the bit
    }
    // Every reading is in exactly one summary.
    uint64_t counted = 0;
    for (const auto& e : straight) counted += parse(e)["count"].get<uint64_t>();
    EXPECT_EQ(counted, 600u);
}

TEST_F(WindowStats, SnapshotHoldsTheOpenWindows) {
    auto h = make();
    h->message(kTopic, reading(10), kT0 + 1000);
    h->message(kTopic, reading(20), kT0 + 2000);
    std::string state = h->snapshot();
    auto h2 = make();
    ASSERT_EQ(h2->restore(state), EGW_OK);
    h2->message(kTopic, reading(30), kT0 + 3000);
    auto r = h2->message(kTopic, reading(0), kT0 + 10000);
    ASSERT_EQ(r.outputs.size(), 1u);
    json s = parse(r.outputs[0]);
    EXPECT_EQ(s["count"], 3);
    EXPECT_EQ(s["mean"].get<double>(), 20.0);
    EXPECT_EQ(s["min"].get<double>(), 10.0);
    EXPECT_EQ(s["last"].get<double>(), 30.0);
    // A garbage snapshot is refused with a log line, not a crash.
    auto h3 = make();
    EXPECT_EQ(h3->restore("\x01\x02garbage"), EGW_ERROR);
    EXPECT_EQ(h3->count_logs(EGW_LOG_ERROR, "restore"), 1u);
}

TEST_F(WindowStats, ConfigRejectionsNameTheKey) {
    auto reject = [&](const std::string& c) { return plugin_harness::rejection(lib_, c); };
    EXPECT_EQ(reject(R"({"field":"temp","window_s":10})"), "");
    EXPECT_EQ(reject(R"({"window_s":10})"), "field: required");
    EXPECT_EQ(reject(R"({"field":"","window_s":10})"),
              "field: must be a non-empty string (a dotted path)");
    EXPECT_EQ(reject(R"({"field":7,"window_s":10})"),
              "field: must be a non-empty string (a dotted path)");
    EXPECT_EQ(reject(R"({"field":"a..b","window_s":10})"),
              "field: must be a dotted path such as \"env.temp\"");
    EXPECT_EQ(reject(R"({"field":"temp"})"), "window_s: required");
    for (const char* w : {"0", "-5", "2.5", "\"10\"", "null"}) {
        EXPECT_EQ(reject(std::string(R"({"field":"temp","window_s":)") + w + "}"),
                  "window_s: must be a positive integer")
            << w;
    }
    EXPECT_EQ(reject(R"({"field":"temp","window_s":10,"window_sec":5})"),
              "window_sec: unknown key");
    EXPECT_EQ(reject("[1]"), "config: must be a JSON object");
    EXPECT_EQ(reject("{"), "config: not valid JSON");
}

}  // namespace
}  // namespace egw::test
