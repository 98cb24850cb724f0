// SPDX-License-Identifier: Apache-2.0
#include "motion_detector.h"

#include <algorithm>
#include <cstring>

namespace egw::camera {

namespace {

// Fixed-point running average: 8 fractional bits; alphas as right shifts.
constexpr int bg_shift = 8;
// One weight everywhere, 1/16 per frame. Learning slower under motion looks tempting but leaves
// a trail of ghosts behind anything that moves (its old positions stay in the model), and the
// ghosts of a small distractor merge into a component above min_area. At 1/16 a place an object
// covered for one or two frames moves the model by 6-12 % of the contrast, under any sensible
// pixel_threshold.
constexpr int alpha_shift = 4;
constexpr int dilate_radius = 2;  // 5x5 square = a 3x3 kernel applied twice

void blur3(const uint8_t* src, int w, int h, uint8_t* tmp, uint8_t* dst) {
    for (int y = 0; y < h; ++y) {
        const uint8_t* s = src + static_cast<size_t>(y) * w;
        uint8_t* t = tmp + static_cast<size_t>(y) * w;
        for (int x = 0; x < w; ++x) {
            const int l = s[x > 0 ? x - 1 : 0], r = s[x < w - 1 ? x + 1 : w - 1];
            t[x] = static_cast<uint8_t>((l + 2 * s[x] + r + 2) >> 2);
        }
    }
    for (int y = 0; y < h; ++y) {
        const uint8_t* u = tmp + static_cast<size_t>(y > 0 ? y - 1 : 0) * w;
        const uint8_t* m = tmp + static_cast<size_t>(y) * w;
        const uint8_t* d = tmp + static_cast<size_t>(y < h - 1 ? y + 1 : h - 1) * w;
        uint8_t* o = dst + static_cast<size_t>(y) * w;
        for (int x = 0; x < w; ++x) o[x] = static_cast<uint8_t>((u[x] + 2 * m[x] + d[x] + 2) >> 2);
    }
}

// Separable max filter of radius r on a 0/1 mask, as running counts over the window: O(1) per
// pixel whatever r, and loops the compiler vectorises.
void dilate(const uint8_t* src, int w, int h, int r, uint8_t* tmp, uint8_t* dst,
            std::vector<uint16_t>& colsum) {
    for (int y = 0; y < h; ++y) {
        const uint8_t* s = src + static_cast<size_t>(y) * w;
        uint8_t* t = tmp + static_cast<size_t>(y) * w;
        int run = 0;
        for (int k = 0; k < std::min(r, w); ++k) run += s[k];
        for (int x = 0; x < w; ++x) {
            if (x + r < w) run += s[x + r];
            if (x - r - 1 >= 0) run -= s[x - r - 1];
            t[x] = run > 0 ? 1 : 0;
        }
    }
    colsum.assign(static_cast<size_t>(w), 0);
    for (int k = 0; k < std::min(r, h); ++k) {
        const uint8_t* row = tmp + static_cast<size_t>(k) * w;
        for (int x = 0; x < w; ++x) colsum[x] += row[x];
    }
    for (int y = 0; y < h; ++y) {
        if (y + r < h) {
            const uint8_t* add = tmp + static_cast<size_t>(y + r) * w;
            for (int x = 0; x < w; ++x) colsum[x] += add[x];
        }
        if (y - r - 1 >= 0) {
            const uint8_t* sub = tmp + static_cast<size_t>(y - r - 1) * w;
            for (int x = 0; x < w; ++x) colsum[x] -= sub[x];
        }
        uint8_t* o = dst + static_cast<size_t>(y) * w;
        for (int x = 0; x < w; ++x) o[x] = colsum[x] > 0 ? 1 : 0;
    }
}

}  // namespace

motion_result motion_detector::analyse(const gray_image& luma, int frame_w, int frame_h) {
    motion_result r;
    if (luma.width <= 0 || luma.height <= 0) return r;
    const int ah = std::min(p_.scale_height, luma.height);
    const int aw = std::max(
        1,
        static_cast<int>((static_cast<int64_t>(luma.width) * ah + luma.height / 2) / luma.height));
    const size_t n = static_cast<size_t>(aw) * ah;
    small_.resize(n);
    if (aw == luma.width && ah == luma.height) {
        std::memcpy(small_.data(), luma.pixels.data(), n);
    } else {
        resize_bilinear(luma.pixels.data(), luma.width, luma.height, 1, small_.data(), aw, ah);
    }
    tmp_.resize(n);
    blurred_.resize(n);
    blur3(small_.data(), aw, ah, tmp_.data(), blurred_.data());

    if (bg_.size() != n || aw != aw_ || ah != ah_) {
        aw_ = aw;
        ah_ = ah;
        bg_.resize(n);
        for (size_t i = 0; i < n; ++i) bg_[i] = static_cast<int32_t>(blurred_[i]) << bg_shift;
        r.relearned = true;
        return r;
    }

    mask_.resize(n);
    const int32_t thr = p_.pixel_threshold;
    size_t changed = 0;
    for (size_t i = 0; i < n; ++i) {
        const int32_t bgv = (bg_[i] + (1 << (bg_shift - 1))) >> bg_shift;
        const int32_t d = blurred_[i] - bgv;
        const uint8_t m = (d > thr || d < -thr) ? 1 : 0;
        mask_[i] = m;
        changed += m;
    }
    r.changed_pct = 100.0 * static_cast<double>(changed) / static_cast<double>(n);
    if (r.changed_pct > p_.relearn_above_pct) {
        for (size_t i = 0; i < n; ++i) bg_[i] = static_cast<int32_t>(blurred_[i]) << bg_shift;
        r.relearned = true;
        return r;
    }

    dilated_.resize(n);
    dilate(mask_.data(), aw, ah, dilate_radius, tmp_.data(), dilated_.data(), colsum_);

    // Connected components (4-connected) of the dilated mask by flood fill.
    labels_.assign(n, 0);
    const double min_area = p_.min_area_pct / 100.0 * static_cast<double>(n);
    size_t kept_area = 0;
    int bx0 = aw, by0 = ah, bx1 = -1, by1 = -1;
    int label = 0;
    for (size_t start = 0; start < n; ++start) {
        if (!dilated_[start] || labels_[start] != 0) continue;
        ++label;
        size_t area = 0;
        int cx0 = aw, cy0 = ah, cx1 = -1, cy1 = -1;  // bbox of undilated pixels
        stack_.clear();
        stack_.push_back(static_cast<int>(start));
        labels_[start] = label;
        while (!stack_.empty()) {
            const int p = stack_.back();
            stack_.pop_back();
            ++area;
            const int x = p % aw, y = p / aw;
            if (mask_[p]) {
                cx0 = std::min(cx0, x);
                cy0 = std::min(cy0, y);
                cx1 = std::max(cx1, x);
                cy1 = std::max(cy1, y);
            }
            const int nb[4] = {x > 0 ? p - 1 : -1, x < aw - 1 ? p + 1 : -1, y > 0 ? p - aw : -1,
                               y < ah - 1 ? p + aw : -1};
            for (int q : nb) {
                if (q >= 0 && dilated_[q] && labels_[q] == 0) {
                    labels_[q] = label;
                    stack_.push_back(q);
                }
            }
        }
        if (static_cast<double>(area) >= min_area) {
            kept_area += area;
            bx0 = std::min(bx0, cx0);
            by0 = std::min(by0, cy0);
            bx1 = std::max(bx1, cx1);
            by1 = std::max(by1, cy1);
        }
    }

    for (size_t i = 0; i < n; ++i) {
        const int32_t target = static_cast<int32_t>(blurred_[i]) << bg_shift;
        bg_[i] += (target - bg_[i]) / (1 << alpha_shift);
    }

    if (kept_area > 0 && bx1 >= 0) {
        r.motion = true;
        r.score = 100.0 * static_cast<double>(kept_area) / static_cast<double>(n);
        // Analysed pixel [x, x+1) maps to frame [x * fw / aw, (x+1) * fw / aw).
        const auto map = [](int v, int from, int to) {
            return static_cast<int>(static_cast<int64_t>(v) * to / from);
        };
        const int x0 = map(bx0, aw, frame_w), y0 = map(by0, ah, frame_h);
        const int x1 = map(bx1 + 1, aw, frame_w), y1 = map(by1 + 1, ah, frame_h);
        r.bbox = {x0, y0, std::max(1, x1 - x0), std::max(1, y1 - y0)};
    }
    return r;
}

void motion_detector::save(std::string& out) const {
    put_u32(out, static_cast<uint32_t>(aw_));
    put_u32(out, static_cast<uint32_t>(ah_));
    put_u32(out, static_cast<uint32_t>(bg_.size()));
    // 16 bits carry the whole model: 8 integer + 8 fractional bits of a value in [0, 255].
    const size_t at = out.size();
    out.resize(at + bg_.size() * 2);
    for (size_t i = 0; i < bg_.size(); ++i) {
        const uint32_t v = static_cast<uint32_t>(std::clamp(bg_[i], 0, 0xFFFF));
        out[at + 2 * i] = static_cast<char>(v & 0xFF);
        out[at + 2 * i + 1] = static_cast<char>(v >> 8);
    }
}

bool motion_detector::restore(std::string_view& in) {
    uint32_t w = 0, h = 0, n = 0;
    bg_.clear();
    aw_ = ah_ = 0;
    if (!get_u32(in, w) || !get_u32(in, h) || !get_u32(in, n)) return false;
    if (static_cast<uint64_t>(w) * h != n || n > (1u << 24) || in.size() < size_t{n} * 2)
        return false;
    bg_.resize(n);
    for (size_t i = 0; i < n; ++i) {
        bg_[i] = static_cast<int32_t>(static_cast<uint8_t>(in[2 * i])) |
                 (static_cast<int32_t>(static_cast<uint8_t>(in[2 * i + 1])) << 8);
    }
    in.remove_prefix(size_t{n} * 2);
    aw_ = static_cast<int>(w);
    ah_ = static_cast<int>(h);
    return true;
}

void put_u32(std::string& out, uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
void put_u64(std::string& out, uint64_t v) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
void put_f64(std::string& out, double v) {
    uint64_t u = 0;
    std::memcpy(&u, &v, sizeof u);
    put_u64(out, u);
}
void put_bytes(std::string& out, std::string_view b) {
    put_u64(out, b.size());
    out.append(b);
}
bool get_u32(std::string_view& in, uint32_t& v) {
    if (in.size() < 4) return false;
    v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<uint8_t>(in[i])) << (8 * i);
    in.remove_prefix(4);
    return true;
}
bool get_u64(std::string_view& in, uint64_t& v) {
    if (in.size() < 8) return false;
    v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(in[i])) << (8 * i);
    in.remove_prefix(8);
    return true;
}
bool get_f64(std::string_view& in, double& v) {
    uint64_t u = 0;
    if (!get_u64(in, u)) return false;
    std::memcpy(&v, &u, sizeof v);
    return true;
}
bool get_bytes(std::string_view& in, std::string& b, size_t max_len) {
    uint64_t n = 0;
    if (!get_u64(in, n) || n > max_len || n > in.size()) return false;
    b.assign(in.substr(0, n));
    in.remove_prefix(n);
    return true;
}

}  // namespace egw::camera
