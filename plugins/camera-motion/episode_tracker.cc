// SPDX-License-Identifier: Apache-2.0
#include "episode_tracker.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "motion_detector.h"

namespace egw::camera {

bool parse_keep_mode(std::string_view s, keep_mode& out) {
    if (s == "none") {
        out = keep_mode::none;
    } else if (s == "start") {
        out = keep_mode::start;
    } else if (s == "start+peak") {
        out = keep_mode::start_peak;
    } else if (s == "all-motion") {
        out = keep_mode::all_motion;
    } else {
        return false;
    }
    return true;
}

const char* to_string(keep_mode k) {
    switch (k) {
        case keep_mode::none:
            return "none";
        case keep_mode::start:
            return "start";
        case keep_mode::start_peak:
            return "start+peak";
        case keep_mode::all_motion:
            return "all-motion";
    }
    return "?";
}

namespace {

// Scores to 2 decimals: enough for a %, and stable text across runs.
std::string fmt_score(double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.2f", v);
    return b;
}

std::string fmt_bbox(const std::array<int, 4>& b) {
    char s[80];
    std::snprintf(s, sizeof s, "[%d,%d,%d,%d]", b[0], b[1], b[2], b[3]);
    return s;
}

// The id is made of digits and '-' only, so it needs no JSON escaping.
std::string event_json(const char* event, const std::string& id, const frame_info& f,
                       const std::array<int, 4>& bbox) {
    std::string j = "{\"event\":\"";
    j += event;
    j += "\",\"episode\":\"" + id + "\",\"score\":" + fmt_score(f.score) +
         ",\"bbox\":" + fmt_bbox(bbox) + ",\"frame_ts_ms\":" + std::to_string(f.ts_ms) +
         ",\"width\":" + std::to_string(f.width) + ",\"height\":" + std::to_string(f.height);
    return j;
}

emission frame_out(const frame_info& f, const std::string& id, const char* role) {
    emission e;
    e.what = emission::kind::frame;
    e.jpeg = f.jpeg;
    e.episode = id;
    e.role = role;
    return e;
}

}  // namespace

bool episode_tracker::wants_bytes(bool motion, int64_t ts_ms) const {
    const bool active = active_ && ts_ms - last_motion_.ts_ms < p_.end_after_ms;
    if (active)
        return p_.keep == keep_mode::all_motion || (motion && p_.keep == keep_mode::start_peak);
    if (!motion) return false;
    // The run's first frame always (thumbnail), the others for all-motion and a possible peak.
    return run_.empty() || p_.keep == keep_mode::all_motion || p_.keep == keep_mode::start_peak;
}

void episode_tracker::note_arrival(int64_t ts_ms, int64_t wall_ms) {
    last_arrival_wall_ = wall_ms;
    stale_sent_ = false;
    ++frames_since_heartbeat_;
    last_frame_ts_ = ts_ms;
}

void episode_tracker::heartbeat(int64_t ts_ms, std::vector<emission>& out) {
    if (seen_any_ && ts_ms - last_heartbeat_ts_ < p_.heartbeat_ms) return;
    seen_any_ = true;
    last_heartbeat_ts_ = ts_ms;
    emission e;
    e.json = "{\"event\":\"heartbeat\",\"frames\":" + std::to_string(frames_since_heartbeat_) +
             ",\"frame_ts_ms\":" + std::to_string(ts_ms) +
             ",\"width\":" + std::to_string(last_width_) +
             ",\"height\":" + std::to_string(last_height_) +
             ",\"rejected\":{\"decode_error\":" + std::to_string(rejects_.decode_error) +
             ",\"too_large\":" + std::to_string(rejects_.too_large) +
             ",\"not_jpeg\":" + std::to_string(rejects_.not_jpeg) + "}}";
    if (active_) e.episode = id_;
    frames_since_heartbeat_ = 0;
    out.push_back(std::move(e));
}

void episode_tracker::on_rejected(reject_kind k, int64_t ts_ms, int64_t wall_ms,
                                  std::vector<emission>& out) {
    switch (k) {
        case reject_kind::decode_error:
            ++rejects_.decode_error;
            break;
        case reject_kind::too_large:
            ++rejects_.too_large;
            break;
        case reject_kind::not_jpeg:
            ++rejects_.not_jpeg;
            break;
        case reject_kind::none:
            break;
    }
    note_arrival(ts_ms, wall_ms);
    heartbeat(ts_ms, out);
}

void episode_tracker::start(std::vector<emission>& out) {
    const frame_info& first = run_.front();
    active_ = true;
    id_ = std::to_string(first.ts_ms) + "-" + std::to_string(first.seq);
    start_seq_ = first.seq;
    start_ts_ = first.ts_ms;
    emission ev;
    ev.json = event_json("start", id_, first, first.bbox) + "}";
    ev.episode = id_;
    out.push_back(std::move(ev));
    emission th;
    th.what = emission::kind::thumbnail;
    th.jpeg = first.jpeg;
    th.episode = id_;
    th.role = "start";
    out.push_back(std::move(th));
    if (p_.keep != keep_mode::none) out.push_back(frame_out(first, id_, "start"));
    if (p_.keep == keep_mode::all_motion) {
        for (size_t i = 1; i < run_.size(); ++i) out.push_back(frame_out(run_[i], id_, "motion"));
    }
    peak_ = first;
    for (const frame_info& f : run_) {
        if (f.score > peak_.score) peak_ = f;
    }
    if (p_.keep != keep_mode::start_peak) peak_.jpeg.reset();
    last_motion_ = run_.back();
    last_motion_.jpeg.reset();
    run_.clear();
}

void episode_tracker::end(std::vector<emission>& out) {
    emission ev;
    ev.json = event_json("end", id_, last_motion_, peak_.bbox) +
              ",\"duration_ms\":" + std::to_string(last_motion_.ts_ms - start_ts_) +
              ",\"peak_score\":" + fmt_score(peak_.score) + "}";
    ev.episode = id_;
    out.push_back(std::move(ev));
    if (p_.keep == keep_mode::start_peak && peak_.seq != start_seq_ && peak_.jpeg) {
        out.push_back(frame_out(peak_, id_, "peak"));
    }
    active_ = false;
    peak_ = frame_info{};
    last_motion_ = frame_info{};
}

void episode_tracker::on_frame(const frame_info& f, int64_t wall_ms, std::vector<emission>& out) {
    note_arrival(f.ts_ms, wall_ms);
    last_width_ = f.width;
    last_height_ = f.height;
    if (active_ && f.ts_ms - last_motion_.ts_ms >= p_.end_after_ms) end(out);

    if (f.motion) {
        if (active_) {
            last_motion_ = f;
            last_motion_.jpeg.reset();
            if (f.score > peak_.score) {
                peak_ = f;
                if (p_.keep != keep_mode::start_peak) peak_.jpeg.reset();
            }
            if (p_.keep == keep_mode::all_motion) out.push_back(frame_out(f, id_, "motion"));
        } else {
            frame_info kept = f;
            // Only the first frame's bytes are needed for the thumbnail; later ones for
            // all-motion and for a peak.
            if (!run_.empty() && p_.keep != keep_mode::all_motion &&
                p_.keep != keep_mode::start_peak)
                kept.jpeg.reset();
            run_.push_back(std::move(kept));
            if (static_cast<int>(run_.size()) >= p_.min_frames) start(out);
        }
    } else {
        run_.clear();
        if (active_ && p_.keep == keep_mode::all_motion) out.push_back(frame_out(f, id_, "motion"));
    }
    heartbeat(f.ts_ms, out);
}

void episode_tracker::on_timer(int64_t now_ms, std::vector<emission>& out) {
    if (!seen_any_) return;
    if (active_ && now_ms - last_arrival_wall_ >= p_.end_after_ms) {
        end(out);
        run_.clear();
    }
    if (!stale_sent_ && now_ms - last_arrival_wall_ >= 3 * p_.heartbeat_ms) {
        stale_sent_ = true;
        emission e;
        e.json = "{\"event\":\"heartbeat\",\"frames\":" + std::to_string(frames_since_heartbeat_) +
                 ",\"frame_ts_ms\":" + std::to_string(last_frame_ts_) +
                 ",\"width\":" + std::to_string(last_width_) +
                 ",\"height\":" + std::to_string(last_height_) + ",\"stale\":true}";
        frames_since_heartbeat_ = 0;
        out.push_back(std::move(e));
    }
}

int64_t episode_tracker::next_deadline() const {
    if (!seen_any_) return 0;
    int64_t d = 0;
    if (active_) d = last_arrival_wall_ + p_.end_after_ms;
    if (!stale_sent_) {
        const int64_t s = last_arrival_wall_ + 3 * p_.heartbeat_ms;
        d = d == 0 ? s : std::min(d, s);
    }
    return d;
}

namespace {

constexpr uint32_t frame_flag_motion = 1, frame_flag_bytes = 2;
constexpr size_t max_frame_bytes = size_t{1} << 30;

void put_frame(std::string& out, const frame_info& f) {
    put_u64(out, static_cast<uint64_t>(f.ts_ms));
    put_u64(out, f.seq);
    put_u32(out, static_cast<uint32_t>(f.width));
    put_u32(out, static_cast<uint32_t>(f.height));
    put_f64(out, f.score);
    for (int v : f.bbox) put_u32(out, static_cast<uint32_t>(v));
    put_u32(out, (f.motion ? frame_flag_motion : 0) | (f.jpeg ? frame_flag_bytes : 0));
    if (f.jpeg) put_bytes(out, *f.jpeg);
}

bool get_frame(std::string_view& in, frame_info& f) {
    uint64_t ts = 0, seq = 0;
    uint32_t w = 0, h = 0, flags = 0;
    if (!get_u64(in, ts) || !get_u64(in, seq) || !get_u32(in, w) || !get_u32(in, h) ||
        !get_f64(in, f.score))
        return false;
    for (int& v : f.bbox) {
        uint32_t u = 0;
        if (!get_u32(in, u)) return false;
        v = static_cast<int>(u);
    }
    if (!get_u32(in, flags)) return false;
    f.ts_ms = static_cast<int64_t>(ts);
    f.seq = seq;
    f.width = static_cast<int>(w);
    f.height = static_cast<int>(h);
    f.motion = (flags & frame_flag_motion) != 0;
    f.jpeg.reset();
    if (flags & frame_flag_bytes) {
        auto bytes = std::make_shared<std::string>();
        if (!get_bytes(in, *bytes, max_frame_bytes)) return false;
        f.jpeg = std::move(bytes);
    }
    return true;
}

}  // namespace

void episode_tracker::save(std::string& out) const {
    put_u32(out, static_cast<uint32_t>(run_.size()));
    for (const frame_info& f : run_) put_frame(out, f);
    put_u32(out, active_ ? 1 : 0);
    put_bytes(out, id_);
    put_u64(out, start_seq_);
    put_u64(out, static_cast<uint64_t>(start_ts_));
    put_frame(out, last_motion_);
    put_frame(out, peak_);
    put_u32(out, seen_any_ ? 1 : 0);
    put_u64(out, static_cast<uint64_t>(last_heartbeat_ts_));
    put_u64(out, frames_since_heartbeat_);
    put_u64(out, static_cast<uint64_t>(last_frame_ts_));
    put_u32(out, static_cast<uint32_t>(last_width_));
    put_u32(out, static_cast<uint32_t>(last_height_));
    put_u64(out, static_cast<uint64_t>(last_arrival_wall_));
    put_u32(out, stale_sent_ ? 1 : 0);
    put_u64(out, rejects_.decode_error);
    put_u64(out, rejects_.too_large);
    put_u64(out, rejects_.not_jpeg);
}

bool episode_tracker::restore(std::string_view& in) {
    uint32_t n = 0, active = 0, seen = 0, w = 0, h = 0, stale = 0;
    uint64_t start_ts = 0, hb = 0, lf = 0, wall = 0;
    if (!get_u32(in, n) || n > 10000) return false;
    run_.assign(n, frame_info{});
    for (frame_info& f : run_) {
        if (!get_frame(in, f)) return false;
    }
    if (!get_u32(in, active) || !get_bytes(in, id_, 256) || !get_u64(in, start_seq_) ||
        !get_u64(in, start_ts) || !get_frame(in, last_motion_) || !get_frame(in, peak_) ||
        !get_u32(in, seen) || !get_u64(in, hb) || !get_u64(in, frames_since_heartbeat_) ||
        !get_u64(in, lf) || !get_u32(in, w) || !get_u32(in, h) || !get_u64(in, wall) ||
        !get_u32(in, stale) || !get_u64(in, rejects_.decode_error) ||
        !get_u64(in, rejects_.too_large) || !get_u64(in, rejects_.not_jpeg))
        return false;
    active_ = active != 0;
    start_ts_ = static_cast<int64_t>(start_ts);
    seen_any_ = seen != 0;
    last_heartbeat_ts_ = static_cast<int64_t>(hb);
    last_frame_ts_ = static_cast<int64_t>(lf);
    last_width_ = static_cast<int>(w);
    last_height_ = static_cast<int>(h);
    last_arrival_wall_ = static_cast<int64_t>(wall);
    stale_sent_ = stale != 0;
    return true;
}

}  // namespace egw::camera
