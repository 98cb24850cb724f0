// SPDX-License-Identifier: Apache-2.0
//
// Message properties on buffered rows (storage/row_props.h), end to end through the real
// daemon and real Mosquitto brokers:
// - camera-motion (isolation: process) thumbnails and frames reach an MQTT 5 cloud broker with
//   Content Type image/jpeg and the user properties egw-episode / egw-role after egw-gateway /
//   egw-seq; its motion events with application/json; the dir sink's NDJSON lines carry
//   content_type;
// - a device's registry record is published retained: a subscriber that connects after it was
//   sent still gets it;
// - rows written by a gateway whose buffer file is at schema version 4 (before the props
//   column) still drain after the upgrade, in order and complete.

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "integration/gateway_test_fixture.h"
#include "support/camera_sim.h"

namespace egw::test {
namespace {

constexpr const char* k_cam_topic = "devices/cam1/camera/front";

std::string property(const received_message& m, const std::string& key) {
    for (const auto& [k, v] : m.user_properties)
        if (k == key) return v;
    return {};
}

// Runs `sql` on the SQLite file at `path`; returns SQLite's error text, empty on success.
std::string run_sql(const std::filesystem::path& path, const std::string& sql) {
    sqlite3* db = nullptr;
    std::string err;
    if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) {
        err = db ? sqlite3_errmsg(db) : "cannot open";
    } else {
        char* msg = nullptr;
        if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &msg) != SQLITE_OK) {
            err = msg ? msg : "error";
            sqlite3_free(msg);
        }
    }
    sqlite3_close(db);
    return err;
}

int64_t user_version(const std::filesystem::path& path) {
    sqlite3* db = nullptr;
    int64_t v = -1;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
        sqlite3_stmt* s = nullptr;
        if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, nullptr) == SQLITE_OK &&
            sqlite3_step(s) == SQLITE_ROW) {
            v = sqlite3_column_int64(s, 0);
        }
        sqlite3_finalize(s);
    }
    sqlite3_close(db);
    return v;
}

class row_props_test : public gateway_test {};

