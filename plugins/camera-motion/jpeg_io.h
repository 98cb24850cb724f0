// SPDX-License-Identifier: Apache-2.0
//
// jpeg_io: the camera-motion plugin's only contact with libturbojpeg (Debian's 2.1 API).
//
// Contract. Every call treats its input as hostile: the header is read first and a frame whose
// width * height exceeds max_pixels is refused before any pixel buffer is sized; decoding runs
// with TJFLAG_LIMITSCANS (progressive bombs) and TJFLAG_STOPONWARNING (truncated or corrupt
// data fails instead of yielding a half-grey frame). Nothing here throws on bad data: failures
// come back as a reject kind with libturbojpeg's message.
//
// Threads and ownership. One jpeg_codec per plugin instance, used by one thread at a time (the
// plugin is stateful, so the host never runs two calls of one instance at once). It owns its
// tjhandles and scratch buffers and reuses them, so a steady stream allocates nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace egw::camera {

enum class reject_kind { none, not_jpeg, too_large, decode_error };
const char* to_string(reject_kind k);

// A luma image, row-major, pitch == width.
struct gray_image {
    int width = 0;
    int height = 0;
    std::vector<uint8_t> pixels;
};

struct decode_result {
    reject_kind reject = reject_kind::none;
    std::string reason;   // libturbojpeg's message, when rejected
    int frame_width = 0;  // the JPEG's own dimensions
    int frame_height = 0;
    bool ok() const { return reject == reject_kind::none; }
};

class jpeg_codec {
public:
    jpeg_codec();
    ~jpeg_codec();
    jpeg_codec(const jpeg_codec&) = delete;
    jpeg_codec& operator=(const jpeg_codec&) = delete;

    // Decodes the luma plane with the largest DCT downscale that keeps at least min_rows rows
    // (all rows when the frame has fewer). `out` is resized only after the header passed.
    decode_result decode_luma(const uint8_t* data, size_t len, uint64_t max_pixels, int min_rows,
                              gray_image& out);

    // The whole frame scaled to `width` (never enlarged), re-encoded as a baseline 4:2:0 JPEG
    // into a buffer preallocated with tjBufSize (TJFLAG_NOREALLOC). False on any failure.
    bool thumbnail(const uint8_t* data, size_t len, uint64_t max_pixels, int width, int quality,
                   std::string& out, std::string& reason);

    // Encodes packed RGB (3 bytes per pixel, pitch width * 3). Used by the simulator too.
    bool encode_rgb(const uint8_t* rgb, int width, int height, int quality, std::string& out,
                    std::string& reason);

private:
    decode_result read_header(const uint8_t* data, size_t len, uint64_t max_pixels);
    void reset_decoder();

    void* decoder_ = nullptr;        // tjhandle
    void* encoder_ = nullptr;        // tjhandle
    std::vector<uint8_t> rgb_;       // thumbnail scratch: DCT-scaled decode
    std::vector<uint8_t> resized_;   // thumbnail scratch: resized to the target width
    std::vector<uint8_t> jpeg_buf_;  // tjBufSize-sized output buffer
};

// Bilinear resize of one 8-bit plane with `channels` interleaved channels.
void resize_bilinear(const uint8_t* src, int sw, int sh, int channels, uint8_t* dst, int dw,
                     int dh);

}  // namespace egw::camera
