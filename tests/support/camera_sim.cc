// SPDX-License-Identifier: Apache-2.0
#include "support/camera_sim.h"

#include <turbojpeg.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace egw::test {

namespace {

uint64_t splitmix(uint64_t& s) {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double uniform(uint64_t& s) { return static_cast<double>(splitmix(s) >> 11) * 0x1.0p-53; }

constexpr size_t noise_mask = (size_t{1} << 16) - 1;

box unite(const box& a, const box& b) {
    if (a[2] <= 0 || a[3] <= 0) return b;
    if (b[2] <= 0 || b[3] <= 0) return a;
    const int x0 = std::min(a[0], b[0]), y0 = std::min(a[1], b[1]);
    const int x1 = std::max(a[0] + a[2], b[0] + b[2]), y1 = std::max(a[1] + a[3], b[1] + b[3]);
    return {x0, y0, x1 - x0, y1 - y0};
}

box clip(const box& b, int w, int h) {
    const int x0 = std::clamp(b[0], 0, w), y0 = std::clamp(b[1], 0, h);
    const int x1 = std::clamp(b[0] + b[2], 0, w), y1 = std::clamp(b[1] + b[3], 0, h);
    if (x1 <= x0 || y1 <= y0) return {0, 0, 0, 0};
    return {x0, y0, x1 - x0, y1 - y0};
}

box object_box(const sim_object& ob, int64_t t) {
    const double f = ob.end_ms > ob.start_ms ? static_cast<double>(t - ob.start_ms) /
                                                   static_cast<double>(ob.end_ms - ob.start_ms)
                                             : 0;
    const double x = ob.x0 + (ob.x1 - ob.x0) * f, y = ob.y0 + (ob.y1 - ob.y0) * f;
    return {static_cast<int>(std::lround(x)), static_cast<int>(std::lround(y)), ob.w, ob.h};
}

}  // namespace

struct camera_sim::encoder {
    tjhandle h = tjInitCompress();
    std::vector<unsigned char> buf;
    ~encoder() {
        if (h != nullptr) tjDestroy(h);
    }
};

camera_sim::camera_sim(camera_sim_options o)
    : o_(std::move(o)), rng_(o_.seed * 0x2545F4914F6CDD1Dull + 1), enc_(new encoder) {
    if (o_.width <= 0 || o_.height <= 0 || o_.fps <= 0) throw std::invalid_argument("camera_sim");
    // Texture: a few soft gradients plus blocky detail, kept in [70, 180] so brightness steps of
    // +-50 never clip (a clipped step would change fewer pixels than it should).
    const int w = o_.width, h = o_.height;
    background_.resize(static_cast<size_t>(w) * h);
    uint64_t s = rng_;
    const double p1 = uniform(s) * 6.28, p2 = uniform(s) * 6.28;
    const int block = std::max(4, h / 60);
    const int bw = (w + block - 1) / block, bh = (h + block - 1) / block;
    std::vector<int> blocks(static_cast<size_t>(bw) * bh);
    for (int& b : blocks) b = static_cast<int>(uniform(s) * 30) - 15;
    for (int y = 0; y < h; ++y) {
        for (int x = 0; x < w; ++x) {
            const double fx = static_cast<double>(x) / w, fy = static_cast<double>(y) / h;
            double v = 125 + 25 * std::sin(6.28 * 1.5 * fx + p1) * std::cos(6.28 * fy + p2) +
                       10 * std::sin(6.28 * 7 * (fx + fy));
            v += blocks[static_cast<size_t>(y / block) * bw + x / block];
            background_[static_cast<size_t>(y) * w + x] =
                static_cast<uint8_t>(std::clamp(v, 70.0, 180.0));
        }
    }
    noise_.resize(noise_mask + 1);
    for (int8_t& v : noise_) {
        // The sum of three uniforms on [-1, 1] has sigma 1.
        const double u = (uniform(s) + uniform(s) + uniform(s)) * 2 - 3;
        v = static_cast<int8_t>(std::clamp(std::lround(u * o_.noise_sigma), -127l, 127l));
    }
    for (int i = 0; i < o_.distractor_count; ++i) {
        distractors_.push_back({uniform(s) * (w - o_.distractor_size),
                                uniform(s) * std::max(1.0, h * 0.12 - o_.distractor_size),
                                (uniform(s) - 0.5) * w * 0.04, (uniform(s) - 0.5) * h * 0.01});
    }
}

camera_sim::~camera_sim() = default;

int64_t camera_sim::frame_time_ms(size_t index) const {
    return static_cast<int64_t>(std::llround(static_cast<double>(index) * 1000.0 / o_.fps));
}

box camera_sim::bbox_at(size_t index, bool* in_view) const {
    const int64_t t = frame_time_ms(index);
    box b{0, 0, 0, 0};
    bool any = false;
    for (const sim_object& ob : o_.objects) {
        if (t < ob.start_ms || t > ob.end_ms) continue;
        const box c = clip(object_box(ob, t), o_.width, o_.height);
        if (c[2] == 0) continue;
        b = unite(b, c);
        any = true;
    }
    if (in_view != nullptr) *in_view = any;
    return b;
}

std::vector<truth_episode> camera_sim::truth(size_t frames) const {
    std::vector<truth_episode> eps;
    bool open = false;
    for (size_t i = 0; i < frames; ++i) {
        bool in_view = false;
        const box b = bbox_at(i, &in_view);
        if (in_view && !open) {
            truth_episode e;
            e.first_frame = e.last_frame = i;
            e.start_ms = e.end_ms = frame_time_ms(i);
            e.start_bbox = b;
            eps.push_back(e);
            open = true;
        } else if (in_view) {
            eps.back().last_frame = i;
            eps.back().end_ms = frame_time_ms(i);
        } else {
            open = false;
        }
    }
    return eps;
}

void camera_sim::render(int64_t t_ms, std::vector<uint8_t>& rgb) {
    const int w = o_.width, h = o_.height;
    double bright = 0;
    for (const sim_brightness& b : o_.brightness) {
        if (t_ms < b.at_ms) continue;
        if (b.ramp_ms > 0 && t_ms < b.at_ms + b.ramp_ms) {
            bright +=
                b.delta * static_cast<double>(t_ms - b.at_ms) / static_cast<double>(b.ramp_ms);
        } else {
            bright += b.delta;
        }
    }
    std::vector<uint8_t>& luma = luma_;
    luma = background_;
    const int off = static_cast<int>(std::lround(bright));
    off_ = off;
    // Objects: striped rectangles, so they have texture like real ones.
    for (const sim_object& ob : o_.objects) {
        if (t_ms < ob.start_ms || t_ms > ob.end_ms) continue;
        const box c = clip(object_box(ob, t_ms), w, h);
        for (int y = c[1]; y < c[1] + c[3]; ++y) {
            for (int x = c[0]; x < c[0] + c[2]; ++x) {
                const int stripe = ((x + y) / 6) % 2 ? 10 : -10;
                luma[static_cast<size_t>(y) * w + x] =
                    static_cast<uint8_t>(std::clamp(ob.luma + stripe - off, 0, 255));
            }
        }
    }
    // Distractors bounce inside the top band.
    const double dt = 1.0 / o_.fps;
    for (auto& d : distractors_) {
        if (index_ > 0) {
            d[0] += d[2] * dt;
            d[1] += d[3] * dt;
            if (d[0] < 0 || d[0] > w - o_.distractor_size) d[2] = -d[2];
            if (d[1] < 0 || d[1] > h * 0.12 - o_.distractor_size) d[3] = -d[3];
            d[0] = std::clamp(d[0], 0.0, static_cast<double>(w - o_.distractor_size));
            d[1] = std::clamp(d[1], 0.0, std::max(0.0, h * 0.12 - o_.distractor_size));
        }
        const box c = clip({static_cast<int>(d[0]), static_cast<int>(d[1]), o_.distractor_size,
                            o_.distractor_size},
                           w, h);
        for (int y = c[1]; y < c[1] + c[3]; ++y)
            for (int x = c[0]; x < c[0] + c[2]; ++x) luma[static_cast<size_t>(y) * w + x] = 20;
    }
    rgb.resize(static_cast<size_t>(w) * h * 3);
    // Noise: a table of Gaussian values read from a random offset per row, so a 1080p frame
    // costs one table lookup per pixel rather than a random draw.
    for (int y = 0; y < h; ++y) {
        const size_t row_off = splitmix(rng_) & noise_mask;
        const uint8_t* src = luma.data() + static_cast<size_t>(y) * w;
        uint8_t* dst = rgb.data() + static_cast<size_t>(y) * w * 3;
        for (int x = 0; x < w; ++x) {
            const int v = src[x] + off_ + noise_[(row_off + static_cast<size_t>(x)) & noise_mask];
            const int g = std::clamp(v, 0, 255);
            // A tinted scene: the chroma is constant so the JPEG size stays realistic.
            dst[3 * x] = static_cast<uint8_t>(std::min(255, g + 8));
            dst[3 * x + 1] = static_cast<uint8_t>(g);
            dst[3 * x + 2] = static_cast<uint8_t>(std::max(0, g - 8));
        }
    }
}

sim_frame camera_sim::next() {
    sim_frame f;
    f.index = index_;
    f.t_ms = frame_time_ms(index_);
    render(f.t_ms, rgb_);
    f.bbox = bbox_at(index_, &f.object_in_view);
    const unsigned long cap = tjBufSize(o_.width, o_.height, TJSAMP_420);
    if (enc_->buf.size() < cap) enc_->buf.resize(cap);
    unsigned char* buf = enc_->buf.data();
    unsigned long size = cap;
    if (tjCompress2(enc_->h, rgb_.data(), o_.width, 0, o_.height, TJPF_RGB, &buf, &size, TJSAMP_420,
                    o_.quality, TJFLAG_NOREALLOC) != 0) {
        throw std::runtime_error(std::string("camera_sim: tjCompress2: ") +
                                 tjGetErrorStr2(enc_->h));
    }
    f.jpeg.assign(reinterpret_cast<const char*>(buf), size);
    ++index_;
    return f;
}

camera_sim_options camera_sim::scenario(int width, int height, double fps, int64_t duration_ms,
                                        int episodes, uint32_t seed) {
    camera_sim_options o;
    o.width = width;
    o.height = height;
    o.fps = fps;
    o.seed = seed;
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 7;
    const int64_t slot = episodes > 0 ? duration_ms / episodes : duration_ms;
    for (int i = 0; i < episodes; ++i) {
        sim_object ob;
        const int64_t len = 4000 + static_cast<int64_t>(uniform(s) * 6000);
        // Starts in the first half of its slot, on a frame boundary, so episodes stay at least
        // half a slot apart (the slot is 20 s or more for the scenarios we use).
        const int64_t start =
            i * slot + 2000 + static_cast<int64_t>(uniform(s) * (slot / 2 - 4000));
        const double frame_ms = 1000.0 / fps;
        ob.start_ms = static_cast<int64_t>(std::ceil(start / frame_ms) * frame_ms);
        ob.end_ms = ob.start_ms + len;
        // 12 to 20 % of the frame height: well above 0.5 % of the area.
        ob.h = static_cast<int>(height * (0.12 + 0.08 * uniform(s)));
        ob.w = static_cast<int>(ob.h * (0.6 + 0.8 * uniform(s)));
        // Paths stay in the lower 80 % of the frame (the distractors wander the top 12 %).
        const double ymin = height * 0.2, ymax = height - ob.h;
        ob.x0 = uniform(s) * (width - ob.w);
        ob.x1 = uniform(s) * (width - ob.w);
        ob.y0 = ymin + uniform(s) * (ymax - ymin);
        ob.y1 = ymin + uniform(s) * (ymax - ymin);
        ob.luma = uniform(s) < 0.5 ? 235 : 25;
        o.objects.push_back(ob);
    }
    // Brightness: a step up and a step down at the ends of two quiet gaps, and a slow ramp.
    if (episodes >= 2) {
        o.brightness.push_back({slot - slot / 6, +45, 0});
        o.brightness.push_back({2 * slot - slot / 6, -45, 0});
    } else {
        o.brightness.push_back({duration_ms * 9 / 10, +45, 0});
    }
    o.brightness.push_back({duration_ms / 3, +20, std::max<int64_t>(60000, duration_ms / 10)});
    o.distractor_count = 2;
    // 1 % of the height: 1.2 rows of 120. With the blur, its ghost (where the model learned
    // it) and the dilation it covers about 50 analysed pixels: half of 0.5 % of 160 x 120.
    o.distractor_size = std::max(2, height / 100);
    return o;
}

double iou(const box& a, const box& b) {
    if (a[2] <= 0 || a[3] <= 0 || b[2] <= 0 || b[3] <= 0) return 0;
    const int x0 = std::max(a[0], b[0]), y0 = std::max(a[1], b[1]);
    const int x1 = std::min(a[0] + a[2], b[0] + b[2]), y1 = std::min(a[1] + a[3], b[1] + b[3]);
    if (x1 <= x0 || y1 <= y0) return 0;
    const double inter = static_cast<double>(x1 - x0) * (y1 - y0);
    const double uni = static_cast<double>(a[2]) * a[3] + static_cast<double>(b[2]) * b[3] - inter;
    return inter / uni;
}

std::string truth_json(const std::vector<truth_episode>& eps, int64_t base_ms) {
    std::string j = "{\"episodes\":[";
    for (size_t i = 0; i < eps.size(); ++i) {
        const truth_episode& e = eps[i];
        if (i) j += ",";
        j += "{\"first_frame\":" + std::to_string(e.first_frame) +
             ",\"last_frame\":" + std::to_string(e.last_frame) +
             ",\"start_ms\":" + std::to_string(base_ms + e.start_ms) +
             ",\"end_ms\":" + std::to_string(base_ms + e.end_ms) + ",\"start_bbox\":[" +
             std::to_string(e.start_bbox[0]) + "," + std::to_string(e.start_bbox[1]) + "," +
             std::to_string(e.start_bbox[2]) + "," + std::to_string(e.start_bbox[3]) + "]}";
    }
    j += "]}";
    return j;
}

}  // namespace egw::test