TEST_F(row_props_test, CameraOutputsReachAnMqtt5CloudWithContentTypeAndEpisodeProperties) {
    start_brokers();
    // One object crossing a still 320x240 scene from 1 s to 3 s (10 fps of scene time).
    camera_sim_options o;
    o.width = 320;
    o.height = 240;
    o.fps = 10;
    o.seed = 5;
    sim_object ob;
    ob.start_ms = 1000;
    ob.end_ms = 3000;
    ob.w = 30;
    ob.h = 40;
    ob.x0 = 20;
    ob.x1 = 260;
    ob.y0 = 80;
    ob.y1 = 180;
    ob.luma = 235;
    o.objects.push_back(ob);
    camera_sim sim(o);
    std::vector<std::string> frames;
    for (int i = 0; i < 50; ++i) frames.push_back(sim.next().jpeg);

    json c = base_config();
    c["local"]["subscribe"] = json::array({{{"filter", "devices/+/camera/#"}, {"qos", 1}}});
    c["plugins"] = {{"instances",
                     {{"motion",
                       {{"plugin", "camera-motion"},
                        {"isolation", "process"},
                        {"config",
                         {{"min_frames", 2},
                          {"end_after_s", 1},
                          {"keep_frames", "start+peak"},
                          {"thumbnail_width", 80},
                          {"heartbeat_s", 600}}}}}}}};
    const auto archive = tmp_ / "archive";
    c["sinks"]["bucket"] = {{"type", "dir"},
                            {"path", archive.string()},
                            {"compression", "none"},
                            {"batch", {{"max_rows", 1000}, {"max_delay_ms", 200}}}};
    c["routes"] = json::array(
        {{{"from", "devices/+/camera/#"}, {"via", {"motion"}}, {"to", {"cloud", "bucket"}}}});
    auto& gw = start_gateway(c);
    connect_cloud_subscriber();
    auto& dev = connect_device();
    for (const auto& f : frames) {
        dev.publish(k_cam_topic, f);
        std::this_thread::sleep_for(25ms);  // 4x the scene's frame rate, as camera_test does
    }
    dev.flush();

    const std::string base = cloud_topic(k_cam_topic);
    auto first_on = [&](const std::string& topic, const std::string& role = {}) {
        for (auto& m : data_messages())
            if (m.topic == topic && (role.empty() || property(m, "egw-role") == role)) return m;
        return received_message{};
    };
    // The end event, then the peak frame after it.
    ASSERT_TRUE(poll_until(
        [&] {
            for (auto& m : data_messages())
                if (m.topic == base + "/motion" && m.payload.find("\"end\"") != std::string::npos)
                    return true;
            return false;
        },
        60s))
        << gw.last_status();

    received_message start;
    json start_event;
    for (auto& m : data_messages()) {
        if (m.topic != base + "/motion") continue;
        const json j = json::parse(m.payload, nullptr, false);
        if (j.is_object() && j.value("event", "") == "start") {
            start = m;
            start_event = j;
            break;
        }
    }
    ASSERT_FALSE(start.topic.empty());
    const std::string episode = start_event.at("episode");
    EXPECT_EQ(start.content_type, "application/json");
    EXPECT_EQ(start.user_properties.size(), 2u) << "events carry only the gateway's own two";

    ASSERT_TRUE(poll_until([&] { return !first_on(base + "/thumbnail").topic.empty(); }, 10s));
    const received_message thumb = first_on(base + "/thumbnail");
    EXPECT_EQ(thumb.content_type, "image/jpeg");
    EXPECT_EQ(thumb.payload.substr(0, 3), "\xFF\xD8\xFF");
    // The gateway's own properties first, then the plugin's, in the plugin's order.
    ASSERT_EQ(thumb.user_properties.size(), 4u);
    EXPECT_EQ(thumb.user_properties[0].first, "egw-gateway");
    EXPECT_EQ(thumb.user_properties[1].first, "egw-seq");
    EXPECT_EQ(thumb.user_properties[2],
              (std::pair<std::string, std::string>{"egw-episode", episode}));
    EXPECT_EQ(thumb.user_properties[3], (std::pair<std::string, std::string>{"egw-role", "start"}));
    EXPECT_FALSE(thumb.retained);

    ASSERT_TRUE(poll_until([&] { return !first_on(base + "/frame", "start").topic.empty(); }, 10s));
    const received_message frame = first_on(base + "/frame", "start");
    EXPECT_EQ(frame.content_type, "image/jpeg");
    EXPECT_EQ(property(frame, "egw-episode"), episode);
    EXPECT_NE(std::find(frames.begin(), frames.end(), frame.payload), frames.end());
    // The peak frame, unless the peak was the start frame (then it is not sent again).
    const received_message peak = first_on(base + "/frame", "peak");
    if (!peak.topic.empty()) {
        EXPECT_EQ(property(peak, "egw-episode"), episode);
    }

    // The same rows in the dir sink's NDJSON: thumbnails and frames say image/jpeg.
    std::map<std::string, std::set<std::string>> types;  // topic suffix -> content types
    ASSERT_TRUE(poll_until(
        [&] {
            types.clear();
            std::error_code ec;
            for (auto it = std::filesystem::recursive_directory_iterator(archive, ec);
                 !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
                if (!it->is_regular_file() || it->path().extension() != ".ndjson") continue;
                std::ifstream in(it->path());
                for (std::string line; std::getline(in, line);) {
                    const json j = json::parse(line, nullptr, false);
                    if (!j.is_object()) continue;
                    const std::string t = j.value("topic", "");
                    types[t.substr(t.rfind('/'))].insert(j.value("content_type", "<none>"));
                }
            }
            return types.count("/thumbnail") && types.count("/frame") && types.count("/motion");
        },
        20s))
        << gw.last_status();
    EXPECT_EQ(types["/thumbnail"], std::set<std::string>{"image/jpeg"});
    EXPECT_EQ(types["/frame"], std::set<std::string>{"image/jpeg"});
    EXPECT_EQ(types["/motion"], std::set<std::string>{"application/json"});
}

