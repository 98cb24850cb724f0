// SPDX-License-Identifier: Apache-2.0
//
// camera-motion end to end (issue 11): the real daemon, real brokers, the shipped
// camera-motion.so in `isolation: process` (its default), frames from the simulated camera.
// A decoder crash in the child (the plugin's test hook) costs one dead-lettered frame and the
// following episodes are still detected; kill -9 during an episode neither duplicates its
// `start` nor ends it twice; with the cloud away for a whole episode, its events, thumbnail
// and frames all arrive afterwards, in order.
//
// Frames are rendered at 10 fps of scene time and published 4x faster than real time; the
// plugin's end_after_s is set so that the gap between the scene's episodes (several seconds of
// scene time) still ends an episode on the frames' ingest times.

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <set>
#include <thread>

#include "integration/gateway_test_fixture.h"
#include "support/camera_sim.h"

namespace egw::test {
namespace {

constexpr const char* k_cam_topic = "devices/cam1/camera/front";
constexpr const char* k_marker = "EGW-TEST-CRASH";

// A still 320x240 scene at 10 fps with objects crossing at [start_s, end_s) of scene time.
std::vector<std::string> render(const std::vector<std::pair<double, double>>& spans, double total_s,
                                std::vector<truth_episode>* truth = nullptr) {
    camera_sim_options o;
    o.width = 320;
    o.height = 240;
    o.fps = 10;
    o.seed = 11;
    int k = 0;
    for (auto [a, b] : spans) {
        sim_object ob;
        ob.start_ms = static_cast<int64_t>(a * 1000);
        ob.end_ms = static_cast<int64_t>(b * 1000);
        ob.h = 40;
        ob.w = 30;
        ob.x0 = 20 + 40 * k;
        ob.x1 = 260 - 30 * k;
        ob.y0 = 80;
        ob.y1 = 180;
        ob.luma = k % 2 ? 25 : 235;
        o.objects.push_back(ob);
        ++k;
    }
    camera_sim sim(o);
    const auto n = static_cast<size_t>(total_s * o.fps);
    std::vector<std::string> frames;
    for (size_t i = 0; i < n; ++i) frames.push_back(sim.next().jpeg);
    if (truth) *truth = sim.truth(n);
    return frames;
}

class camera_test : public gateway_test {
protected:
    void TearDown() override {
        gateway_test::TearDown();
        ::unsetenv("EGW_CAMERA_MOTION_CRASH_MARKER");
    }

    json camera_config(double end_after_s) {
        json c = base_config();
        c["local"]["subscribe"] = json::array({{{"filter", "devices/+/camera/#"}, {"qos", 1}}});
        // The default isolation of camera-motion is "process"; said here to make it visible.
        c["plugins"] = {{"instances",
                         {{"motion",
                           {{"plugin", "camera-motion"},
                            {"isolation", "process"},
                            {"config",
                             {{"min_frames", 2},
                              {"end_after_s", end_after_s},
                              {"keep_frames", "start+peak"},
                              {"thumbnail_width", 80},
                              {"heartbeat_s", 600}}}}}}}};
        c["routes"] =
            json::array({{{"from", "devices/+/camera/#"}, {"via", {"motion"}}, {"to", {"cloud"}}}});
        return c;
    }

    // Publishes frames [from, to) 4x faster than their 10 fps.
    static void publish(test_publisher& dev, const std::vector<std::string>& frames, size_t from,
                        size_t to) {
        for (size_t i = from; i < to && i < frames.size(); ++i) {
            dev.publish(k_cam_topic, frames[i]);
            std::this_thread::sleep_for(25ms);
        }
        dev.flush();
    }

