// SPDX-License-Identifier: Apache-2.0
//
// episode_tracker: one camera's motion episodes, heartbeats and reject counters, as a plain
// state machine. It sees each frame's motion decision (from motion_detector) and returns what
// to publish; it never touches libturbojpeg or the host, so the unit tests drive it directly.
//
// Episodes. min_frames consecutive frames with motion start one; its start event describes the
// first frame of that run, and its id is "<first frame's ts_ms>-<its seq>": unique per gateway
// (seq is the buffer's) and the same when the gateway replays the frame after a crash. An
// episode ends when a frame arrives end_after_ms or more (on ingest times, ts_ms) after the last
// frame with motion, or when the wall clock passes the last frame's arrival + end_after_ms with
// no frame at all (on_timer). Rejected frames change nothing but the counters and heartbeats.
//
// Heartbeats. One with the camera's first frame, then one per heartbeat_ms of ingest time while
// frames arrive, with the frames seen since the last one; once more, with stale, when no frame
// arrived for 3 * heartbeat_ms of wall clock.
//
// Frames are shared_ptr'd JPEG bytes: the tracker keeps only the ones it may still publish
// (the pending run's, the peak's), so a still scene holds none.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "jpeg_io.h"

namespace egw::camera {

enum class keep_mode { none, start, start_peak, all_motion };
bool parse_keep_mode(std::string_view s, keep_mode& out);
const char* to_string(keep_mode k);

struct tracker_params {
    int min_frames = 2;
    int64_t end_after_ms = 3000;
    int64_t heartbeat_ms = 60000;
    keep_mode keep = keep_mode::start_peak;
};

using jpeg_ptr = std::shared_ptr<const std::string>;

struct frame_info {
    int64_t ts_ms = 0;
    uint64_t seq = 0;
    int width = 0;
    int height = 0;
    bool motion = false;
    double score = 0;
    std::array<int, 4> bbox{};
    jpeg_ptr jpeg;  // may be null when the tracker will never need the bytes
};

// What to publish, in order.
struct emission {
    enum class kind { event, thumbnail, frame } what = kind::event;
    std::string json;  // event: the JSON payload
    jpeg_ptr jpeg;     // thumbnail: the frame to scale; frame: the bytes to send as they are
    std::string episode;
    const char* role = "";  // "start", "peak", "motion" (thumbnail and frame)
};

struct reject_counts {
    uint64_t decode_error = 0;
    uint64_t too_large = 0;
    uint64_t not_jpeg = 0;
    uint64_t total() const { return decode_error + too_large + not_jpeg; }
};

class episode_tracker {
public:
    explicit episode_tracker(tracker_params p = {}) : p_(p) {}

    // wall_ms: the wall clock when the frame reached the plugin (for on_timer).
    void on_frame(const frame_info& f, int64_t wall_ms, std::vector<emission>& out);
    void on_rejected(reject_kind k, int64_t ts_ms, int64_t wall_ms, std::vector<emission>& out);
    void on_timer(int64_t now_ms, std::vector<emission>& out);

    // The wall-clock instant on_timer has something to do, or 0 for none.
    int64_t next_deadline() const;
    // Whether the tracker needs the bytes of the frame it will see next (a caller that must
    // copy a payload into a jpeg_ptr can skip the copy otherwise).
    bool wants_bytes(bool motion, int64_t ts_ms) const;

    bool in_episode() const { return active_; }
    const std::string& episode_id() const { return id_; }
    const reject_counts& rejects() const { return rejects_; }

    void save(std::string& out) const;
    bool restore(std::string_view& in);

private:
    void heartbeat(int64_t ts_ms, std::vector<emission>& out);
    void start(std::vector<emission>& out);
    void end(std::vector<emission>& out);
    void note_arrival(int64_t ts_ms, int64_t wall_ms);

    tracker_params p_;
    // pending run of consecutive motion frames (not yet an episode)
    std::vector<frame_info> run_;
    // the active episode
    bool active_ = false;
    std::string id_;
    uint64_t start_seq_ = 0;
    int64_t start_ts_ = 0;
    frame_info last_motion_;  // no bytes kept
    frame_info peak_;         // bytes kept for start+peak
    // heartbeats
    bool seen_any_ = false;
    int64_t last_heartbeat_ts_ = 0;
    uint64_t frames_since_heartbeat_ = 0;
    int64_t last_frame_ts_ = 0;
    int last_width_ = 0, last_height_ = 0;
    int64_t last_arrival_wall_ = 0;
    bool stale_sent_ = false;
    reject_counts rejects_;
};

}  // namespace egw::camera
