// SPDX-License-Identifier: Apache-2.0
// window-stats: tumbling windows over a numeric JSON field, one series per input topic.
//
// Config: {"field": "env.temp", "window_s": 10}. A reading whose ingest time ts_ms falls in
// [k * window_s * 1000, (k + 1) * window_s * 1000) belongs to window k of its topic. When the
// window closes, the instance emits on "{topic}/window" (application/json):
//   {"field", "count", "min", "max", "mean", "stddev" (population), "last",
//    "window_start_ms", "window_end_ms" (exclusive)}
// A window closes when a reading of a later window arrives on its topic, when any reading's
// ingest time passes its end by kCloseDelayMs, or when the timer the instance keeps armed at
// the earliest open end + kCloseDelayMs fires. Windows with no counted reading emit nothing.
//
// Skipped, never failed: a payload that is not JSON, lacks the field, or holds a non-number
// there is counted and logged at debug level and the hook returns EGW_OK (a reading without the
// field is the sensor's business, not a plugin failure). A reading older than a window already
// summarized on its topic, or older than its open window (the clock stepped back), is "late":
// counted and logged at warn level, since counting it elsewhere would put it in a summary that
// is not the one of its ingest time.
//
// State: the open windows (count, min, max, sum, Welford's mean and M2, last), the end of the
// last summarized window per topic, and the skip counters; on_snapshot writes all of it with
// doubles as IEEE bits, so restore -> continue yields the same summaries, to the bit, as an
// uninterrupted run. Fast plugin (runs on the loop), one call at a time.
#include <edge-gateway/plugin.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "plugin_util.h"

namespace {

using namespace egw::plugin_util;

// How long after a window's end the instance waits for stragglers (readings ingested just
// before the end but still on their way through the stage) before a timer closes it. Within a
// second of the end, as documented.
constexpr int64_t kCloseDelayMs = 200;
// window_s above this would overflow ms arithmetic near the epoch's range; 31 years is plenty.
constexpr int64_t kMaxWindowS = 1'000'000'000;

struct window {
    int64_t start_ms = 0;
    uint64_t count = 0;
    double min = 0, max = 0, sum = 0, mean = 0, m2 = 0, last = 0;

    void add(double v) {
        if (count == 0) {
            min = max = v;
        } else {
            min = std::min(min, v);
            max = std::max(max, v);
        }
        ++count;
        sum += v;
        // Welford: stable in one pass, and exact for the small sets tests reason about.
        double delta = v - mean;
        mean += delta / static_cast<double>(count);
        m2 += delta * (v - mean);
        last = v;
    }
};

struct series {
    bool open = false;
    window w;
    // End of the last summarized window: readings before it are late.
    int64_t closed_until_ms = INT64_MIN;
};

struct counters {
    uint64_t malformed = 0, missing = 0, not_numeric = 0, late = 0;
};

class window_stats {
public:
    window_stats(const egw_host* host, void* ctx, const json& config)
        : host_(host), log_(host, ctx) {
        check_known_keys(config, {"field", "window_s"});
        field_ = required_field_path(config, "field");
        reader_.emplace(field_);
        auto it = config.find("window_s");
        if (it == config.end()) throw config_error("window_s: required");
        if (!it->is_number_integer() || it->get<int64_t>() <= 0)
            throw config_error("window_s: must be a positive integer");
        if (it->get<int64_t>() > kMaxWindowS)
            throw config_error("window_s: must be at most 1000000000");
        width_ms_ = it->get<int64_t>() * 1000;
    }

    int on_message(const egw_message* m, egw_call* call) {
        std::string_view topic(m->topic, m->topic_len);
        double v = 0;
        auto st = reader_->read(m->payload, m->payload_len, v);
        if (st != reading_status::ok) {
            skip(st, topic);
        } else {
            int64_t start = align_down(m->ts_ms, width_ms_);
            auto it = series_.find(topic);
            if (it == series_.end()) it = series_.emplace(std::string(topic), series{}).first;
            series& s = it->second;
            if (s.open && start > s.w.start_ms) {
                if (close(it->first, s, call) != EGW_OK) return EGW_ERROR;
            }
            if ((s.open && start < s.w.start_ms) || (!s.open && start < s.closed_until_ms)) {
                ++counters_.late;
                log_.warn("late reading on " + std::string(topic) + " at ts_ms " +
                          std::to_string(m->ts_ms) +
                          ": older than the topic's open or last summarized window (" +
                          std::to_string(counters_.late) + " late so far)");
            } else {
                if (!s.open) {
                    s.open = true;
                    s.w = window{};
                    s.w.start_ms = start;
                    next_due_ = std::min(next_due_, start + width_ms_ + kCloseDelayMs);
                }
                s.w.add(v);
            }
        }
        // Ingest time moving on closes other topics' windows too, without waiting for the timer.
        if (close_due(m->ts_ms, call) != EGW_OK) return EGW_ERROR;
        arm(call);
        return EGW_OK;
    }

