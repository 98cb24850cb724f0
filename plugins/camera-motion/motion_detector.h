// SPDX-License-Identifier: Apache-2.0
//
// motion_detector: one camera's background model and the per-frame motion decision, on a luma
// image that jpeg_codec already decoded (DCT-downscaled). No I/O, no libturbojpeg: plain logic
// that the unit tests drive with synthetic images.
//
// Per frame: resize to scale_height rows, blur (3x3 binomial), diff against the running
// average, threshold at pixel_threshold, dilate (5x5, i.e. Frigate's 3x3 twice), connected
// components; a component counts when its dilated area is at least min_area_pct of the analysed
// image. score = the kept components' dilated area in % of the analysed image; bbox = the
// changed (undilated) pixels of the kept components, mapped to the frame's pixels. When more
// than relearn_above_pct of the analysed pixels changed (before dilation) the model relearns
// from this frame and reports no motion (lightning, an IR switch, a global exposure step).
//
// The average follows the scene at 1/16 per frame, so slow lighting drifts are absorbed, a
// moving object leaves no ghost behind, and one that stops becomes background after about 20
// frames (10 s at 2 fps).
//
// Threads: none of its own; one caller at a time.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "jpeg_io.h"

namespace egw::camera {

struct motion_params {
    int scale_height = 120;
    int pixel_threshold = 30;
    double min_area_pct = 0.5;
    double relearn_above_pct = 80;
};

struct motion_result {
    bool motion = false;
    bool relearned = false;     // this frame replaced the background
    double score = 0;           // % of the analysed image, kept components after dilation
    double changed_pct = 0;     // % of the analysed image over the threshold, before dilation
    std::array<int, 4> bbox{};  // x, y, w, h in the frame's pixels (all 0 without motion)
};

class motion_detector {
public:
    explicit motion_detector(motion_params p = {}) : p_(p) {}

    // `luma` is the decoded plane (any size); frame_w x frame_h the JPEG's own dimensions, for
    // the bbox. The first frame (or one whose analysed size differs) learns the background.
    motion_result analyse(const gray_image& luma, int frame_w, int frame_h);

    bool has_background() const { return !bg_.empty(); }
    int analysed_width() const { return aw_; }
    int analysed_height() const { return ah_; }

    // The background model as bytes, and back. restore() returns false on malformed input and
    // then leaves the detector empty (it relearns from the next frame).
    void save(std::string& out) const;
    bool restore(std::string_view& in);

private:
    motion_params p_;
    int aw_ = 0, ah_ = 0;
    std::vector<int32_t> bg_;  // running average, 8 fractional bits
    // scratch, reused
    std::vector<uint8_t> small_, blurred_, tmp_, mask_, dilated_;
    std::vector<int32_t> labels_;
    std::vector<uint16_t> colsum_;
    std::vector<int> stack_;
};

// Little-endian byte helpers shared by the plugin's snapshot code.
void put_u32(std::string& out, uint32_t v);
void put_u64(std::string& out, uint64_t v);
void put_f64(std::string& out, double v);
void put_bytes(std::string& out, std::string_view b);
bool get_u32(std::string_view& in, uint32_t& v);
bool get_u64(std::string_view& in, uint64_t& v);
bool get_f64(std::string_view& in, double& v);
bool get_bytes(std::string_view& in, std::string& b, size_t max_len);

}  // namespace egw::camera
