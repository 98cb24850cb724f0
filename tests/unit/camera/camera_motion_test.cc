// SPDX-License-Identifier: Apache-2.0
//
// The real camera-motion.so, loaded with dlopen through mini_host, against the simulated
// camera's ground truth: detection, no events for lighting, noise and distractors, hostile
// frames, snapshot/restore mid-episode, keep_frames, heartbeats and the wall-clock timer.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>

#include <algorithm>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "jpeg_io.h"
#include "mini_host.h"
#include "support/camera_sim.h"

namespace egw::test {
namespace {

using nlohmann::json;

constexpr int64_t base_ms = 1'700'000'000'000;
constexpr uint64_t base_seq = 1000;
const std::string cam_topic = "devices/cam1/camera/front";

struct clip {
    camera_sim_options opts;
    std::vector<sim_frame> frames;
    std::vector<truth_episode> truth;
    int64_t frame_ms = 500;
};

clip make_clip(camera_sim_options o, int64_t duration_ms) {
    clip c;
    c.opts = o;
    camera_sim sim(o);
    const auto n = static_cast<size_t>(duration_ms * o.fps / 1000);
    for (size_t i = 0; i < n; ++i) c.frames.push_back(sim.next());
    c.truth = sim.truth(n);
    c.frame_ms = static_cast<int64_t>(1000 / o.fps);
    return c;
}

// Three minutes of 640x480 at 2 fps with six objects crossing.
const clip& episodes_clip() {
    static const clip c = make_clip(camera_sim::scenario(640, 480, 2, 180'000, 6, 7), 180'000);
    return c;
}

// Three minutes with no object at all: noise, distractors, steps and ramps only.
const clip& still_clip() {
    static const clip c = [] {
        auto o = camera_sim::scenario(640, 480, 2, 180'000, 0, 11);
        o.noise_sigma = 5;
        o.brightness = {{30'000, +45, 0},
                        {60'000, -45, 0},
                        {90'000, -40, 0},
                        {100'000, +30, 30'000},
                        {150'000, +50, 0}};
        o.distractor_count = 4;
        return make_clip(o, 180'000);
    }();
    return c;
}

std::string config(const std::string& extra = "") {
    std::string c =
        R"({"scale_height": 120, "pixel_threshold": 30, "min_area_pct": 0.5,
            "relearn_above_pct": 80, "min_frames": 2, "end_after_s": 3,
            "thumbnail_width": 240, "keep_frames": "start+peak", "heartbeat_s": 60)";
    if (!extra.empty()) c += ", " + extra;
    return c + "}";
}

// Feeds frames [from, to) of a clip; frame i has seq base_seq + 2i (odd seqs are free for
// hostile frames in between).
void feed(mini_host& h, const clip& c, size_t from, size_t to, std::vector<host_output>& out,
          const std::string& topic = cam_topic) {
    for (size_t i = from; i < to && i < c.frames.size(); ++i) {
        ASSERT_EQ(
            h.message(topic, c.frames[i].jpeg, base_ms + c.frames[i].t_ms, base_seq + 2 * i, out),
            EGW_OK)
            << "frame " << i;
    }
}

std::vector<json> motion_events(const std::vector<host_output>& out, const std::string& event,
                                const std::string& topic = cam_topic) {
    std::vector<json> v;
    for (const auto& o : out) {
        if (o.topic != topic + "/motion") continue;
        json j = json::parse(o.payload);
        if (j["event"] == event) v.push_back(j);
    }
    return v;
}

struct detected {
    std::string id;
    size_t start_frame = 0;
    size_t last_frame = 0;
    box start_bbox{};
    bool ended = false;
};

std::vector<detected> detections(const std::vector<host_output>& out, int64_t frame_ms,
                                 const std::string& topic = cam_topic) {
    std::vector<detected> v;
    std::map<std::string, size_t> by_id;
    for (const auto& j : motion_events(out, "start", topic)) {
        detected d;
        d.id = j["episode"];
        d.start_frame = static_cast<size_t>((j["frame_ts_ms"].get<int64_t>() - base_ms) / frame_ms);
        d.last_frame = d.start_frame;
        d.start_bbox = j["bbox"].get<box>();
        by_id[d.id] = v.size();
        v.push_back(d);
    }
    for (const auto& j : motion_events(out, "end", topic)) {
        auto it = by_id.find(j["episode"]);
        if (it == by_id.end()) {
            ADD_FAILURE() << "end without start: " << j.dump();
            continue;
        }
        v[it->second].ended = true;
        v[it->second].last_frame =
            static_cast<size_t>((j["frame_ts_ms"].get<int64_t>() - base_ms) / frame_ms);
    }
    return v;
}

// Closes whatever is open, as the wall-clock timer would a long time later.
void finish(mini_host& h, std::vector<host_output>& out) {
    ASSERT_EQ(h.timer(base_ms * 2, out), EGW_OK);
}

struct score {
    size_t truth = 0, found = 0, detected = 0, unmatched = 0;
};

// Matches detections to the truth (spans overlap) and checks start and IoU per true episode.
score check_against_truth(const clip& c, const std::vector<detected>& det) {
    score s;
    s.truth = c.truth.size();
    s.detected = det.size();
    std::vector<bool> used(det.size(), false);
    camera_sim sim(c.opts);
    for (const auto& t : c.truth) {
        bool found = false;
        for (size_t i = 0; i < det.size(); ++i) {
            const auto& d = det[i];
            if (d.start_frame > t.last_frame || d.last_frame < t.first_frame) continue;
            used[i] = true;
            if (found) continue;
            found = true;
            EXPECT_LE(d.start_frame > t.first_frame ? d.start_frame - t.first_frame
                                                    : t.first_frame - d.start_frame,
                      2u)
                << "episode " << d.id << " starts at frame " << d.start_frame << ", truth at "
                << t.first_frame;
            const box truth_box = sim.bbox_at(d.start_frame);
            EXPECT_GE(iou(d.start_bbox, truth_box), 0.5)
                << "episode " << d.id << " bbox " << json(d.start_bbox).dump() << " truth "
                << json(truth_box).dump();
        }
        EXPECT_TRUE(found) << "true episode at frames " << t.first_frame << ".." << t.last_frame
                           << " not detected";
        s.found += found;
    }
    for (bool u : used) s.unmatched += !u;
    return s;
}

TEST(camera_motion, loads_as_a_heavy_stateful_plugin) {
    mini_host h(EGW_CAMERA_MOTION_SO);
    EXPECT_STREQ(h.plugin().name, "camera-motion");
    EXPECT_TRUE(h.plugin().flags & EGW_PLUGIN_HEAVY);
    EXPECT_NE(h.plugin().on_snapshot, nullptr);
    EXPECT_NE(h.plugin().on_restore, nullptr);
    EXPECT_NE(h.plugin().on_timer, nullptr);
    std::string err;
    EXPECT_TRUE(h.create("{}", &err)) << err;
    EXPECT_TRUE(h.create(config(R"("max_pixels": 8294400)"), &err)) << err;
}

TEST(camera_motion, config_errors_name_the_key) {
    mini_host h(EGW_CAMERA_MOTION_SO);
    const std::vector<std::pair<std::string, std::string>> bad = {
        {R"({"scale_height": 2})", "scale_height:"},
        {R"({"scale_height": "120"})", "scale_height:"},
        {R"({"pixel_threshold": 0})", "pixel_threshold:"},
        {R"({"pixel_threshold": 1.5})", "pixel_threshold:"},
        {R"({"min_area_pct": -1})", "min_area_pct:"},
        {R"({"min_area_pct": 0})", "min_area_pct:"},
        {R"({"relearn_above_pct": 101})", "relearn_above_pct:"},
        {R"({"min_frames": 0})", "min_frames:"},
        {R"({"end_after_s": 0})", "end_after_s:"},
        {R"({"end_after_s": "3"})", "end_after_s:"},
        {R"({"thumbnail_width": 4})", "thumbnail_width:"},
        {R"({"keep_frames": "peak"})", "keep_frames:"},
        {R"({"keep_frames": 1})", "keep_frames:"},
        {R"({"heartbeat_s": -5})", "heartbeat_s:"},
        {R"({"max_pixels": 0})", "max_pixels:"},
        {R"({"scale_hieght": 120})", "scale_hieght:"},
        {R"([1, 2])", "config:"},
        {R"({"min_frames": )", "config:"},
    };
    for (const auto& [cfg, prefix] : bad) {
        std::string err;
        EXPECT_FALSE(h.create(cfg, &err)) << cfg;
        EXPECT_EQ(err.rfind(prefix, 0), 0u) << cfg << " -> " << err;
    }
}

TEST(camera_motion, detects_every_true_episode_with_start_and_bbox) {
    const clip& c = episodes_clip();
    ASSERT_EQ(c.truth.size(), 6u);
    mini_host h(EGW_CAMERA_MOTION_SO);
    ASSERT_TRUE(h.create(config()));
    std::vector<host_output> out;
    feed(h, c, 0, c.frames.size(), out);
    finish(h, out);
    const auto det = detections(out, c.frame_ms);
    const score s = check_against_truth(c, det);
    EXPECT_EQ(s.found, s.truth);
    EXPECT_EQ(s.unmatched, 0u) << "precision " << (s.detected - s.unmatched) << "/" << s.detected;
    for (const auto& d : det) EXPECT_TRUE(d.ended) << d.id;
    // Each start is followed by its thumbnail (before the next start).
    std::string open;
    size_t thumbs = 0;
    for (const auto& o : out) {
        if (o.topic == cam_topic + "/motion") {
            const json j = json::parse(o.payload);
            EXPECT_EQ(o.content_type, "application/json");
            if (j["event"] == "start") {
                EXPECT_TRUE(open.empty()) << "start before the previous thumbnail";
                open = j["episode"];
            }
        } else if (o.topic == cam_topic + "/thumbnail") {
            EXPECT_EQ(o.content_type, "image/jpeg");
            EXPECT_EQ(o.property("egw-episode"), open);
            EXPECT_EQ(o.property("egw-role"), "start");
            open.clear();
            ++thumbs;
        }
    }
    EXPECT_EQ(thumbs, det.size());
}

TEST(camera_motion, no_event_for_brightness_noise_or_small_distractors) {
    const clip& c = still_clip();
    ASSERT_TRUE(c.truth.empty());
    mini_host h(EGW_CAMERA_MOTION_SO);
    ASSERT_TRUE(h.create(config(R"("heartbeat_s": 30)")));
    std::vector<host_output> out;
    feed(h, c, 0, c.frames.size(), out);
    finish(h, out);
    for (const auto& o : out) {
        ASSERT_EQ(o.topic, cam_topic + "/motion");
        const json j = json::parse(o.payload);
        EXPECT_EQ(j["event"], "heartbeat") << o.payload;
    }
    // One with the first frame, then every 30 s of ingest time, then the stale one.
    EXPECT_EQ(motion_events(out, "heartbeat").size(), 180 / 30 + 1);
}

// A short, printable description of an output (JSON as is, JPEG by size and hash).
std::string summary(const host_output& o) {
    if (o.content_type == "application/json") return o.topic + " " + o.payload;
    return o.topic + " " + std::to_string(o.payload.size()) + " bytes #" +
           std::to_string(std::hash<std::string>{}(o.payload) % 100000) + " " +
           o.property("egw-role");
}

std::string patch_sof(std::string jpeg, int w, int h) {
    for (size_t i = 2; i + 9 < jpeg.size(); ++i) {
        const auto m = static_cast<uint8_t>(jpeg[i + 1]);
        if (static_cast<uint8_t>(jpeg[i]) == 0xFF && (m == 0xC0 || m == 0xC2)) {
            jpeg[i + 5] = static_cast<char>(h >> 8);
            jpeg[i + 6] = static_cast<char>(h & 0xFF);
            jpeg[i + 7] = static_cast<char>(w >> 8);
            jpeg[i + 8] = static_cast<char>(w & 0xFF);
            return jpeg;
        }
    }
    ADD_FAILURE() << "no SOF marker";
    return jpeg;
}

std::string random_bytes(size_t n, uint32_t seed) {
    std::mt19937_64 r(seed);
    std::string s(n, '\0');
    for (size_t i = 0; i + 8 <= n; i += 8) {
        const uint64_t v = r();
        std::memcpy(&s[i], &v, 8);
    }
    return s;
}

TEST(camera_motion, hostile_frames_are_counted_skipped_and_keep_the_camera_state) {
    const clip& c = episodes_clip();
    const std::string& good = c.frames[0].jpeg;
    std::string big_garbage = random_bytes(50u << 20, 1);
    big_garbage[0] = 'x';
    std::string big_jpeg_garbage = random_bytes(50u << 20, 2);
    big_jpeg_garbage.replace(0, 4, "\xFF\xD8\xFF\xE0");
    struct hostile {
        std::string bytes;
        const char* kind;
    };
    const std::vector<hostile> kinds = {
        {"", "not_jpeg"},
        {"hello, camera", "not_jpeg"},
        {"\x89PNG\r\n\x1a\n", "not_jpeg"},
        {patch_sof(good, 60000, 60000), "too_large"},       // a decompression bomb's header
        {patch_sof(good, 4000, 3000), "too_large"},         // 12 Mpx > max_pixels 3840x2160
        {good.substr(0, good.size() / 2), "decode_error"},  // truncated
        {good.substr(0, 200), "decode_error"},
        {"\xFF\xD8\xFF\xD9", "decode_error"},
    };
    // Clean run and a run with hostile frames between the frames (odd seqs), heartbeats every
    // frame so the counters are visible.
    mini_host clean(EGW_CAMERA_MOTION_SO), dirty(EGW_CAMERA_MOTION_SO);
    ASSERT_TRUE(clean.create(config(R"("heartbeat_s": 0.001)")));
    ASSERT_TRUE(dirty.create(config(R"("heartbeat_s": 0.001)")));
    std::vector<host_output> clean_out, dirty_out;
    std::map<std::string, uint64_t> expected;
    for (size_t i = 0; i < c.frames.size(); ++i) {
        ASSERT_EQ(clean.message(cam_topic, c.frames[i].jpeg, base_ms + c.frames[i].t_ms,
                                base_seq + 2 * i, clean_out),
                  EGW_OK);
        ASSERT_EQ(dirty.message(cam_topic, c.frames[i].jpeg, base_ms + c.frames[i].t_ms,
                                base_seq + 2 * i, dirty_out),
                  EGW_OK);
        const int64_t ts = base_ms + c.frames[i].t_ms + 1;
        if (i % 3 == 0) {
            const hostile& x = kinds[(i / 3) % kinds.size()];
            ASSERT_EQ(dirty.message(cam_topic, x.bytes, ts, base_seq + 2 * i + 1, dirty_out),
                      EGW_OK);
            ++expected[x.kind];
        }
        if (i == 100) {
            ASSERT_EQ(dirty.message(cam_topic, big_garbage, ts, base_seq + 2 * i + 1, dirty_out),
                      EGW_OK);
            ++expected["not_jpeg"];
        }
        if (i == 101) {
            ASSERT_EQ(
                dirty.message(cam_topic, big_jpeg_garbage, ts, base_seq + 2 * i + 1, dirty_out),
                EGW_OK);
            ++expected["decode_error"];
        }
    }
    finish(clean, clean_out);
    finish(dirty, dirty_out);
    const auto strip = [](const std::vector<host_output>& v) {
        std::vector<std::string> s;
        for (const auto& o : v) {
            if (o.payload.find("\"heartbeat\"") == std::string::npos) s.push_back(summary(o));
        }
        return s;
    };
    EXPECT_EQ(strip(clean_out), strip(dirty_out));
    EXPECT_EQ(motion_events(dirty_out, "start").size(), c.truth.size());
    const auto hbs = motion_events(dirty_out, "heartbeat");
    ASSERT_FALSE(hbs.empty());
    json last;
    for (const auto& j : hbs) {
        if (!j.contains("stale")) last = j;
    }
    EXPECT_EQ(last["rejected"]["not_jpeg"], expected["not_jpeg"]);
    EXPECT_EQ(last["rejected"]["too_large"], expected["too_large"]);
    EXPECT_EQ(last["rejected"]["decode_error"], expected["decode_error"]);
    bool logged = false;
    for (const auto& l : dirty.logs())
        logged |= l.find("rejected frames") != std::string::npos ||
                  l.find("skipped") != std::string::npos;
    EXPECT_TRUE(logged);
}

TEST(camera_motion, test_crash_marker_crashes_only_when_set) {
    // Without the variable the marker is just a frame that is not a JPEG.
    {
        mini_host h(EGW_CAMERA_MOTION_SO);
        ASSERT_TRUE(h.create(config()));
        std::vector<host_output> out;
        EXPECT_EQ(h.message(cam_topic, "EGW-CRASH", base_ms, 1, out), EGW_OK);
    }
    // With it, the process dies of SIGSEGV, as a decoder bug would kill it.
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        setenv("EGW_CAMERA_MOTION_CRASH_MARKER", "EGW-CRASH", 1);
        mini_host h(EGW_CAMERA_MOTION_SO);
        std::vector<host_output> out;
        if (!h.create(config())) _exit(3);
        h.message(cam_topic, "EGW-CRASH and more", base_ms, 1, out);
        _exit(0);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    // Under ASan its SEGV handler reports and exits with 1 instead of the signal.
    if (WIFSIGNALED(status)) {
        EXPECT_EQ(WTERMSIG(status), SIGSEGV);
    } else {
        ASSERT_TRUE(WIFEXITED(status));
        EXPECT_NE(WEXITSTATUS(status), 0) << "the marker did not crash";
        EXPECT_NE(WEXITSTATUS(status), 3) << "create failed";
    }
}

TEST(camera_motion, thousands_of_mutated_jpegs_never_crash_and_are_counted) {
    const clip& c = episodes_clip();
    mini_host h(EGW_CAMERA_MOTION_SO);
    ASSERT_TRUE(h.create(config(R"("heartbeat_s": 0.001)")));
    std::vector<host_output> out;
    const std::string fuzz_topic = "devices/fuzz/camera/x";
    std::mt19937 r(1234);
    const size_t n = 3000;
    for (size_t i = 0; i < n; ++i) {
        std::string m = c.frames[i % 40].jpeg;
        switch (r() % 5) {
            case 0:  // bit flips anywhere
                for (int k = 1 + r() % 16; k > 0; --k)
                    m[r() % m.size()] ^= static_cast<char>(1 << (r() % 8));
                break;
            case 1:  // flips in the headers (first 700 bytes: DQT, SOF, DHT, SOS)
                for (int k = 1 + r() % 8; k > 0; --k)
                    m[r() % std::min<size_t>(700, m.size())] = static_cast<char>(r());
                break;
            case 2:  // truncation
                m.resize(r() % m.size());
                break;
            case 3: {  // a chunk repeated
                const size_t at = r() % m.size(), len = std::min<size_t>(r() % 4096, m.size() - at);
                m.insert(r() % m.size(), m.substr(at, len));
                break;
            }
            default:  // huge dimensions from the header
                m = patch_sof(m, 1 + r() % 65535, 1 + r() % 65535);
        }
        ASSERT_EQ(h.message(fuzz_topic, m, base_ms + static_cast<int64_t>(i) * 500, i, out), EGW_OK)
            << "mutation " << i;
    }
    uint64_t frames = 0;
    json last;
    for (const auto& j : motion_events(out, "heartbeat", fuzz_topic)) {
        frames += j["frames"].get<uint64_t>();
        last = j;
    }
    EXPECT_EQ(frames, n);
    EXPECT_GT(last["rejected"]["decode_error"].get<uint64_t>(), 100u);
    EXPECT_GT(last["rejected"]["too_large"].get<uint64_t>(), 100u);
    // The instance still works for another camera.
    std::vector<host_output> out2;
    feed(h, c, 0, c.frames.size(), out2);
    finish(h, out2);
    const score s = check_against_truth(c, detections(out2, c.frame_ms));
    EXPECT_EQ(s.found, s.truth);
}

TEST(camera_motion, snapshot_and_restore_mid_episode_neither_restarts_nor_duplicates) {
    const clip& c = episodes_clip();
    mini_host clean(EGW_CAMERA_MOTION_SO);
    ASSERT_TRUE(clean.create(config()));
    std::vector<host_output> expected;
    feed(clean, c, 0, c.frames.size(), expected);
    finish(clean, expected);
    const truth_episode& t = c.truth[1];
    for (size_t k : {t.first_frame, t.first_frame + 1, t.first_frame + 3, t.last_frame + 2}) {
        SCOPED_TRACE("snapshot after frame " + std::to_string(k));
        // Run A commits outputs and state up to frame k, processes four more frames and dies
        // before they commit; run B restores the snapshot and gets those frames again.
        mini_host a(EGW_CAMERA_MOTION_SO), b(EGW_CAMERA_MOTION_SO);
        ASSERT_TRUE(a.create(config()));
        std::vector<host_output> got, lost;
        feed(a, c, 0, k + 1, got);
        std::string state;
        ASSERT_EQ(a.snapshot(state), EGW_OK);
        feed(a, c, k + 1, k + 5, lost);
        a.destroy();
        ASSERT_TRUE(b.create(config()));
        ASSERT_EQ(b.restore(state), EGW_OK);
        feed(b, c, k + 1, c.frames.size(), got);
        finish(b, got);
        ASSERT_EQ(got.size(), expected.size());
        for (size_t i = 0; i < got.size(); ++i) {
            EXPECT_EQ(summary(got[i]), summary(expected[i])) << i;
            EXPECT_TRUE(got[i].payload == expected[i].payload) << i;
            EXPECT_EQ(got[i].properties, expected[i].properties) << i;
        }
    }
    // A damaged snapshot is refused, not half-applied.
    mini_host d(EGW_CAMERA_MOTION_SO);
    ASSERT_TRUE(d.create(config()));
    EXPECT_EQ(d.restore("EGWCM1garbage"), EGW_ERROR);
    EXPECT_EQ(d.restore(""), EGW_ERROR);
}

TEST(camera_motion, keep_frames_selects_which_full_frames_go_out) {
    const clip& c = episodes_clip();
    const size_t end = c.truth[2].last_frame + 10;
    for (const char* mode : {"none", "start", "start+peak", "all-motion"}) {
        SCOPED_TRACE(mode);
        mini_host h(EGW_CAMERA_MOTION_SO);
        ASSERT_TRUE(h.create(config(std::string(R"("keep_frames": ")") + mode + "\"")));
        std::vector<host_output> out;
        feed(h, c, 0, end, out);
        const auto det = detections(out, c.frame_ms);
        ASSERT_EQ(det.size(), 3u);
        std::map<std::string, std::vector<const host_output*>> frames;
        std::map<std::string, bool> ended;
        for (const auto& o : out) {
            if (o.topic == cam_topic + "/motion") {
                const json j = json::parse(o.payload);
                if (j["event"] == "end") ended[j["episode"]] = true;
            }
            if (o.topic == cam_topic + "/thumbnail") {
                camera::jpeg_codec codec;
                camera::gray_image g;
                const auto r = codec.decode_luma(reinterpret_cast<const uint8_t*>(o.payload.data()),
                                                 o.payload.size(), 1 << 30, 10000, g);
                ASSERT_TRUE(r.ok());
                EXPECT_EQ(r.frame_width, 240);
                EXPECT_EQ(r.frame_height, 180);
            }
            if (o.topic != cam_topic + "/frame") continue;
            EXPECT_EQ(o.content_type, "image/jpeg");
            const std::string role = o.property("egw-role");
            if (role == "peak") {
                EXPECT_TRUE(ended[o.property("egw-episode")]) << "peak before its end event";
            }
            frames[o.property("egw-episode")].push_back(&o);
        }
        for (const auto& d : det) {
            const auto& f = frames[d.id];
            const std::string mode_s = mode;
            if (mode_s == "none") {
                EXPECT_TRUE(f.empty());
                continue;
            }
            ASSERT_FALSE(f.empty());
            EXPECT_EQ(f[0]->property("egw-role"), "start");
            EXPECT_TRUE(f[0]->payload == c.frames[d.start_frame].jpeg);  // the frame as it came
            if (mode_s == "start") {
                EXPECT_EQ(f.size(), 1u);
            }
            if (mode_s == "start+peak") {
                ASSERT_LE(f.size(), 2u);
                if (f.size() == 2) {
                    EXPECT_EQ(f[1]->property("egw-role"), "peak");
                }
            }
            if (mode_s == "all-motion") {
                // Every frame from the start to the one before the frame that ended it
                // (end_after_s = 3 s = 6 frames after the last motion).
                EXPECT_EQ(f.size(), d.last_frame + 6 - d.start_frame);
                for (size_t i = 1; i < f.size(); ++i) {
                    EXPECT_EQ(f[i]->property("egw-role"), "motion");
                    EXPECT_TRUE(f[i]->payload == c.frames[d.start_frame + i].jpeg) << i;
                }
            }
        }
    }
}

TEST(camera_motion, heartbeats_while_frames_arrive_and_once_stale) {
    const clip& c = still_clip();
    mini_host h(EGW_CAMERA_MOTION_SO);
    ASSERT_TRUE(h.create(config(R"("heartbeat_s": 5)")));
    std::vector<host_output> out;
    feed(h, c, 0, 40, out);  // 20 s at 2 fps
    auto hb = motion_events(out, "heartbeat");
    ASSERT_EQ(hb.size(), 4u);
    EXPECT_EQ(hb[0]["frames"], 1);
    for (size_t i = 1; i < hb.size(); ++i) {
        EXPECT_EQ(hb[i]["frames"], 10);
        EXPECT_EQ(hb[i]["frame_ts_ms"].get<int64_t>() - hb[i - 1]["frame_ts_ms"].get<int64_t>(),
                  5000);
        EXPECT_FALSE(hb[i].contains("stale"));
    }
    // The plugin asked for a wall-clock timer 3 * heartbeat_s after the last frame.
    const int64_t due = h.timer_ms();
    ASSERT_GT(due, 0);
    out.clear();
    ASSERT_EQ(h.timer(due - 10'000, out), EGW_OK);  // early: nothing
    EXPECT_TRUE(out.empty());
    ASSERT_EQ(h.timer(due, out), EGW_OK);
    hb = motion_events(out, "heartbeat");
    ASSERT_EQ(hb.size(), 1u);
    EXPECT_EQ(hb[0]["stale"], true);
    EXPECT_EQ(hb[0]["frame_ts_ms"], base_ms + c.frames[39].t_ms);
    EXPECT_EQ(hb[0]["frames"], 9);  // frames 31..39 since the heartbeat at frame 30
    EXPECT_EQ(h.timer_ms(), 0);     // nothing left to wait for
    out.clear();
    ASSERT_EQ(h.timer(due + 1'000'000, out), EGW_OK);
    EXPECT_TRUE(out.empty()) << "stale comes once";
}

TEST(camera_motion, wall_clock_timer_ends_an_episode_when_frames_stop) {
    const clip& c = episodes_clip();
    const truth_episode& t = c.truth[0];
    mini_host h(EGW_CAMERA_MOTION_SO);
    ASSERT_TRUE(h.create(config()));
    std::vector<host_output> out;
    feed(h, c, 0, t.first_frame + 4, out);
    ASSERT_EQ(motion_events(out, "start").size(), 1u);
    const int64_t due = h.timer_ms();
    ASSERT_GT(due, 0);
    out.clear();
    ASSERT_EQ(h.timer(due, out), EGW_OK);
    const auto ends = motion_events(out, "end");
    ASSERT_EQ(ends.size(), 1u);
    EXPECT_EQ(ends[0]["frame_ts_ms"], base_ms + c.frames[t.first_frame + 3].t_ms);
    EXPECT_EQ(ends[0]["duration_ms"],
              c.frames[t.first_frame + 3].t_ms - c.frames[t.first_frame].t_ms);
    // Frames resume with the object still in view: a new episode, never a second end.
    const std::string first_id = ends[0]["episode"];
    out.clear();
    feed(h, c, t.first_frame + 4, c.truth[1].first_frame, out);
    const auto starts = motion_events(out, "start");
    ASSERT_EQ(starts.size(), 1u);
    EXPECT_NE(starts[0]["episode"], first_id);
    for (const auto& e : motion_events(out, "end")) EXPECT_NE(e["episode"], first_id);
}

TEST(camera_motion, end_after_uses_ingest_times_not_arrival) {
    // Frames that queued during a restart arrive at once: the episode goes on as long as their
    // ingest times say so, and ends with the first frame end_after_s (3 s = 6 frames) after the
    // last one with motion.
    const clip& c = episodes_clip();
    mini_host probe(EGW_CAMERA_MOTION_SO);
    ASSERT_TRUE(probe.create(config()));
    std::vector<host_output> out;
    feed(probe, c, 0, c.truth[1].first_frame, out);
    const auto ends = motion_events(out, "end");
    ASSERT_EQ(ends.size(), 1u);
    const auto last_motion =
        static_cast<size_t>((ends[0]["frame_ts_ms"].get<int64_t>() - base_ms) / c.frame_ms);
    mini_host h(EGW_CAMERA_MOTION_SO);
    ASSERT_TRUE(h.create(config()));
    out.clear();
    feed(h, c, 0, last_motion + 6, out);
    EXPECT_EQ(motion_events(out, "start").size(), 1u);
    EXPECT_EQ(motion_events(out, "end").size(), 0u);
    feed(h, c, last_motion + 6, last_motion + 7, out);
    EXPECT_EQ(motion_events(out, "end").size(), 1u);
}

}  // namespace
}  // namespace egw::test
