// SPDX-License-Identifier: Apache-2.0
//
// The plugin host and its crash-safe stage, end to end: the real daemon, real brokers, real
// .so files (tests/plugins/host_fixtures). Chaining and fan-out, plain + via both delivering,
// containment (error, exception, bad output -> dead letters, the stream goes on), kill -9 in a
// stream through a stateless and a stateful plugin (nothing lost, no output duplicated), the
// ABI checks and --check-config's key paths.

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <thread>
#include <tuple>

#include "integration/gateway_test_fixture.h"

namespace egw::test {
namespace {

std::string fixture(const std::string& name) {
    return std::string(EGW_TEST_PLUGIN_DIR) + "/" + name + ".so";
}

const std::string k_raw = cloud_topic("devices/p/telemetry/x");

class plugin_host_test : public gateway_test {
protected:
    // base_config plus instances and routes (the plain route of base_config is replaced).
    json plugin_config(json instances, json routes) {
        json c = base_config();
        c["plugins"] = {{"dirs", json::array({EGW_TEST_PLUGIN_DIR})}, {"instances", instances}};
        c["routes"] = std::move(routes);
        return c;
    }

    std::map<std::string, std::vector<received_message>> by_topic() const {
        std::map<std::string, std::vector<received_message>> out;
        for (auto& m : data_messages()) out[m.topic].push_back(m);
        return out;
    }
};

TEST_F(plugin_host_test, ChainFanOutAndPlainRouteAllDeliver) {
    start_brokers();
    json inst = {{"a", {{"plugin", "egw_test_echo"}, {"config", {{"suffix", "/a"}}}}},
                 {"b", {{"plugin", fixture("egw_test_echo")}, {"config", {{"suffix", "/b"}}}}}};
    json routes = json::array({
        {{"from", k_telemetry_filter}, {"via", {"a", "b"}}, {"to", {"cloud"}}},
        {{"from", k_telemetry_filter}, {"via", {"a"}}, {"to", {"cloud"}}},
        {{"from", k_telemetry_filter}, {"to", {"cloud"}}},
    });
    auto& gw = start_gateway(plugin_config(inst, routes));
    connect_cloud_subscriber();
    auto& dev = connect_device();
    constexpr int n = 200;
    for (int i = 0; i < n; ++i) dev.publish("devices/p/telemetry/x", numbered_payload("p", i));
    dev.flush();
    ASSERT_TRUE(wait_for_data_count(3 * n, 30s)) << gw.last_status();
    // Let anything extra arrive before counting.
    ASSERT_TRUE(gw.wait_until(
        [](const json& s) { return json_at(s, "plugins/stage/rows_waiting") == 0; }, 10s));
    const auto t = by_topic();
    ASSERT_EQ(t.count(k_raw), 1u);
    EXPECT_EQ(t.at(k_raw).size(), static_cast<size_t>(n));
    EXPECT_EQ(t.at(k_raw + "/a").size(), static_cast<size_t>(n));    // route 2
    EXPECT_EQ(t.at(k_raw + "/a/b").size(), static_cast<size_t>(n));  // route 1, chained
    // Order within a route is kept; payloads pass through unchanged.
    for (int i = 0; i < n; ++i)
        EXPECT_EQ(t.at(k_raw + "/a/b")[i].payload, numbered_payload("p", i));
    // "a" is one instance used by two routes: it saw every message twice.
    const auto st = gw.status_json();
    ASSERT_TRUE(st);
    EXPECT_EQ(json_at(*st, "plugins/instances/a/in"), 2 * n);
    EXPECT_EQ(json_at(*st, "plugins/instances/b/in"), n);
    std::cout << "[ info ] egw_test_echo per call through the host: p50 "
              << json_at(*st, "plugins/instances/a/p50_us") << " us, p99 "
              << json_at(*st, "plugins/instances/a/p99_us") << " us\n";
    // The text status shows the stage and its instances.
    const auto text =
        run_gateway_cli({"status", "-s", (tmp_ / "data" / "control.sock").string()}, tmp_.path());
    EXPECT_EQ(text.exit_code, 0) << text.err;
    EXPECT_NE(text.out.find("INSTANCE"), std::string::npos) << text.out;
}

TEST_F(plugin_host_test, FailuresGoToDeadLettersAndTheStreamContinues) {
    start_brokers();
    json inst = {{"e", {{"plugin", "egw_test_echo"}}}};
    json routes = json::array({{{"from", k_telemetry_filter}, {"via", {"e"}}, {"to", {"cloud"}}}});
    auto& gw = start_gateway(plugin_config(inst, routes));
    connect_cloud_subscriber();
    auto& dev = connect_device();
    dev.publish("devices/p/telemetry/x", "p:0");
    for (const char* bad : {"error", "throw", "badtopic"})
        dev.publish("devices/p/telemetry/x", bad);
    dev.publish("devices/p/telemetry/x", "p:1");
    dev.flush();
    ASSERT_TRUE(wait_for_unique({"p:0", "p:1"}, 20s)) << gw.last_status();
    auto st = gw.wait_until(
        [](const json& s) { return json_at(s, "plugins/instances/e/dead_letters") == 3; }, 10s);
    ASSERT_TRUE(st) << gw.last_status();
    EXPECT_EQ(json_at(*st, "plugins/instances/e/errors/error"), 1);
    EXPECT_EQ(json_at(*st, "plugins/instances/e/errors/exception"), 1);
    EXPECT_EQ(json_at(*st, "plugins/instances/e/errors/bad_output"), 1);
    EXPECT_EQ(json_at(*st, "plugins/stage/rows_waiting"), 0);
    EXPECT_EQ(data_messages().size(), 2u);
}

// kill -9 three times while a device streams through `plugin`, with a plain route beside it.
// Every input must have an output, and an input has as many distinct output rows (egw-seq) as
// it has raw rows: more raw rows means the local broker redelivered it (an ingest duplicate,
// see docs/plugin-stage.md); more output rows than raw rows would be a stage duplicate.
struct kill_outcome {
    size_t lost = 0, stage_duplicates = 0, ingest_duplicates = 0;
    std::vector<uint64_t> counts;  // egw_test_counter's n, one per distinct output row
};

kill_outcome kill9_stream(plugin_host_test& t, gateway_process& gw, test_publisher& dev,
                          const std::string& suffix,
                          const std::function<std::vector<received_message>()>& data) {
    constexpr size_t k_count = 3000;
    std::jthread publisher([&] {
        for (size_t i = 0; i < k_count; ++i)
            dev.publish("devices/p/telemetry/x", numbered_payload("p", i));
        dev.flush(60s);
    });
    for (size_t point : {600u, 1400u, 2200u}) {
        if (!poll_until([&] { return dev.acked() >= point; }, 30s)) {
            ADD_FAILURE() << "publisher stalled at " << dev.acked();
            break;
        }
        // The broker's acknowledgements say nothing about the gateway: on a loaded machine it
        // may not have committed a stage batch yet, and then a restart has no snapshot to
        // resume from. Kill it only once this run committed one.
        if (!gw.wait_until([](const json& s) { return json_at(s, "plugins/stage/batches") >= 1; },
                           30s)) {
            ADD_FAILURE() << "no stage batch committed before kill point " << point;
            break;
        }
        gw.kill9();
        if (!gw.start_and_wait_ready()) {
            ADD_FAILURE() << "no restart";
            break;
        }
    }
    publisher.join();
    (void)t;
    kill_outcome o;
    // identity "p:i" -> distinct seqs, raw and output
    std::map<std::string, std::set<uint64_t>> raw, out;
    std::map<uint64_t, std::string> out_payload;
    auto collect = [&] {
        raw.clear();
        out.clear();
        out_payload.clear();
        for (const auto& m : data()) {
            auto seq = parse_seq(m.egw_seq);
            if (!seq) continue;
            const std::string id = m.payload.substr(0, m.payload.find('|'));
            if (m.topic == k_raw) raw[id].insert(*seq);
            if (m.topic == k_raw + suffix) {
                out[id].insert(*seq);
                out_payload[*seq] = m.payload;
            }
        }
        return out.size() >= k_count && raw.size() >= k_count;
    };
    poll_until(collect, 60s, 100ms);
    collect();
    for (size_t i = 0; i < k_count; ++i) {
        const std::string id = "p:" + std::to_string(i);
        if (!out.count(id)) ++o.lost;
        if (out[id].size() > raw[id].size()) ++o.stage_duplicates;
        if (raw[id].size() > 1) ++o.ingest_duplicates;
    }
    for (const auto& [seq, p] : out_payload) {
        if (auto at = p.find("|n="); at != std::string::npos)
            o.counts.push_back(std::stoull(p.substr(at + 3)));
    }
    std::cout << "[ info ] kill -9 x3 through a plugin: lost " << o.lost << ", stage duplicates "
              << o.stage_duplicates << ", ingest duplicates " << o.ingest_duplicates << "\n";
    return o;
}

TEST_F(plugin_host_test, Kill9ThroughStatelessPluginLosesAndDuplicatesNothing) {
    start_brokers();
    json inst = {{"e", {{"plugin", "egw_test_echo"}}}};
    json routes = json::array({{{"from", k_telemetry_filter}, {"via", {"e"}}, {"to", {"cloud"}}},
                               {{"from", k_telemetry_filter}, {"to", {"cloud"}}}});
    auto& gw = start_gateway(plugin_config(inst, routes));
    connect_cloud_subscriber();
    auto& dev = connect_device(32);
    const auto o = kill9_stream(*this, gw, dev, "/echo", [&] { return data_messages(); });
    EXPECT_EQ(o.lost, 0u);
    EXPECT_EQ(o.stage_duplicates, 0u);
}

// The counter's state commits with its outputs: across the kills its n values over all distinct
// output rows are exactly 1..M, each once (no reading counted twice or never).
TEST_F(plugin_host_test, Kill9ThroughStatefulPluginCountsEachInputExactlyOnce) {
    start_brokers();
    json inst = {{"c", {{"plugin", "egw_test_counter"}}}};
    json routes = json::array({{{"from", k_telemetry_filter}, {"via", {"c"}}, {"to", {"cloud"}}},
                               {{"from", k_telemetry_filter}, {"to", {"cloud"}}}});
    auto& gw = start_gateway(plugin_config(inst, routes));
    connect_cloud_subscriber();
    auto& dev = connect_device(32);
    auto o = kill9_stream(*this, gw, dev, "/count", [&] { return data_messages(); });
    EXPECT_EQ(o.lost, 0u);
    EXPECT_EQ(o.stage_duplicates, 0u);
    std::sort(o.counts.begin(), o.counts.end());
    ASSERT_FALSE(o.counts.empty());
    for (size_t i = 0; i < o.counts.size(); ++i) {
        ASSERT_EQ(o.counts[i], i + 1) << "the counter's state was lost or replayed twice";
    }
    // Each restart resumed from a committed snapshot (not from zero).
    const std::string log = gw.full_log();
    size_t restored = 0;
    for (auto at = log.find("c: restored its state"); at != std::string::npos;
         at = log.find("c: restored its state", at + 1)) {
        ++restored;
    }
    EXPECT_EQ(restored, 3u) << "restarts that restored the counter's state";
}

TEST_F(plugin_host_test, ReloadAddsAndChangesInstancesWithoutLosingRows) {
    start_brokers();
    json inst = {{"e", {{"plugin", "egw_test_echo"}, {"config", {{"suffix", "/one"}}}}}};
    json routes = json::array({{{"from", k_telemetry_filter}, {"via", {"e"}}, {"to", {"cloud"}}}});
    auto& gw = start_gateway(plugin_config(inst, routes));
    connect_cloud_subscriber();
    auto& dev = connect_device();
    dev.publish("devices/p/telemetry/x", "p:0");
    dev.flush();
    ASSERT_TRUE(wait_for_data_count(1, 20s));
    inst["e"]["config"]["suffix"] = "/two";
    inst["c"] = {{"plugin", "egw_test_counter"}};
    routes.push_back({{"from", k_telemetry_filter}, {"via", {"c"}}, {"to", {"cloud"}}});
    gw.set_config(plugin_config(inst, routes));
    ASSERT_TRUE(gw.reload());
    ASSERT_TRUE(gw.wait_until(
        [](const json& s) { return !json_at(s, "plugins/instances/c").is_null(); }, 10s));
    dev.publish("devices/p/telemetry/x", "p:1");
    dev.flush();
    ASSERT_TRUE(wait_for_data_count(3, 20s)) << gw.last_status();
    const auto t = by_topic();
    EXPECT_EQ(t.count(k_raw + "/one"), 1u);
    EXPECT_EQ(t.count(k_raw + "/two"), 1u);
    EXPECT_EQ(t.count(k_raw + "/count"), 1u);
}

// A message dead-lettered under one config is replayed through its route after a reload fixed
// the instance; another is dropped. Both leave the dead letters.
TEST_F(plugin_host_test, DeadLettersListReplayAndDrop) {
    start_brokers();
    json inst = {{"e", {{"plugin", "egw_test_echo"}, {"config", {{"fail", "p:5"}}}}}};
    json routes = json::array({{{"from", k_telemetry_filter}, {"via", {"e"}}, {"to", {"cloud"}}}});
    auto& gw = start_gateway(plugin_config(inst, routes));
    connect_cloud_subscriber();
    auto& dev = connect_device();
    for (const char* p : {"p:4", "p:5", "throw", "p:6"}) dev.publish("devices/p/telemetry/x", p);
    dev.flush();
    ASSERT_TRUE(wait_for_unique({"p:4", "p:6"}, 20s)) << gw.last_status();
    ASSERT_TRUE(gw.wait_until(
        [](const json& s) { return json_at(s, "plugins/instances/e/dead_letters") == 2; }, 10s));
    const std::string sock = (tmp_ / "data" / "control.sock").string();

    auto listed = run_gateway_cli({"dead-letters", "list", "--json", "-s", sock}, tmp_.path());
    ASSERT_EQ(listed.exit_code, 0) << listed.err;
    const json list = json::parse(listed.out);
    ASSERT_EQ(list["count"], 2);
    ASSERT_EQ(list["dead_letters"].size(), 2u);
    EXPECT_EQ(list["dead_letters"][0]["payload"], "p:5");
    EXPECT_EQ(list["dead_letters"][0]["kind"], "error");
    EXPECT_EQ(list["dead_letters"][0]["instance"], "e");
    EXPECT_EQ(list["dead_letters"][0]["topic"], "devices/p/telemetry/x");
    EXPECT_NE(list["dead_letters"][0]["reason"].get<std::string>().find("payload says error"),
              std::string::npos);
    const auto id5 = list["dead_letters"][0]["id"].get<int64_t>();
    const auto id_error = list["dead_letters"][1]["id"].get<int64_t>();

    // Fix the instance, then replay p:5 through its route.
    inst["e"]["config"]["fail"] = "never";
    gw.set_config(plugin_config(inst, routes));
    ASSERT_TRUE(gw.reload());
    ASSERT_TRUE(gw.wait_for_log("reloaded", 10s));
    auto replayed =
        run_gateway_cli({"dead-letters", "replay", std::to_string(id5), "-s", sock}, tmp_.path());
    ASSERT_EQ(replayed.exit_code, 0) << replayed.err;
    EXPECT_NE(replayed.out.find("\"replayed\":1"), std::string::npos) << replayed.out;
    ASSERT_TRUE(wait_for_unique({"p:4", "p:5", "p:6"}, 20s));

    auto dropped = run_gateway_cli({"dead-letters", "drop", std::to_string(id_error), "-s", sock},
                                   tmp_.path());
    ASSERT_EQ(dropped.exit_code, 0) << dropped.err;
    listed = run_gateway_cli({"dead-letters", "--json", "-s", sock}, tmp_.path());
    ASSERT_EQ(listed.exit_code, 0) << listed.err;
    EXPECT_EQ(json::parse(listed.out)["count"], 0);
    // Replaying an id that is gone is an error, not a silent success.
    auto again =
        run_gateway_cli({"dead-letters", "replay", std::to_string(id5), "-s", sock}, tmp_.path());
    EXPECT_EQ(again.exit_code, 1);
}

// The shipped window-stats, found by name in the build tree: its windows close by the stage's
// timer when no further reading comes, and across kill -9 every reading is in exactly one
// summary (counted over distinct output rows; ingest duplicates are counted as the raw stream
// shows them).
TEST_F(plugin_host_test, WindowStatsClosesByTimerAndCountsEachReadingOnceAcrossKill9) {
    start_brokers();
    json inst = {
        {"w", {{"plugin", "window-stats"}, {"config", {{"field", "temp"}, {"window_s", 1}}}}}};
    json routes = json::array({{{"from", k_telemetry_filter}, {"via", {"w"}}, {"to", {"cloud"}}},
                               {{"from", k_telemetry_filter}, {"to", {"cloud"}}}});
    auto& gw = start_gateway(plugin_config(inst, routes));
    connect_cloud_subscriber();
    auto& dev = connect_device(32);
    constexpr int k_count = 3000;
    std::jthread publisher([&] {
        for (int i = 0; i < k_count; ++i) {
            dev.publish("devices/p/telemetry/x", json{{"temp", 1.5}, {"i", i}}.dump());
            // Paced (about 3 s in all) so the stream spans several 1 s windows and the kills
            // fall inside open windows.
            if (i % 100 == 99) std::this_thread::sleep_for(100ms);
        }
        dev.flush(60s);
    });
    for (int point : {700, 1500, 2300}) {
        ASSERT_TRUE(poll_until([&] { return dev.acked() >= static_cast<size_t>(point); }, 30s));
        gw.kill9();
        ASSERT_TRUE(gw.start_and_wait_ready());
    }
    publisher.join();
    // raw distinct seqs, and summaries by distinct seq
    auto tally = [&] {
        std::set<uint64_t> raw;
        std::map<uint64_t, json> summaries;
        for (const auto& m : data_messages()) {
            auto seq = parse_seq(m.egw_seq);
            if (!seq) continue;
            if (m.topic == k_raw) raw.insert(*seq);
            if (m.topic == k_raw + "/window") summaries[*seq] = json::parse(m.payload);
        }
        int64_t counted = 0;
        for (const auto& [seq, j] : summaries) counted += j["count"].get<int64_t>();
        return std::tuple{raw, summaries, counted};
    };
    // The last window closes by the timer, about a second after the last reading.
    ASSERT_TRUE(poll_until(
        [&] {
            auto [raw, summaries, counted] = tally();
            return raw.size() >= static_cast<size_t>(k_count) &&
                   counted >= static_cast<int64_t>(raw.size());
        },
        60s, 100ms))
        << gw.last_status();
    auto [raw, summaries, counted] = tally();
    std::cout << "[ info ] window-stats across kill -9 x3: " << raw.size() << " raw rows, "
              << summaries.size() << " summaries counting " << counted << "\n";
    EXPECT_EQ(counted, static_cast<int64_t>(raw.size()));
    EXPECT_GE(summaries.size(), 2u);
    std::set<int64_t> starts;
    for (const auto& [seq, j] : summaries) {
        EXPECT_TRUE(starts.insert(j["window_start_ms"].get<int64_t>()).second)
            << "two summaries for the window starting at " << j["window_start_ms"];
        EXPECT_EQ(j["min"], 1.5);
        EXPECT_EQ(j["max"], 1.5);
    }
}

// The Lua and isolated runtimes behind the same stage: a segfault in an isolated child and a
// Lua script looping forever each cost one dead letter, and the messages around them flow.
TEST_F(plugin_host_test, SegfaultInIsolatedChildAndLuaLoopAreContained) {
    start_brokers();
    json inst = {
        {"risky", {{"plugin", "egw_fx_segfault"}, {"isolation", "process"}}},
        {"script", {{"plugin", std::string(EGW_TEST_SOURCE_PLUGIN_DIR) + "/loop_forever.lua"}}}};
    json routes = json::array(
        {{{"from", "devices/+/telemetry/iso"}, {"via", {"risky"}}, {"to", {"cloud"}}},
         {{"from", "devices/+/telemetry/lua"}, {"via", {"script"}}, {"to", {"cloud"}}}});
    auto& gw = start_gateway(plugin_config(inst, routes));
    connect_cloud_subscriber();
    auto& dev = connect_device();
    for (const char* p : {"p:0", "crash", "p:1"}) dev.publish("devices/p/telemetry/iso", p);
    for (const char* p : {"p:2", "loop", "p:3"}) dev.publish("devices/p/telemetry/lua", p);
    dev.flush();
    ASSERT_TRUE(wait_for_unique({"p:0", "p:1", "p:2", "p:3"}, 60s)) << gw.last_status();
    auto st = gw.wait_until(
        [](const json& s) {
            return json_at(s, "plugins/instances/risky/dead_letters") == 1 &&
                   json_at(s, "plugins/instances/script/dead_letters") == 1;
        },
        20s);
    ASSERT_TRUE(st) << gw.last_status();
    EXPECT_EQ(json_at(*st, "plugins/instances/risky/errors/crashed"), 1);
    EXPECT_EQ(json_at(*st, "plugins/instances/script/errors/timeout"), 1);
    EXPECT_GE(json_at(*st, "plugins/instances/risky/restarts").get<int>(), 1);
    EXPECT_TRUE(gw.running());
    const auto t = by_topic();
    EXPECT_EQ(t.at(cloud_topic("devices/p/telemetry/iso/out")).size(), 2u);
    EXPECT_EQ(t.at(cloud_topic("devices/p/telemetry/lua/out")).size(), 2u);
}

TEST_F(plugin_host_test, OlderMinorWithShortStructsWorks) {
    start_brokers();
    json inst = {{"o", {{"plugin", fixture("egw_test_old_minor")}}}};
    json routes = json::array({{{"from", k_telemetry_filter}, {"via", {"o"}}, {"to", {"cloud"}}}});
    auto& gw = start_gateway(plugin_config(inst, routes));
    connect_cloud_subscriber();
    auto& dev = connect_device();
    dev.publish("devices/p/telemetry/x", "p:7");
    dev.flush();
    ASSERT_TRUE(wait_for_unique({"p:7"}, 20s)) << gw.last_status();
    EXPECT_EQ(data_messages().front().topic, k_raw + "/echo");
}

class plugin_check_test : public gateway_test {
protected:
    command_result check(const json& instances, const json& routes) {
        make_brokers();
        json c = base_config();
        c["plugins"] = {{"dirs", json::array({EGW_TEST_PLUGIN_DIR, (tmp_ / "nope").string()})},
                        {"instances", instances}};
        c["routes"] = routes;
        const auto file = tmp_ / "gateway.json";
        write_file(file, c.dump(2));
        return run_gateway_cli({"--check-config", file.string()}, tmp_.path());
    }
    json via(const std::string& name) {
        return json::array({{{"from", k_telemetry_filter}, {"via", {name}}, {"to", {"cloud"}}}});
    }
};

TEST_F(plugin_check_test, GoodPluginConfigIsOkAndMissingDirIsAWarning) {
    const auto r = check({{"e", {{"plugin", "egw_test_echo"}}}}, via("e"));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("warning: plugins.dirs[1]"), std::string::npos) << r.err;
}

TEST_F(plugin_check_test, UnknownPluginIsReportedAtItsKey) {
    const auto r = check({{"e", {{"plugin", "no-such-plugin"}}}}, via("e"));
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find("plugins.instances.e.plugin"), std::string::npos) << r.err;
}

TEST_F(plugin_check_test, WrongAbiMajorIsRefusedNamingBothMajors) {
    const auto r = check({{"m", {{"plugin", fixture("egw_test_major")}}}}, via("m"));
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find("plugins.instances.m.plugin"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("ABI major 2"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("speaks major 1"), std::string::npos) << r.err;
}

TEST_F(plugin_check_test, RejectedConfigIsReportedWithThePluginsReason) {
    const auto r =
        check({{"e", {{"plugin", "egw_test_echo"}, {"config", {{"reject", true}}}}}}, via("e"));
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find("plugins.instances.e.config: reject: asked to"), std::string::npos)
        << r.err;
}

TEST_F(plugin_check_test, UnknownViaInstanceIsReportedAtItsIndex) {
    json routes =
        json::array({{{"from", k_telemetry_filter}, {"via", {"e", "ghost"}}, {"to", {"cloud"}}}});
    const auto r = check({{"e", {{"plugin", "egw_test_echo"}}}}, routes);
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find("routes[0].via[1]"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace egw::test
