// SPDX-License-Identifier: Apache-2.0
#include "jpeg_io.h"

#include <turbojpeg.h>

#include <algorithm>
#include <climits>
#include <cstring>

namespace egw::camera {

const char* to_string(reject_kind k) {
    switch (k) {
        case reject_kind::none:
            return "none";
        case reject_kind::not_jpeg:
            return "not_jpeg";
        case reject_kind::too_large:
            return "too_large";
        case reject_kind::decode_error:
            return "decode_error";
    }
    return "unknown";
}

namespace {

// Progressive bombs: libjpeg-turbo stops at 500 scans with LIMITSCANS; STOPONWARNING turns
// "premature end of data" and corrupt-marker warnings into errors.
constexpr int hostile_flags = TJFLAG_LIMITSCANS | TJFLAG_STOPONWARNING;

// libturbojpeg takes unsigned long sizes but int dimensions; anything beyond INT_MAX bytes is
// not a camera frame.
bool too_long(size_t len) { return len > static_cast<size_t>(INT_MAX); }

}  // namespace

jpeg_codec::jpeg_codec() : decoder_(tjInitDecompress()), encoder_(tjInitCompress()) {}

jpeg_codec::~jpeg_codec() {
    if (decoder_ != nullptr) tjDestroy(decoder_);
    if (encoder_ != nullptr) tjDestroy(encoder_);
}

void jpeg_codec::reset_decoder() {
    // After a failed call libturbojpeg 2.1's handle can stay in an error state (every later
    // frame then fails too), so a fresh one is made: rare, and cheap next to a decode.
    if (decoder_ != nullptr) tjDestroy(decoder_);
    decoder_ = tjInitDecompress();
}

decode_result jpeg_codec::read_header(const uint8_t* data, size_t len, uint64_t max_pixels) {
    decode_result r;
    // SOI followed by a marker: cheap, and keeps text, PNGs and random bytes out of libjpeg.
    if (data == nullptr || len < 4 || data[0] != 0xFF || data[1] != 0xD8 || data[2] != 0xFF) {
        r.reject = reject_kind::not_jpeg;
        r.reason = "no JPEG start-of-image marker";
        return r;
    }
    if (decoder_ == nullptr) {
        r.reject = reject_kind::decode_error;
        r.reason = "tjInitDecompress failed";
        return r;
    }
    if (too_long(len)) {
        r.reject = reject_kind::too_large;
        r.reason = "payload above 2 GiB";
        return r;
    }
    int w = 0, h = 0, subsamp = 0, colorspace = 0;
    if (tjDecompressHeader3(decoder_, data, static_cast<unsigned long>(len), &w, &h, &subsamp,
                            &colorspace) != 0) {
        r.reject = reject_kind::decode_error;
        r.reason = tjGetErrorStr2(decoder_);
        reset_decoder();
        return r;
    }
    r.frame_width = w;
    r.frame_height = h;
    if (w <= 0 || h <= 0) {
        r.reject = reject_kind::decode_error;
        r.reason = "zero dimension";
        return r;
    }
    if (static_cast<uint64_t>(w) * static_cast<uint64_t>(h) > max_pixels) {
        r.reject = reject_kind::too_large;
        r.reason = std::to_string(w) + "x" + std::to_string(h) + " is above max_pixels " +
                   std::to_string(max_pixels);
        return r;
    }
    return r;
}

decode_result jpeg_codec::decode_luma(const uint8_t* data, size_t len, uint64_t max_pixels,
                                      int min_rows, gray_image& out) {
    decode_result r = read_header(data, len, max_pixels);
    if (!r.ok()) return r;
    const int w = r.frame_width, h = r.frame_height;
    // The smallest scaled height that still has min_rows rows: libjpeg-turbo then skips most
    // of the inverse DCT (1/8 keeps only the DC coefficient).
    int n = 0;
    tjscalingfactor* factors = tjGetScalingFactors(&n);
    int best_w = w, best_h = h;
    for (int i = 0; i < n && factors != nullptr; ++i) {
        const int sh = TJSCALED(h, factors[i]);
        const int sw = TJSCALED(w, factors[i]);
        if (sh >= min_rows && sh < best_h && sw > 0) {
            best_h = sh;
            best_w = sw;
        }
    }
    out.width = best_w;
    out.height = best_h;
    out.pixels.resize(static_cast<size_t>(best_w) * static_cast<size_t>(best_h));
    if (tjDecompress2(decoder_, data, static_cast<unsigned long>(len), out.pixels.data(), best_w, 0,
                      best_h, TJPF_GRAY, hostile_flags) != 0) {
        r.reject = reject_kind::decode_error;
        r.reason = tjGetErrorStr2(decoder_);
        reset_decoder();
        return r;
    }
    return r;
}

bool jpeg_codec::thumbnail(const uint8_t* data, size_t len, uint64_t max_pixels, int width,
                           int quality, std::string& out, std::string& reason) {
    decode_result r = read_header(data, len, max_pixels);
    if (!r.ok()) {
        reason = r.reason;
        return false;
    }
    const int w = r.frame_width, h = r.frame_height;
    const int tw = std::max(1, std::min(width, w));
    const int th = std::max(1, static_cast<int>((static_cast<int64_t>(h) * tw + w / 2) / w));
    // The smallest DCT scaling that is still at least the thumbnail's size.
    int n = 0;
    tjscalingfactor* factors = tjGetScalingFactors(&n);
    int sw = w, sh = h;
    for (int i = 0; i < n && factors != nullptr; ++i) {
        const int fw = TJSCALED(w, factors[i]);
        const int fh = TJSCALED(h, factors[i]);
        if (fw >= tw && fh >= th && fw < sw) {
            sw = fw;
            sh = fh;
        }
    }
    rgb_.resize(static_cast<size_t>(sw) * sh * 3);
    if (tjDecompress2(decoder_, data, static_cast<unsigned long>(len), rgb_.data(), sw, 0, sh,
                      TJPF_RGB, hostile_flags) != 0) {
        reason = tjGetErrorStr2(decoder_);
        reset_decoder();
        return false;
    }
    const uint8_t* src = rgb_.data();
    if (sw != tw || sh != th) {
        resized_.resize(static_cast<size_t>(tw) * th * 3);
        resize_bilinear(rgb_.data(), sw, sh, 3, resized_.data(), tw, th);
        src = resized_.data();
    }
    return encode_rgb(src, tw, th, quality, out, reason);
}

bool jpeg_codec::encode_rgb(const uint8_t* rgb, int width, int height, int quality,
                            std::string& out, std::string& reason) {
    if (encoder_ == nullptr) {
        reason = "tjInitCompress failed";
        return false;
    }
    // Preallocated to the worst case, so libturbojpeg never reallocates behind our back.
    const unsigned long cap = tjBufSize(width, height, TJSAMP_420);
    if (cap == static_cast<unsigned long>(-1)) {
        reason = "tjBufSize failed";
        return false;
    }
    if (jpeg_buf_.size() < cap) jpeg_buf_.resize(cap);
    unsigned char* buf = jpeg_buf_.data();
    unsigned long size = cap;
    if (tjCompress2(encoder_, rgb, width, 0, height, TJPF_RGB, &buf, &size, TJSAMP_420, quality,
                    TJFLAG_NOREALLOC) != 0) {
        reason = tjGetErrorStr2(encoder_);
        return false;
    }
    out.assign(reinterpret_cast<const char*>(buf), size);
    return true;
}

void resize_bilinear(const uint8_t* src, int sw, int sh, int channels, uint8_t* dst, int dw,
                     int dh) {
    // Fixed point with 16 fractional bits; centres of pixels aligned (the OpenCV convention).
    // Source columns and weights are the same for every row: computed once.
    const auto pos = [](int i, int s, int d, int& i0, int& wgt) {
        int64_t f = ((2 * i + 1) * static_cast<int64_t>(s) << 16) / (2 * d) - (1 << 15);
        if (f < 0) f = 0;
        i0 = static_cast<int>(f >> 16);
        wgt = static_cast<int>(f & 0xFFFF);
        if (i0 >= s - 1) {
            i0 = s - 1;
            wgt = 0;
        }
    };
    std::vector<int> xs(static_cast<size_t>(dw)), xw(static_cast<size_t>(dw));
    for (int x = 0; x < dw; ++x) pos(x, sw, dw, xs[x], xw[x]);
    for (int y = 0; y < dh; ++y) {
        int y0 = 0, wy = 0;
        pos(y, sh, dh, y0, wy);
        const int y1 = std::min(y0 + 1, sh - 1);
        const uint8_t* r0 = src + static_cast<size_t>(y0) * sw * channels;
        const uint8_t* r1 = src + static_cast<size_t>(y1) * sw * channels;
        uint8_t* out = dst + static_cast<size_t>(y) * dw * channels;
        for (int x = 0; x < dw; ++x) {
            const int x0 = xs[x], wx = xw[x];
            const int x1 = std::min(x0 + 1, sw - 1);
            for (int c = 0; c < channels; ++c) {
                const int64_t a = r0[x0 * channels + c], b = r0[x1 * channels + c];
                const int64_t cc = r1[x0 * channels + c], d = r1[x1 * channels + c];
                const int64_t top = (a << 16) + (b - a) * wx;
                const int64_t bot = (cc << 16) + (d - cc) * wx;
                const int64_t v = (top << 16) + (bot - top) * wy;
                out[x * channels + c] = static_cast<uint8_t>((v + (int64_t{1} << 31)) >> 32);
            }
        }
    }
}

}  // namespace egw::camera