// What MQTT 5 cannot carry (a value that is not UTF-8, a control character in the content type)
// and a user property posing as the gateway's egw-seq are left out and counted; the rows still
// go, and the sink keeps going. The same outputs through an MQTT 3.1.1 sink carry no properties.
TEST_F(row_props_test, BadPropertiesAreLeftOutCountedAndTheRowsStillGo) {
    start_brokers();
    const auto script = tmp_ / "props.lua";
    std::ofstream(script) << R"lua(
        function on_message(msg)
            emit { suffix = "/a", payload = "1", content_type = "text/plain",
                   properties = { bad = "\255" } }
            emit { suffix = "/b", payload = "2", properties = { ["egw-seq"] = "spoof" } }
            emit { suffix = "/c", payload = "3", content_type = "bad\1type",
                   properties = { ok = "fine" } }
        end
    )lua";
    json c = base_config();
    c["plugins"] = {{"instances", {{"props", {{"plugin", script.string()}}}}}};
    json v3 = c["sinks"]["cloud"];
    v3["client_id"] = "egw-it-uplink-v3";
    v3["mqtt_version"] = 3;
    v3["topic"] = "v3/{gateway_id}/{topic}";
    c["sinks"]["cloud3"] = v3;
    c["routes"] = json::array(
        {{{"from", k_telemetry_filter}, {"via", {"props"}}, {"to", {"cloud", "cloud3"}}}});
    auto& gw = start_gateway(c);
    auto& sub = connect_cloud_subscriber({"gateways/#", "v3/#"});
    auto& dev = connect_device();
    dev.publish("devices/d1/telemetry/t", "x");
    dev.publish("devices/d1/telemetry/t", "y");
    dev.flush();
    // Three outputs per input through each sink (status messages share gateways/#).
    const std::string base = cloud_topic("devices/d1/telemetry/t");
    std::map<std::string, received_message> v5, old;
    size_t outputs = 0;
    ASSERT_TRUE(poll_until(
        [&] {
            v5.clear();
            old.clear();
            outputs = 0;
            for (auto& m : sub.messages()) {
                if (m.topic.rfind("v3/", 0) == 0) {
                    old[m.topic.substr(m.topic.rfind('/'))] = m;
                    ++outputs;
                } else if (m.topic.rfind(base, 0) == 0) {
                    v5[m.topic.substr(m.topic.rfind('/'))] = m;
                    ++outputs;
                }
            }
            return outputs >= 12;
        },
        20s))
        << gw.last_status();
    ASSERT_EQ(v5.size(), 3u);
    EXPECT_EQ(v5["/a"].content_type, "text/plain");
    EXPECT_EQ(v5["/a"].user_properties.size(), 2u) << "the non-UTF-8 value is left out";
    EXPECT_EQ(v5["/b"].user_properties.size(), 2u);
    EXPECT_NE(v5["/b"].egw_seq.value_or("spoof"), "spoof") << "the gateway's egw-seq stands";
    EXPECT_TRUE(parse_seq(v5["/b"].egw_seq).has_value());
    EXPECT_EQ(v5["/c"].content_type, "") << "a control character is not a valid content type";
    EXPECT_EQ(property(v5["/c"], "ok"), "fine");
    ASSERT_EQ(old.size(), 3u);
    for (auto& [suffix, m] : old) {
        EXPECT_EQ(m.content_type, "") << suffix;
        EXPECT_TRUE(m.user_properties.empty()) << suffix;
    }
    // 3 left out per input, 2 inputs; the 3.1.1 sink drops properties by design, uncounted.
    auto st = gw.wait_until(
        [](const json& s) {
            return json_at(s, "sinks/cloud/properties_dropped") == 6 &&
                   json_at(s, "sinks/cloud/rows_waiting") == 0;
        },
        10s);
    ASSERT_TRUE(st) << gw.last_status();
    EXPECT_EQ(json_at(*st, "sinks/cloud3/properties_dropped"), 0);
    EXPECT_EQ(json_at(*st, "sinks/cloud/state"), "online");
    EXPECT_TRUE(gw.wait_for_log("not a valid MQTT 5 string", 1s));
}

