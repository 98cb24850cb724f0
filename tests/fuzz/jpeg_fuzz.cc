// SPDX-License-Identifier: Apache-2.0
//
// Fuzzes the camera-motion plugin's JPEG path (plugins/camera-motion): any bytes as a camera
// frame through jpeg_codec::decode_luma, the motion detector on what it decoded, and the
// thumbnail re-encode, as the plugin runs them per frame. plugin_fuzz reaches the same code
// through the ABI, but its inputs rarely get past a JPEG header; this target starts from real
// JPEG seeds (corpus/jpeg_fuzz: baseline 4:2:0, 4:4:4, greyscale, progressive, restart
// markers), so the mutations land in the scans.
//
// Checks besides "no crash, no sanitizer report": a decoded image is never larger than the
// pixel cap allows and has the size it claims; a refusal names its reason; a thumbnail is a
// JPEG no wider than asked. The cap is small (1 Mpx) so a header claiming a huge frame is
// refused before any pixel buffer is sized, as the plugin's max_pixels does.
#include <cstddef>
#include <cstdint>
#include <string>

#include "jpeg_io.h"
#include "motion_detector.h"

namespace {

constexpr uint64_t max_pixels = 1024 * 1024;
constexpr int thumb_width = 64;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace egw::camera;
    static jpeg_codec codec;  // reused across inputs, as one plugin instance reuses its own
    static motion_detector detector;

    gray_image luma;
    const decode_result d = codec.decode_luma(data, size, max_pixels, 120, luma);
    if (!d.ok()) {
        if (d.reject != reject_kind::not_jpeg && d.reason.empty()) __builtin_trap();
        return 0;
    }
    if (static_cast<uint64_t>(d.frame_width) * static_cast<uint64_t>(d.frame_height) > max_pixels)
        __builtin_trap();
    if (luma.width <= 0 || luma.height <= 0 ||
        luma.pixels.size() != static_cast<size_t>(luma.width) * static_cast<size_t>(luma.height))
        __builtin_trap();
    // Twice: the first frame learns the background, the second is compared with it (and a
    // frame of another size relearns).
    detector.analyse(luma, d.frame_width, d.frame_height);
    const motion_result m = detector.analyse(luma, d.frame_width, d.frame_height);
    if (m.score < 0 || m.score > 100.0001 || m.bbox[0] < 0 || m.bbox[1] < 0 ||
        m.bbox[0] + m.bbox[2] > d.frame_width || m.bbox[1] + m.bbox[3] > d.frame_height)
        __builtin_trap();

    std::string thumb, reason;
    if (codec.thumbnail(data, size, max_pixels, thumb_width, 70, thumb, reason)) {
        gray_image t;
        const decode_result back = codec.decode_luma(reinterpret_cast<const uint8_t*>(thumb.data()),
                                                     thumb.size(), max_pixels, 1, t);
        if (!back.ok() || back.frame_width > thumb_width) __builtin_trap();
    } else if (reason.empty()) {
        __builtin_trap();
    }
    return 0;
}