    int on_timer(int64_t now_ms, egw_call* call) {
        if (close_due(now_ms, call) != EGW_OK) return EGW_ERROR;
        armed_ms_ = -1;  // the host's timer fired: ask again even for the same time
        arm(call);
        return EGW_OK;
    }

    int on_snapshot(egw_call* call) {
        json j;
        j["v"] = 1;
        j["width_ms"] = width_ms_;
        j["field"] = field_;
        j["skipped"] = {counters_.malformed, counters_.missing, counters_.not_numeric,
                        counters_.late};
        json topics = json::array();
        for (const auto& [topic, s] : series_) {
            json t = {{"t", topic}, {"closed_until", s.closed_until_ms}};
            if (s.open) {
                const window& w = s.w;
                t["w"] = {w.start_ms,  w.count,      bits(w.min), bits(w.max),
                          bits(w.sum), bits(w.mean), bits(w.m2),  bits(w.last)};
            }
            topics.push_back(std::move(t));
        }
        j["topics"] = std::move(topics);
        std::string text = j.dump();
        return host_->write_state(call, reinterpret_cast<const uint8_t*>(text.data()), text.size());
    }

    int on_restore(const uint8_t* state, size_t len) {
        json j = json::parse(state, state + len, nullptr, false);
        if (j.is_discarded() || !j.is_object() || j.value("v", 0) != 1) {
            log_.error("restore: not a window-stats v1 snapshot");
            return EGW_ERROR;
        }
        // A snapshot taken with another window width or field describes other windows: start
        // afresh rather than mixing them (the config changed, so did the meaning of the state).
        if (j.at("width_ms").get<int64_t>() != width_ms_ ||
            j.at("field").get<std::string>() != field_) {
            log_.warn("restore: snapshot was taken with another field or window_s; ignored");
            return EGW_OK;
        }
        std::map<std::string, series, std::less<>> restored;
        for (const auto& t : j.at("topics")) {
            series s;
            s.closed_until_ms = t.at("closed_until").get<int64_t>();
            if (auto w = t.find("w"); w != t.end()) {
                s.open = true;
                s.w.start_ms = w->at(0).get<int64_t>();
                s.w.count = w->at(1).get<uint64_t>();
                s.w.min = from_bits(w->at(2).get<uint64_t>());
                s.w.max = from_bits(w->at(3).get<uint64_t>());
                s.w.sum = from_bits(w->at(4).get<uint64_t>());
                s.w.mean = from_bits(w->at(5).get<uint64_t>());
                s.w.m2 = from_bits(w->at(6).get<uint64_t>());
                s.w.last = from_bits(w->at(7).get<uint64_t>());
            }
            restored.emplace(t.at("t").get<std::string>(), s);
        }
        const auto& sk = j.at("skipped");
        counters_ = {sk.at(0).get<uint64_t>(), sk.at(1).get<uint64_t>(), sk.at(2).get<uint64_t>(),
                     sk.at(3).get<uint64_t>()};
        series_ = std::move(restored);
        armed_ms_ = -1;
        due_stale_ = true;
        return EGW_OK;
    }

    const logger& log() const { return log_; }

private:
    void skip(reading_status st, std::string_view topic) {
        uint64_t n = 0;
        switch (st) {
            case reading_status::malformed:
                n = ++counters_.malformed;
                break;
            case reading_status::missing:
                n = ++counters_.missing;
                break;
            default:
                n = ++counters_.not_numeric;
                break;
        }
        log_.debug("skipped a reading on " + std::string(topic) + " (" + field_ +
                   "): " + to_string(st) + " (" + std::to_string(n) + " so far)");
    }