TEST_F(row_props_test, ARegistryRecordIsRetainedSoALateSubscriberStillGetsIt) {
    start_brokers();
    auto& gw = start_gateway();
    connect_cloud_subscriber();
    test_publisher dev(local_->uri(), "row-props-dev-1");
    dev.connect();
    const json reg = {
        {"boot", "boot-1"},
        {"caps",
         {{"cores", 2},
          {"arch", "aarch64"},
          {"memory_mb", 512},
          {"accelerators", json::array()},
          {"benchmark", 10},
          {"bandwidth_kbps", 1000}}},
        {"tasks", json::array({{{"type", "resize"}, {"version", "1"}, {"max_concurrent", 1}}})},
        {"labels", json::object()}};
    const std::string record_topic = std::string("gateways/") + k_gateway_id + "/devices/dev-1";
    auto online = [&](const received_message& m) {
        if (m.topic != record_topic) return false;
        const json j = json::parse(m.payload, nullptr, false);
        return j.is_object() && j.value("state", "") == "online";
    };
    ASSERT_TRUE(
        gw.wait_until([](const json& s) { return json_at(s, "devices/connected") == true; }, 10s));
    // The devices connection may still be subscribing: a register it missed is sent again (the
    // same boot registers idempotently).
    bool seen = false;
    for (int attempt = 0; attempt < 4 && !seen; ++attempt) {
        dev.publish("devices/dev-1/register", reg.dump());
        dev.publish("devices/dev-1/status", json{{"state", "online"}, {"boot", "boot-1"}}.dump(), 1,
                    true);
        dev.flush();
        seen = cloud_sub_->wait_for(online, 5s).has_value();
    }
    ASSERT_TRUE(seen) << gw.last_status();
    ASSERT_TRUE(gw.wait_until(
        [](const json& s) { return json_at(s, "sinks/cloud/rows_waiting") == 0; }, 10s));
    // Delivered live to a subscriber already there: not flagged retained (MQTT sets the flag
    // only on delivery from the broker's store).

    // A consumer that comes later, with a clean session, still gets the latest record, as
    // retained.
    test_subscriber late(cloud_->uri(), "row-props-late",
                         subscriber_options{5, /*persistent_session=*/false, 10});
    late.connect({std::string("gateways/") + k_gateway_id + "/devices/+"});
    const auto m = late.wait_for(online, 10s);
    ASSERT_TRUE(m) << gw.last_status();
    EXPECT_TRUE(m->retained);
    EXPECT_EQ(json::parse(m->payload).value("id", ""), "dev-1");
    EXPECT_TRUE(m->egw_seq.has_value());
}

TEST_F(row_props_test, RowsWrittenBeforeTheMigrationStillDrainInOrder) {
    make_brokers();
    local_->start();  // the cloud stays away: rows wait in the buffer
    auto& gw = start_gateway();
    auto& dev = connect_device();
    constexpr size_t n = 40;
    for (size_t i = 1; i <= n; ++i)
        dev.publish("devices/d1/telemetry/t", numbered_payload("d1", i));
    dev.flush();
    ASSERT_TRUE(gw.wait_until(
        [&](const json& s) { return json_at(s, "sinks/cloud/rows_waiting") == n; }, 20s))
        << gw.last_status();
    ASSERT_EQ(gw.terminate().exit_code, 0);

    // Take the file back to what the previous release wrote: schema 4, no props column and
    // none of what later migrations (5 -> 6: the multipart records) created.
    const auto db = gw.data_dir() / "buffer.db";
    const int64_t version = user_version(db);
    ASSERT_EQ(version, 6);
    ASSERT_EQ(run_sql(db,
                      "DROP TABLE multipart_parts; DROP TABLE multipart_uploads; "
                      "ALTER TABLE messages DROP COLUMN props; PRAGMA user_version = 4;"),
              "");

    cloud_->start();
    connect_cloud_subscriber();
    ASSERT_TRUE(gateway_->start_and_wait_ready(20s)) << gateway_->log_since_start();
    std::set<std::string> expected;
    for (size_t i = 1; i <= n; ++i) expected.insert("d1:" + std::to_string(i));
    ASSERT_TRUE(wait_for_unique(expected, 30s)) << gateway_->last_status();
    EXPECT_EQ(user_version(db), version);
    // In order, with their original sequence numbers, and no properties of their own.
    uint64_t last_seq = 0;
    size_t next = 1;
    for (const auto& m : data_messages()) {
        const auto id = parse_numbered(m.payload);
        ASSERT_TRUE(id);
        if (id->second < next) continue;  // a re-sent copy
        EXPECT_EQ(id->second, next);
        ++next;
        const auto seq = parse_seq(m.egw_seq);
        ASSERT_TRUE(seq);
        EXPECT_GT(*seq, last_seq);
        last_seq = *seq;
        EXPECT_EQ(m.content_type, "");
        EXPECT_EQ(m.user_properties.size(), 2u);
        EXPECT_FALSE(m.retained);
    }
    EXPECT_LE(last_seq, n) << "the rows kept the sequence numbers they were written with";
    ASSERT_TRUE(gateway_->wait_until(
        [](const json& s) { return json_at(s, "sinks/cloud/rows_waiting") == 0; }, 10s));
}

}  // namespace
}  // namespace egw::test
