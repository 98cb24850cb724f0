// SPDX-License-Identifier: Apache-2.0
//
// camera_sim: a simulated camera for the camera-motion tests, the demo and the benchmark. It
// renders a scene frame by frame (a textured background, objects of known size on known
// straight paths, global brightness steps and ramps, sensor noise, small distractors below the
// minimum area), encodes each frame as JPEG with libturbojpeg, and knows the ground truth: the
// true episodes (first and last frame with an object in view) and each frame's object bbox.
//
// Deterministic: the same options (seed included) give the same frames byte for byte.
// Not thread-safe; one thread drives one camera_sim.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace egw::test {

using box = std::array<int, 4>;  // x, y, w, h in frame pixels

// A rectangle of w x h pixels whose top-left corner moves in a straight line from (x0, y0) at
// start_ms to (x1, y1) at end_ms; in view during [start_ms, end_ms].
struct sim_object {
    int64_t start_ms = 0;
    int64_t end_ms = 0;
    int w = 0;
    int h = 0;
    double x0 = 0, y0 = 0, x1 = 0, y1 = 0;
    uint8_t luma = 235;  // drawn with stripes around this grey level
};

// Adds `delta` to every pixel from at_ms on; ramp_ms > 0 spreads it linearly over that time.
struct sim_brightness {
    int64_t at_ms = 0;
    int delta = 0;
    int64_t ramp_ms = 0;
};

struct camera_sim_options {
    int width = 640;
    int height = 480;
    double fps = 2;
    int quality = 80;
    uint32_t seed = 1;
    double noise_sigma = 3;  // sensor noise, grey levels
    std::vector<sim_object> objects;
    std::vector<sim_brightness> brightness;
    // Distractors: dark squares of `size` pixels that wander the top band of the frame all the
    // time, at most 2 % of the width per second.
    int distractor_count = 0;
    int distractor_size = 0;
};

struct truth_episode {
    size_t first_frame = 0;
    size_t last_frame = 0;
    int64_t start_ms = 0;  // the first frame's time
    int64_t end_ms = 0;    // the last frame's time
    box start_bbox{};      // objects in view at the first frame
};

struct sim_frame {
    size_t index = 0;
    int64_t t_ms = 0;  // from the start of the stream
    std::string jpeg;
    box bbox{};  // union of the objects in view (all 0 when none)
    bool object_in_view = false;
};

class camera_sim {
public:
    explicit camera_sim(camera_sim_options o);
    ~camera_sim();
    camera_sim(const camera_sim&) = delete;
    camera_sim& operator=(const camera_sim&) = delete;

    // Renders and encodes the next frame.
    sim_frame next();
    int64_t frame_time_ms(size_t index) const;
    const camera_sim_options& options() const { return o_; }

    // The true episodes of the first `frames` frames (objects in view; overlapping or adjacent
    // objects make one episode).
    std::vector<truth_episode> truth(size_t frames) const;
    // The objects' bbox at a frame (union; all 0 when none in view).
    box bbox_at(size_t index, bool* in_view = nullptr) const;

    // A mostly still scene: `episodes` objects crossing the frame at evenly spread times (each
    // in view 4 to 10 s, at least 20 s apart), two brightness steps and one slow ramp away from
    // them, and two distractors well below 0.5 % of the analysed area.
    static camera_sim_options scenario(int width, int height, double fps, int64_t duration_ms,
                                       int episodes, uint32_t seed);

private:
    void render(int64_t t_ms, std::vector<uint8_t>& rgb);

    camera_sim_options o_;
    size_t index_ = 0;
    uint64_t rng_;
    std::vector<uint8_t> background_;  // luma
    std::vector<uint8_t> rgb_;
    std::vector<uint8_t> luma_;
    std::vector<int8_t> noise_;
    int off_ = 0;                                     // this frame's brightness offset
    std::vector<std::array<double, 4>> distractors_;  // x, y, vx, vy (px per s)
    struct encoder;
    std::unique_ptr<encoder> enc_;
};

// IoU of two boxes; 0 when either is empty.
double iou(const box& a, const box& b);

// The truth as JSON (for the CLI's --truth file).
std::string truth_json(const std::vector<truth_episode>& eps, int64_t base_ms);

}  // namespace egw::test