    int close(const std::string& topic, series& s, egw_call* call) {
        const window& w = s.w;
        double var = std::max(0.0, w.m2 / static_cast<double>(w.count));
        nlohmann::ordered_json out;
        out["field"] = field_;
        out["count"] = w.count;
        out["min"] = w.min;
        out["max"] = w.max;
        out["mean"] = w.sum / static_cast<double>(w.count);
        out["stddev"] = w.count == 1 ? 0.0 : std::sqrt(var);
        out["last"] = w.last;
        out["window_start_ms"] = w.start_ms;
        out["window_end_ms"] = w.start_ms + width_ms_;
        s.open = false;
        s.closed_until_ms = w.start_ms + width_ms_;
        due_stale_ = true;
        return emit_json(host_, call, topic + "/window", out.dump());
    }

    // Closes every open window whose end + kCloseDelayMs is at or before now_ms, in order of
    // end then topic so that the output order does not depend on the map's layout.
    int close_due(int64_t now_ms, egw_call* call) {
        if (next_due() > now_ms) return EGW_OK;
        std::vector<std::pair<int64_t, decltype(series_)::iterator>> due;
        for (auto it = series_.begin(); it != series_.end(); ++it) {
            if (it->second.open && it->second.w.start_ms + width_ms_ + kCloseDelayMs <= now_ms)
                due.emplace_back(it->second.w.start_ms, it);
        }
        std::stable_sort(due.begin(), due.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
        for (auto& [start, it] : due) {
            if (close(it->first, it->second, call) != EGW_OK) return EGW_ERROR;
        }
        return EGW_OK;
    }

    // The earliest time at which some open window is due, INT64_MAX when none is open. Cached:
    // recomputed (a pass over the topics) only after a window closed.
    int64_t next_due() {
        if (due_stale_) {
            next_due_ = INT64_MAX;
            for (const auto& [topic, s] : series_) {
                if (s.open)
                    next_due_ = std::min(next_due_, s.w.start_ms + width_ms_ + kCloseDelayMs);
            }
            due_stale_ = false;
        }
        return next_due_;
    }

    void arm(egw_call* call) {
        int64_t due = next_due();
        int64_t want = due == INT64_MAX ? 0 : due;
        if (want != armed_ms_) {
            host_->set_timer(call, want);
            armed_ms_ = want;
        }
    }

    const egw_host* host_;
    logger log_;
    std::string field_;
    std::optional<field_reader> reader_;  // set in the constructor; optional only for its order
    int64_t width_ms_ = 0;
    std::map<std::string, series, std::less<>> series_;
    counters counters_;
    int64_t armed_ms_ = -1;  // the timer last asked for; -1 unknown (after create or restore)
    int64_t next_due_ = INT64_MAX;
    bool due_stale_ = false;
};

void* ws_create(const egw_host* host, void* ctx, const char* config, size_t len, char* error,
                size_t cap) {
    try {
        return new window_stats(host, ctx, parse_config(config, len));
    } catch (const std::exception& e) {
        write_error(error, cap, e.what());
    } catch (...) {
        write_error(error, cap, "config: rejected");
    }
    return nullptr;
}

void ws_destroy(void* inst) { delete static_cast<window_stats*>(inst); }

int ws_on_message(void* inst, const egw_message* m, egw_call* call) {
    auto* self = static_cast<window_stats*>(inst);
    return guard(self->log(), "on_message", [&] { return self->on_message(m, call); });
}

int ws_on_timer(void* inst, int64_t now_ms, egw_call* call) {
    auto* self = static_cast<window_stats*>(inst);
    return guard(self->log(), "on_timer", [&] { return self->on_timer(now_ms, call); });
}

int ws_on_snapshot(void* inst, egw_call* call) {
    auto* self = static_cast<window_stats*>(inst);
    return guard(self->log(), "on_snapshot", [&] { return self->on_snapshot(call); });
}

int ws_on_restore(void* inst, const uint8_t* state, size_t len) {
    auto* self = static_cast<window_stats*>(inst);
    return guard(self->log(), "on_restore", [&] { return self->on_restore(state, len); });
}

const egw_plugin kDescriptor = {
    EGW_ABI_MAJOR, EGW_ABI_MINOR, sizeof(egw_plugin), 0,           "window-stats", "1.0.0",       0,
    ws_create,     ws_destroy,    ws_on_message,      ws_on_timer, ws_on_snapshot, ws_on_restore,
};

}  // namespace

extern "C" EGW_EXPORT const egw_plugin* egw_plugin_entry(void) { return &kDescriptor; }
