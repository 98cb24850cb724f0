// SPDX-License-Identifier: Apache-2.0
//
// The camera-motion algorithm without the ABI: jpeg_codec's scaling and header checks,
// motion_detector on synthetic luma images, episode_tracker's state machine.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "episode_tracker.h"
#include "jpeg_io.h"
#include "motion_detector.h"
#include "support/camera_sim.h"

namespace egw::camera {
namespace {

gray_image flat(int w, int h, uint8_t v) {
    gray_image g;
    g.width = w;
    g.height = h;
    g.pixels.assign(static_cast<size_t>(w) * h, v);
    return g;
}

void fill(gray_image& g, int x, int y, int w, int h, uint8_t v) {
    for (int yy = y; yy < y + h; ++yy)
        for (int xx = x; xx < x + w; ++xx) g.pixels[static_cast<size_t>(yy) * g.width + xx] = v;
}

std::string sim_jpeg(int w, int h) {
    test::camera_sim_options o;
    o.width = w;
    o.height = h;
    test::camera_sim sim(o);
    return sim.next().jpeg;
}

TEST(jpeg_codec, decodes_luma_at_the_largest_dct_scale_that_keeps_the_rows) {
    jpeg_codec c;
    gray_image g;
    const std::string hd = sim_jpeg(1920, 1080);
    auto r =
        c.decode_luma(reinterpret_cast<const uint8_t*>(hd.data()), hd.size(), 3840 * 2160, 120, g);
    ASSERT_TRUE(r.ok()) << r.reason;
    EXPECT_EQ(r.frame_width, 1920);
    EXPECT_EQ(g.height, 135);  // 1/8: 1080 / 8 >= 120
    EXPECT_EQ(g.width, 240);
    const std::string vga = sim_jpeg(640, 480);
    r = c.decode_luma(reinterpret_cast<const uint8_t*>(vga.data()), vga.size(), 3840 * 2160, 120,
                      g);
    ASSERT_TRUE(r.ok()) << r.reason;
    EXPECT_EQ(g.height, 120);  // 1/4
    r = c.decode_luma(reinterpret_cast<const uint8_t*>(vga.data()), vga.size(), 3840 * 2160, 200,
                      g);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(g.height, 240);  // 1/2: 3/8 gives 180 < 200
}

TEST(jpeg_codec, refuses_too_many_pixels_from_the_header_before_allocating) {
    jpeg_codec c;
    gray_image g;
    const std::string vga = sim_jpeg(640, 480);
    const auto r = c.decode_luma(reinterpret_cast<const uint8_t*>(vga.data()), vga.size(),
                                 640 * 480 - 1, 120, g);
    EXPECT_EQ(r.reject, reject_kind::too_large);
    EXPECT_TRUE(g.pixels.empty());
    const std::string junk = "\xFF\xD8\xFF garbage";
    EXPECT_EQ(
        c.decode_luma(reinterpret_cast<const uint8_t*>(junk.data()), junk.size(), 1 << 30, 120, g)
            .reject,
        reject_kind::decode_error);
    EXPECT_EQ(c.decode_luma(nullptr, 0, 1 << 30, 120, g).reject, reject_kind::not_jpeg);
}

TEST(jpeg_codec, thumbnail_has_the_requested_width_and_the_frame_aspect) {
    jpeg_codec c;
    const std::string hd = sim_jpeg(1920, 1080);
    std::string thumb, reason;
    ASSERT_TRUE(c.thumbnail(reinterpret_cast<const uint8_t*>(hd.data()), hd.size(), 1 << 30, 240,
                            75, thumb, reason))
        << reason;
    gray_image g;
    const auto r = c.decode_luma(reinterpret_cast<const uint8_t*>(thumb.data()), thumb.size(),
                                 1 << 30, 10000, g);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.frame_width, 240);
    EXPECT_EQ(r.frame_height, 135);
}

TEST(motion_detector, object_above_min_area_is_motion_with_its_bbox_in_frame_pixels) {
    motion_detector d;
    EXPECT_TRUE(d.analyse(flat(160, 120, 100), 640, 480).relearned);
    gray_image g = flat(160, 120, 100);
    fill(g, 40, 30, 20, 20, 220);
    const auto r = d.analyse(g, 640, 480);
    ASSERT_TRUE(r.motion);
    EXPECT_FALSE(r.relearned);
    // Blurred edges may add a pixel on each side; the frame is 4x the analysed size.
    EXPECT_NEAR(r.bbox[0], 160, 4);
    EXPECT_NEAR(r.bbox[1], 120, 4);
    EXPECT_NEAR(r.bbox[2], 80, 8);
    EXPECT_NEAR(r.bbox[3], 80, 8);
    // Dilated by 2 on each side: about 24 x 24 of 160 x 120.
    EXPECT_NEAR(r.score, 100.0 * 24 * 24 / (160 * 120), 0.5);
}

TEST(motion_detector, blob_below_min_area_is_not_motion) {
    motion_detector d;
    d.analyse(flat(160, 120, 100), 160, 120);
    gray_image g = flat(160, 120, 100);
    fill(g, 80, 60, 3, 3, 250);  // dilated 7x7 = 49 px < 0.5 % of 19200 = 96
    EXPECT_FALSE(d.analyse(g, 160, 120).motion);
}

TEST(motion_detector, global_step_relearns_and_slow_drift_is_absorbed) {
    motion_detector d;
    d.analyse(flat(160, 120, 100), 160, 120);
    auto r = d.analyse(flat(160, 120, 150), 160, 120);
    EXPECT_TRUE(r.relearned);
    EXPECT_FALSE(r.motion);
    EXPECT_FALSE(d.analyse(flat(160, 120, 150), 160, 120).motion);
    for (int v = 150; v < 230; ++v) {
        r = d.analyse(flat(160, 120, static_cast<uint8_t>(v)), 160, 120);
        ASSERT_FALSE(r.motion) << v;
        ASSERT_FALSE(r.relearned) << v;
    }
}

TEST(motion_detector, lamp_lighting_half_the_frame_is_motion) {
    motion_detector d;
    d.analyse(flat(160, 120, 80), 160, 120);
    gray_image g = flat(160, 120, 80);
    fill(g, 0, 0, 80, 120, 200);
    const auto r = d.analyse(g, 160, 120);
    EXPECT_TRUE(r.motion);
    EXPECT_FALSE(r.relearned);
    EXPECT_GT(r.score, 50);
}

TEST(motion_detector, model_survives_save_and_restore) {
    motion_detector a;
    a.analyse(flat(160, 120, 100), 160, 120);
    std::string s;
    a.save(s);
    motion_detector b;
    std::string_view v = s;
    ASSERT_TRUE(b.restore(v));
    EXPECT_TRUE(v.empty());
    gray_image g = flat(160, 120, 100);
    fill(g, 40, 30, 20, 20, 220);
    EXPECT_TRUE(b.analyse(g, 160, 120).motion);
    std::string_view bad = std::string_view(s).substr(0, 10);
    EXPECT_FALSE(b.restore(bad));
}

frame_info frame(int64_t ts, uint64_t seq, bool motion, double score = 5) {
    frame_info f;
    f.ts_ms = ts;
    f.seq = seq;
    f.width = 640;
    f.height = 480;
    f.motion = motion;
    f.score = motion ? score : 0;
    f.bbox = motion ? std::array<int, 4>{10, 20, 30, 40} : std::array<int, 4>{};
    f.jpeg = std::make_shared<const std::string>("jpeg" + std::to_string(seq));
    return f;
}

std::vector<std::string> events(const std::vector<emission>& em) {
    std::vector<std::string> v;
    for (const auto& e : em) {
        if (e.what == emission::kind::event && e.json.find("heartbeat") == std::string::npos)
            v.push_back(e.json);
    }
    return v;
}

TEST(episode_tracker, min_frames_consecutive_start_and_end_after_on_ingest_time) {
    tracker_params p;
    p.min_frames = 2;
    p.end_after_ms = 3000;
    p.heartbeat_ms = 1000000;
    p.keep = keep_mode::start_peak;
    episode_tracker t(p);
    std::vector<emission> out;
    t.on_frame(frame(1000, 1, true), 0, out);
    t.on_frame(frame(1500, 2, false), 0, out);  // breaks the run
    t.on_frame(frame(2000, 3, true, 4), 0, out);
    EXPECT_TRUE(events(out).empty());
    t.on_frame(frame(2500, 4, true, 9), 0, out);
    ASSERT_EQ(events(out).size(), 1u);
    EXPECT_EQ(events(out)[0],
              "{\"event\":\"start\",\"episode\":\"2000-3\",\"score\":4.00,\"bbox\":[10,20,30,40],"
              "\"frame_ts_ms\":2000,\"width\":640,\"height\":480}");
    t.on_frame(frame(3000, 5, true, 6), 0, out);
    t.on_frame(frame(5900, 6, false), 0, out);  // 2.9 s after the last motion: still on
    EXPECT_TRUE(t.in_episode());
    out.clear();
    t.on_frame(frame(6000, 7, false), 0, out);
    ASSERT_EQ(events(out).size(), 1u);
    EXPECT_EQ(events(out)[0],
              "{\"event\":\"end\",\"episode\":\"2000-3\",\"score\":6.00,\"bbox\":[10,20,30,40],"
              "\"frame_ts_ms\":3000,\"width\":640,\"height\":480,\"duration_ms\":1000,"
              "\"peak_score\":9.00}");
    // start+peak: the peak (seq 4) goes out after the end event.
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(out[1].what, emission::kind::frame);
    EXPECT_STREQ(out[1].role, "peak");
    EXPECT_EQ(*out[1].jpeg, "jpeg4");
}

TEST(episode_tracker, state_round_trips) {
    episode_tracker a;
    std::vector<emission> out;
    a.on_frame(frame(1000, 1, true), 5, out);
    a.on_frame(frame(1500, 2, true), 5, out);
    std::string s;
    a.save(s);
    episode_tracker b;
    std::string_view v = s;
    ASSERT_TRUE(b.restore(v));
    EXPECT_TRUE(v.empty());
    EXPECT_TRUE(b.in_episode());
    EXPECT_EQ(b.episode_id(), "1000-1");
    std::string s2;
    b.save(s2);
    EXPECT_EQ(s, s2);
}

}  // namespace
}  // namespace egw::camera
