// SPDX-License-Identifier: Apache-2.0
//
// camera-motion: the plugin's ABI glue (edge-gateway/plugin.h, v1). One instance serves every
// camera its route sends it, keyed by input topic; each camera has a motion_detector and an
// episode_tracker. The algorithm lives in those files; this one parses the config, decodes
// frames through jpeg_codec, turns the tracker's emissions into outputs, arms the one timer
// the host gives an instance, and writes and reads the snapshot.
//
// Heavy (worker pool) and stateful: the host runs one hook of an instance at a time, so the
// instance needs no lock. Nothing throws out of a hook: every entry point catches.
#include <edge-gateway/plugin.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "episode_tracker.h"
#include "jpeg_io.h"
#include "motion_detector.h"

namespace egw::camera {
namespace {

constexpr uint64_t default_max_pixels = 3840ull * 2160ull;
// A topic flood must not grow the instance without bound: each camera holds a background model
// (about 40 KB at 120 rows) and possibly a few frames.
constexpr size_t max_cameras = 1024;
constexpr int thumbnail_quality = 75;
constexpr int64_t reject_log_interval_ms = 60'000;
constexpr char snapshot_magic[] = "EGWCM1";

struct config {
    motion_params motion;
    tracker_params tracker;
    int thumbnail_width = 240;
    uint64_t max_pixels = default_max_pixels;
};

int64_t wall_now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// Parses and validates the instance config; returns "" or a reason naming the key.
std::string parse_config(const char* text, size_t len, config& c) {
    nlohmann::json j;
    try {
        j = len == 0 ? nlohmann::json::object() : nlohmann::json::parse(text, text + len);
    } catch (const std::exception& e) {
        return std::string("config: not valid JSON: ") + e.what();
    }
    if (j.is_null()) j = nlohmann::json::object();
    if (!j.is_object()) return "config: must be an object";
    static const char* const keys[] = {
        "scale_height", "pixel_threshold", "min_area_pct", "relearn_above_pct", "min_frames",
        "end_after_s",  "thumbnail_width", "keep_frames",  "heartbeat_s",       "max_pixels"};
    for (auto it = j.begin(); it != j.end(); ++it) {
        if (std::none_of(std::begin(keys), std::end(keys),
                         [&](const char* k) { return it.key() == k; }))
            return it.key() +
                   ": unknown key (camera-motion takes scale_height, "
                   "pixel_threshold, min_area_pct, relearn_above_pct, min_frames, "
                   "end_after_s, thumbnail_width, keep_frames, heartbeat_s, max_pixels)";
    }
    auto integer = [&](const char* key, int64_t lo, int64_t hi, int64_t& out) -> std::string {
        if (!j.contains(key)) return "";
        const auto& v = j[key];
        if (!v.is_number_integer() &&
            !(v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()))
            return std::string(key) + ": must be an integer";
        const double d = v.get<double>();
        if (d < static_cast<double>(lo) || d > static_cast<double>(hi))
            return std::string(key) + ": must be between " + std::to_string(lo) + " and " +
                   std::to_string(hi);
        out = static_cast<int64_t>(d);
        return "";
    };
    auto number = [&](const char* key, double lo, bool lo_open, double hi,
                      double& out) -> std::string {
        if (!j.contains(key)) return "";
        const auto& v = j[key];
        if (!v.is_number()) return std::string(key) + ": must be a number";
        const double d = v.get<double>();
        if (!std::isfinite(d) || d < lo || (lo_open && d == lo) || d > hi) {
            char b[160];
            std::snprintf(b, sizeof b, "%s: must be %s %g and at most %g", key,
                          lo_open ? "above" : "at least", lo, hi);
            return b;
        }
        out = d;
        return "";
    };
    std::string err;
    int64_t iv = 0;
    double dv = 0;
    iv = c.motion.scale_height;
    if (!(err = integer("scale_height", 8, 2160, iv)).empty()) return err;
    c.motion.scale_height = static_cast<int>(iv);
    iv = c.motion.pixel_threshold;
    if (!(err = integer("pixel_threshold", 1, 254, iv)).empty()) return err;
    c.motion.pixel_threshold = static_cast<int>(iv);
    if (!(err = number("min_area_pct", 0, true, 100, c.motion.min_area_pct)).empty()) return err;
    if (!(err = number("relearn_above_pct", 0, true, 100, c.motion.relearn_above_pct)).empty())
        return err;
    iv = c.tracker.min_frames;
    if (!(err = integer("min_frames", 1, 1000, iv)).empty()) return err;
    c.tracker.min_frames = static_cast<int>(iv);
    dv = 3;
    if (!(err = number("end_after_s", 0, true, 86400, dv)).empty()) return err;
    c.tracker.end_after_ms = static_cast<int64_t>(std::llround(dv * 1000));
    iv = c.thumbnail_width;
    if (!(err = integer("thumbnail_width", 16, 7680, iv)).empty()) return err;
    c.thumbnail_width = static_cast<int>(iv);
    dv = 60;
    if (!(err = number("heartbeat_s", 0, true, 86400, dv)).empty()) return err;
    c.tracker.heartbeat_ms = std::max<int64_t>(1, std::llround(dv * 1000));
    iv = static_cast<int64_t>(default_max_pixels);
    // Up to 16K x 16K; libturbojpeg's own limit is 65500 per side.
    if (!(err = integer("max_pixels", 1, int64_t{16384} * 16384, iv)).empty()) return err;
    c.max_pixels = static_cast<uint64_t>(iv);
    if (j.contains("keep_frames")) {
        const auto& v = j["keep_frames"];
        if (!v.is_string() || !parse_keep_mode(v.get<std::string>(), c.tracker.keep))
            return "keep_frames: must be one of \"none\", \"start\", \"start+peak\", "
                   "\"all-motion\"";
    } else {
        c.tracker.keep = keep_mode::start;
    }
    return "";
}

struct camera_state {
    motion_detector detector;
    episode_tracker tracker;
    camera_state(const config& c) : detector(c.motion), tracker(c.tracker) {}
};

struct instance {
    const egw_host* host = nullptr;
    void* host_ctx = nullptr;
    config cfg;
    jpeg_codec codec;
    gray_image luma;
    std::map<std::string, std::unique_ptr<camera_state>, std::less<>> cameras;
    std::vector<emission> pending;
    std::string thumb;
    reject_counts totals;
    reject_counts logged;
    int64_t last_reject_log_ms = 0;
    int64_t timer_ms = -1;  // what we last asked for (-1: nothing asked yet)
    // Test-only: a frame that starts with this marker crashes the process as a decoder bug
    // would (SIGSEGV), so the isolation tests have a real crash to contain. Set from the
    // environment variable EGW_CAMERA_MOTION_CRASH_MARKER at create(); empty (off) otherwise.
    std::string crash_marker;