    // The motion events at the cloud, in arrival order.
    std::vector<std::pair<received_message, json>> events(const std::string& kind) const {
        std::vector<std::pair<received_message, json>> out;
        for (auto& m : data_messages()) {
            if (m.topic != cloud_topic(std::string(k_cam_topic) + "/motion")) continue;
            auto j = json::parse(m.payload, nullptr, false);
            if (j.is_object() && j.value("event", "") == kind) out.emplace_back(m, j);
        }
        return out;
    }
    // Distinct outputs (by egw-seq: a re-sent output keeps its seq, a duplicate would not).
    size_t distinct(const std::vector<std::pair<received_message, json>>& evs) const {
        std::set<std::string> seqs;
        for (auto& [m, j] : evs) seqs.insert(m.egw_seq.value_or(""));
        return seqs.size();
    }
    bool wait_events(const std::string& kind, size_t n, std::chrono::milliseconds t) const {
        return poll_until([&] { return distinct(events(kind)) >= n; }, t, 50ms);
    }
};

TEST_F(camera_test, DecoderCrashInIsolationDeadLettersTheFrameAndDetectionGoesOn) {
    ::setenv("EGW_CAMERA_MOTION_CRASH_MARKER", k_marker, 1);
    start_brokers();
    std::vector<truth_episode> truth;
    // Episodes at 2-4 s, 9-11 s and 16-18 s of scene time; the crash frame comes at 6.5 s.
    const auto frames = render({{2, 4}, {9, 11}, {16, 18}}, 22, &truth);
    ASSERT_EQ(truth.size(), 3u);
    auto& gw = start_gateway(camera_config(1));
    connect_cloud_subscriber();
    auto& dev = connect_device();
    publish(dev, frames, 0, 65);
    // Starts like a JPEG after the marker, so only the hook (not the JPEG checks) rejects it.
    dev.publish(k_cam_topic, std::string(k_marker) + "\xFF\xD8\xFF\xE0 crash here");
    publish(dev, frames, 65, frames.size());

    ASSERT_TRUE(wait_events("start", 3, 60s)) << gw.last_status();
    ASSERT_TRUE(wait_events("end", 3, 30s)) << gw.last_status();
    auto st = gw.wait_until(
        [](const json& s) { return json_at(s, "plugins/instances/motion/dead_letters") == 1; },
        20s);
    ASSERT_TRUE(st) << gw.last_status();
    EXPECT_FALSE(gw.exit_code().has_value()) << "the gateway died";
    // The crashing frame was tried 3 times (3 child deaths, each counted) before it was
    // dead-lettered.
    EXPECT_EQ(json_at(*st, "plugins/instances/motion/restarts"), 3);
    EXPECT_EQ(json_at(*st, "plugins/stage/rows_waiting"), 0);
    EXPECT_TRUE(gw.wait_for_log("Segmentation fault", 1s)) << gw.log_since_start();
    // Each true episode detected once: the starts' bboxes lie in the true episodes' order.
    const auto starts = events("start");
    std::set<std::string> ids;
    for (auto& [m, j] : starts) ids.insert(j.at("episode").get<std::string>());
    EXPECT_EQ(ids.size(), 3u);
    // The dead letter is the marker frame, with the crash as its reason.
    const std::string sock = (tmp_ / "data" / "control.sock").string();
    const auto dl = run_gateway_cli({"dead-letters", "list", "--json", "-s", sock}, tmp_.path());
    ASSERT_EQ(dl.exit_code, 0) << dl.err;
    const json list = json::parse(dl.out);
    ASSERT_EQ(list["count"], 1);
    EXPECT_EQ(list["dead_letters"][0]["instance"], "motion");
    EXPECT_EQ(list["dead_letters"][0]["topic"], k_cam_topic);
    EXPECT_EQ(list["dead_letters"][0]["kind"], "crashed") << list.dump();
}

TEST_F(camera_test, Kill9DuringAnEpisodeNeitherDuplicatesItsStartNorEndsItTwice) {
    start_brokers();
    // One episode from 2 to 8 s of scene time; 14 s in all.
    const auto frames = render({{2, 8}}, 14);
    // end_after_s 4: frames queued at the broker while the gateway is down carry their ingest
    // time after the restart, so the restart does not end the episode early.
    auto& gw = start_gateway(camera_config(4));
    connect_cloud_subscriber();
    auto& dev = connect_device();
    std::atomic<size_t> next{0};
    std::thread cam([&] {
        for (size_t i = 0; i < frames.size(); ++i, ++next) {
            dev.publish(k_cam_topic, frames[i]);
            std::this_thread::sleep_for(25ms);
        }
        dev.flush();
    });
    // Kill while the object is in view, once the start has reached the cloud.
    const bool started = wait_events("start", 1, 30s);
    if (started) gw.kill9();
    const size_t killed_at = next.load();
    if (started) gw.start_and_wait_ready(30s);
    cam.join();
    ASSERT_TRUE(started) << gw.last_status();
    EXPECT_LT(killed_at, size_t{80}) << "the kill came after the object left the scene";
    ASSERT_TRUE(wait_events("end", 1, 30s)) << gw.last_status();
    // Let any duplicate arrive before counting: the stage is drained and the episode ended.
    ASSERT_TRUE(gw.wait_until(
        [](const json& s) { return json_at(s, "plugins/stage/rows_waiting") == 0; }, 20s));
    std::this_thread::sleep_for(500ms);  // a last in-flight publish (bounded, not a wait for state)
    const auto starts = events("start"), ends = events("end");
    EXPECT_EQ(distinct(starts), 1u);
    EXPECT_EQ(distinct(ends), 1u);
    std::set<std::string> ids;
    for (auto& [m, j] : starts) ids.insert(j.at("episode").get<std::string>());
    for (auto& [m, j] : ends) ids.insert(j.at("episode").get<std::string>());
    EXPECT_EQ(ids.size(), 1u) << "the end belongs to the one start";
    ASSERT_FALSE(ends.empty());
    EXPECT_GE(ends.front().second.at("duration_ms").get<int64_t>(), 1000);
}

TEST_F(camera_test, CloudAwayForAWholeEpisodeDeliversEverythingAfterwardsInOrder) {
    start_brokers();
    const auto frames = render({{2, 5}}, 9);
    auto& gw = start_gateway(camera_config(1));
    connect_cloud_subscriber();  // persistent session: the broker keeps it across the outage
    auto& dev = connect_device();
    cloud_->stop();
    ASSERT_TRUE(wait_sink_state("offline", 20s)) << gw.last_status();
    publish(dev, frames, 0, frames.size());
    // The episode ended at the gateway: start, thumbnail, start frame, end, peak frame wait.
    auto st = gw.wait_until(
        [](const json& s) {
            return json_at(s, "plugins/stage/rows_waiting") == 0 &&
                   json_at(s, "sinks/cloud/rows_waiting").get<int64_t>() >= 5 &&
                   json_at(s, "plugins/instances/motion/out").get<int64_t>() >= 5;
        },
        30s);
    ASSERT_TRUE(st) << gw.last_status();
    EXPECT_EQ(data_messages().size(), 0u);
    cloud_->start();
    ASSERT_TRUE(wait_events("end", 1, 30s)) << gw.last_status();
    ASSERT_TRUE(wait_sink_state("online", 20s)) << gw.last_status();

    // In arrival order (first arrivals; a re-sent copy does not reorder): start, thumbnail,
    // start frame, ..., end, peak frame (the peak is not the start frame of a moving object).
    const std::string base = cloud_topic(k_cam_topic);
    std::vector<std::string> kinds;
    std::set<std::string> seen;
    for (auto& m : data_messages()) {
        if (!seen.insert(m.egw_seq.value_or("")).second) continue;
        if (m.topic == base + "/motion") {
            auto j = json::parse(m.payload, nullptr, false);
            const auto e = j.value("event", "");
            if (e != "heartbeat") kinds.push_back(e);
        } else if (m.topic == base + "/thumbnail") {
            kinds.push_back("thumbnail");
            EXPECT_EQ(m.payload.substr(0, 3), "\xFF\xD8\xFF");
        } else if (m.topic == base + "/frame") {
            kinds.push_back("frame");
            EXPECT_EQ(m.payload.substr(0, 3), "\xFF\xD8\xFF");
        }
    }
    // The peak frame follows the end unless the peak was the start frame (then it is not sent
    // again).
    std::vector<std::string> want = {"start", "thumbnail", "frame", "end", "frame"};
    if (kinds.size() == 4) want.pop_back();
    EXPECT_EQ(kinds, want);
    // The start frame is byte for byte one of the camera's frames.
    for (auto& m : data_messages()) {
        if (m.topic == base + "/frame") {
            EXPECT_NE(std::find(frames.begin(), frames.end(), m.payload), frames.end());
        }
    }
}

}  // namespace
}  // namespace egw::test