    void log(int level, const std::string& s) const {
        if (host != nullptr && host->log != nullptr) host->log(host_ctx, level, s.data(), s.size());
    }
};

// Full topics, never EGW_OUTPUT_SUFFIX: on_timer has no input topic to append to.
int emit_one(instance& in, egw_call* call, const std::string& camera, const emission& e) {
    egw_output out{};
    out.struct_size = sizeof(egw_output);
    out.flags = 0;
    std::string topic = camera;
    out.priority = EGW_PRIORITY_ROUTE;
    egw_property props[2];
    const std::string_view role = e.role;
    switch (e.what) {
        case emission::kind::event:
            topic += "/motion";
            out.payload = reinterpret_cast<const uint8_t*>(e.json.data());
            out.payload_len = e.json.size();
            out.content_type = "application/json";
            break;
        case emission::kind::thumbnail: {
            std::string reason;
            if (!e.jpeg ||
                !in.codec.thumbnail(reinterpret_cast<const uint8_t*>(e.jpeg->data()),
                                    e.jpeg->size(), in.cfg.max_pixels, in.cfg.thumbnail_width,
                                    thumbnail_quality, in.thumb, reason)) {
                // The frame decoded a moment ago, so this is an encoder failure: the event went
                // out, the thumbnail is skipped and said so.
                in.log(EGW_LOG_WARN,
                       "camera-motion: no thumbnail for episode " + e.episode + ": " + reason);
                return EGW_OK;
            }
            topic += "/thumbnail";
            out.payload = reinterpret_cast<const uint8_t*>(in.thumb.data());
            out.payload_len = in.thumb.size();
            out.content_type = "image/jpeg";
            break;
        }
        case emission::kind::frame:
            if (!e.jpeg) return EGW_OK;
            topic += "/frame";
            out.payload = reinterpret_cast<const uint8_t*>(e.jpeg->data());
            out.payload_len = e.jpeg->size();
            out.content_type = "image/jpeg";
            break;
    }
    out.topic = topic.data();
    out.topic_len = topic.size();
    out.content_type_len = std::strlen(out.content_type);
    if (e.what != emission::kind::event) {
        props[0] = {"egw-episode", 11, e.episode.data(), e.episode.size()};
        props[1] = {"egw-role", 8, role.data(), role.size()};
        out.properties = props;
        out.property_count = 2;
    }
    return in.host->emit(call, &out);
}

// Emits what the trackers produced for `camera` (in.pending) and re-arms the timer.
int flush(instance& in, egw_call* call, const std::string& camera) {
    int rc = EGW_OK;
    for (const emission& e : in.pending) {
        if (emit_one(in, call, camera, e) != EGW_OK) {
            rc = EGW_ERROR;
            break;
        }
    }
    in.pending.clear();
    return rc;
}

void arm_timer(instance& in, egw_call* call) {
    int64_t next = 0;
    for (const auto& [topic, cam] : in.cameras) {
        const int64_t d = cam->tracker.next_deadline();
        if (d != 0 && (next == 0 || d < next)) next = d;
    }
    if (next != in.timer_ms && in.host->set_timer != nullptr) {
        in.host->set_timer(call, next);
        in.timer_ms = next;
    }
}

void log_rejects(instance& in, int64_t now_ms, bool force) {
    if (in.totals.total() == in.logged.total()) return;
    if (!force && now_ms - in.last_reject_log_ms < reject_log_interval_ms) return;
    in.last_reject_log_ms = now_ms;
    in.logged = in.totals;
    char b[200];
    std::snprintf(b, sizeof b,
                  "camera-motion: rejected frames so far: decode_error=%" PRIu64
                  " too_large=%" PRIu64 " not_jpeg=%" PRIu64,
                  in.totals.decode_error, in.totals.too_large, in.totals.not_jpeg);
    in.log(EGW_LOG_WARN, b);
}

void* cm_create(const egw_host* host, void* host_ctx, const char* config_json, size_t config_len,
                char* error, size_t error_cap) noexcept {
    try {
        config c;
        const std::string err = parse_config(config_json, config_len, c);
        if (!err.empty()) {
            if (error != nullptr && error_cap > 0) {
                const size_t n = std::min(err.size(), error_cap - 1);
                std::memcpy(error, err.data(), n);
                error[n] = '\0';
            }
            return nullptr;
        }
        auto in = std::make_unique<instance>();
        in->host = host;
        in->host_ctx = host_ctx;
        in->cfg = c;
        if (const char* m = std::getenv("EGW_CAMERA_MOTION_CRASH_MARKER"); m != nullptr && *m) {
            in->crash_marker = m;
            in->log(EGW_LOG_WARN,
                    "camera-motion: test crash marker set: frames starting with "
                    "it crash this process");
        }
        return in.release();
    } catch (const std::exception& e) {
        if (error != nullptr && error_cap > 0) std::snprintf(error, error_cap, "%s", e.what());
        return nullptr;
    } catch (...) {
        if (error != nullptr && error_cap > 0) std::snprintf(error, error_cap, "unknown exception");
        return nullptr;
    }
}

void cm_destroy(void* p) noexcept { delete static_cast<instance*>(p); }

int cm_on_message(void* p, const egw_message* msg, egw_call* call) noexcept {
    auto& in = *static_cast<instance*>(p);
    try {
        const std::string_view topic(msg->topic, msg->topic_len);
        auto it = in.cameras.find(topic);
        if (it == in.cameras.end()) {
            if (in.cameras.size() >= max_cameras) {
                in.log(EGW_LOG_ERROR,
                       "camera-motion: more than 1024 cameras on one instance; "
                       "refusing " +
                           std::string(topic));
                return EGW_ERROR;
            }
            it = in.cameras.emplace(std::string(topic), std::make_unique<camera_state>(in.cfg))
                     .first;
        }
        camera_state& cam = *it->second;
        const int64_t wall = wall_now_ms();
        if (!in.crash_marker.empty() && msg->payload_len >= in.crash_marker.size() &&
            std::memcmp(msg->payload, in.crash_marker.data(), in.crash_marker.size()) == 0) {
            std::signal(SIGSEGV, SIG_DFL);  // past ASan's handler: a real crash in every build
            std::raise(SIGSEGV);
        }
        const decode_result d = in.codec.decode_luma(
            msg->payload, msg->payload_len, in.cfg.max_pixels, in.cfg.motion.scale_height, in.luma);
        if (!d.ok()) {
            reject_counts& t = in.totals;
            const uint64_t before = d.reject == reject_kind::decode_error ? t.decode_error++
                                    : d.reject == reject_kind::too_large  ? t.too_large++
                                                                          : t.not_jpeg++;
            if (before == 0) {
                in.log(EGW_LOG_WARN, "camera-motion: " + std::string(topic) + ": frame seq " +
                                         std::to_string(msg->seq) + " skipped (" +
                                         to_string(d.reject) + "): " + d.reason);
            }
            log_rejects(in, wall, false);
            cam.tracker.on_rejected(d.reject, msg->ts_ms, wall, in.pending);
            const int rc = flush(in, call, it->first);
            arm_timer(in, call);
            return rc;
        }
        const motion_result m = cam.detector.analyse(in.luma, d.frame_width, d.frame_height);
        frame_info f;
        f.ts_ms = msg->ts_ms;
        f.seq = msg->seq;
        f.width = d.frame_width;
        f.height = d.frame_height;
        f.motion = m.motion;
        f.score = m.score;
        f.bbox = m.bbox;
        if (cam.tracker.wants_bytes(m.motion, msg->ts_ms)) {
            f.jpeg = std::make_shared<const std::string>(
                reinterpret_cast<const char*>(msg->payload), msg->payload_len);
        }
        cam.tracker.on_frame(f, wall, in.pending);
        log_rejects(in, wall, false);
        const int rc = flush(in, call, it->first);
        arm_timer(in, call);
        return rc;
    } catch (const std::exception& e) {
        in.pending.clear();
        in.log(EGW_LOG_ERROR, std::string("camera-motion: ") + e.what());
        return EGW_ERROR;
    } catch (...) {
        in.pending.clear();
        in.log(EGW_LOG_ERROR, "camera-motion: unknown exception");
        return EGW_ERROR;
    }
}

int cm_on_timer(void* p, int64_t now_ms, egw_call* call) noexcept {
    auto& in = *static_cast<instance*>(p);
    try {
        in.timer_ms = -1;  // the host's timer fired: whatever we want next must be asked again
        int rc = EGW_OK;
        for (auto& [topic, cam] : in.cameras) {
            cam->tracker.on_timer(now_ms, in.pending);
            if (rc == EGW_OK) {
                rc = flush(in, call, topic);
            } else {
                in.pending.clear();
            }
        }
        log_rejects(in, now_ms, false);
        arm_timer(in, call);
        return rc;
    } catch (const std::exception& e) {
        in.pending.clear();
        in.log(EGW_LOG_ERROR, std::string("camera-motion: ") + e.what());
        return EGW_ERROR;
    } catch (...) {
        in.pending.clear();
        in.log(EGW_LOG_ERROR, "camera-motion: unknown exception");
        return EGW_ERROR;
    }
}

int cm_on_snapshot(void* p, egw_call* call) noexcept {
    auto& in = *static_cast<instance*>(p);
    try {
        std::string s(snapshot_magic, sizeof snapshot_magic - 1);
        put_u32(s, static_cast<uint32_t>(in.cameras.size()));
        for (const auto& [topic, cam] : in.cameras) {
            put_bytes(s, topic);
            cam->detector.save(s);
            cam->tracker.save(s);
        }
        return in.host->write_state(call, reinterpret_cast<const uint8_t*>(s.data()), s.size());
    } catch (const std::exception& e) {
        in.log(EGW_LOG_ERROR, std::string("camera-motion: snapshot: ") + e.what());
        return EGW_ERROR;
    } catch (...) {
        in.log(EGW_LOG_ERROR, "camera-motion: snapshot: unknown exception");
        return EGW_ERROR;
    }
}

int cm_on_restore(void* p, const uint8_t* state, size_t len) noexcept {
    auto& in = *static_cast<instance*>(p);
    try {
        std::string_view s(reinterpret_cast<const char*>(state), len);
        const std::string_view magic(snapshot_magic, sizeof snapshot_magic - 1);
        uint32_t n = 0;
        bool ok = s.substr(0, magic.size()) == magic;
        if (ok) s.remove_prefix(magic.size());
        ok = ok && get_u32(s, n) && n <= max_cameras;
        std::map<std::string, std::unique_ptr<camera_state>, std::less<>> cams;
        for (uint32_t i = 0; ok && i < n; ++i) {
            std::string topic;
            auto cam = std::make_unique<camera_state>(in.cfg);
            ok = get_bytes(s, topic, 65535) && cam->detector.restore(s) && cam->tracker.restore(s);
            if (ok) cams.emplace(std::move(topic), std::move(cam));
        }
        if (!ok || !s.empty()) {
            in.log(EGW_LOG_ERROR, "camera-motion: snapshot of " + std::to_string(len) +
                                      " bytes is malformed; refusing it");
            return EGW_ERROR;
        }
        in.cameras = std::move(cams);
        for (const auto& [topic, cam] : in.cameras) {
            const reject_counts& r = cam->tracker.rejects();
            in.totals.decode_error += r.decode_error;
            in.totals.too_large += r.too_large;
            in.totals.not_jpeg += r.not_jpeg;
        }
        in.logged = in.totals;
        return EGW_OK;
    } catch (const std::exception& e) {
        in.log(EGW_LOG_ERROR, std::string("camera-motion: restore: ") + e.what());
        return EGW_ERROR;
    } catch (...) {
        in.log(EGW_LOG_ERROR, "camera-motion: restore: unknown exception");
        return EGW_ERROR;
    }
}

const egw_plugin descriptor = {
    EGW_ABI_MAJOR,
    EGW_ABI_MINOR,
    sizeof(egw_plugin),
    EGW_PLUGIN_HEAVY,
    "camera-motion",
    "1.0.0",
    1,
    cm_create,
    cm_destroy,
    cm_on_message,
    cm_on_timer,
    cm_on_snapshot,
    cm_on_restore,
};

}  // namespace
}  // namespace egw::camera

extern "C" EGW_EXPORT const egw_plugin* egw_plugin_entry(void) { return &egw::camera::descriptor; }
