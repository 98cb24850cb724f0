// SPDX-License-Identifier: Apache-2.0
// deadband: per input topic, forwards a reading unchanged (same topic, same bytes) only when
// |value - last forwarded value| >= delta, or when its ingest time is max_silence_s or more
// after the last forwarded one's. The first reading of a topic is always forwarded.
//
// Config: {"field": "temp", "delta": 0.5, "max_silence_s": 300}. delta (>= 0) is required;
// delta 0 forwards every reading. max_silence_s (> 0) is optional: without it only a change
// forwards. No timer: silence is measured when the next reading arrives, so a sensor that stops
// reporting does not make deadband invent readings.
//
// The output keeps the input's content type when it had one (application/json otherwise) and
// the route's priority. A payload that is not JSON, or lacks the field, or holds a non-number
// there, is skipped (not forwarded), counted and logged at debug level; the hook returns EGW_OK.
//
// State per topic: the last forwarded value and its ingest time; snapshotted whole (the value as
// IEEE bits). Fast plugin, one call at a time.
#include <edge-gateway/plugin.h>

#include <cmath>
#include <map>
#include <string>

#include "plugin_util.h"

namespace {

using namespace egw::plugin_util;

struct last_forwarded {
    double value = 0;
    int64_t ts_ms = 0;
};

class deadband {
public:
    deadband(const egw_host* host, void* ctx, const json& config) : host_(host), log_(host, ctx) {
        check_known_keys(config, {"field", "delta", "max_silence_s"});
        field_ = required_field_path(config, "field");
        reader_.emplace(field_);
        auto delta = optional_number(config, "delta");
        if (!delta) throw config_error("delta: required");
        if (*delta < 0) throw config_error("delta: must be a number >= 0");
        delta_ = *delta;
        if (auto s = optional_number(config, "max_silence_s")) {
            if (*s <= 0) throw config_error("max_silence_s: must be a number > 0");
            if (*s > 1e9) throw config_error("max_silence_s: must be at most 1000000000");
            max_silence_ms_ = static_cast<int64_t>(std::llround(*s * 1000.0));
        }
    }

    int on_message(const egw_message* m, egw_call* call) {
        std::string_view topic(m->topic, m->topic_len);
        double v = 0;
        auto st = reader_->read(m->payload, m->payload_len, v);
        if (st != reading_status::ok) {
            ++skipped_;
            log_.debug("skipped a reading on " + std::string(topic) + " (" + field_ +
                       "): " + to_string(st) + " (" + std::to_string(skipped_) + " so far)");
            return EGW_OK;
        }
        auto it = last_.find(topic);
        bool forward = it == last_.end() || delta_ == 0 ||
                       std::fabs(v - it->second.value) >= delta_ ||
                       (max_silence_ms_ > 0 && m->ts_ms - it->second.ts_ms >= max_silence_ms_);
        if (!forward) return EGW_OK;
        std::string_view ct = m->content_type_len > 0
                                  ? std::string_view(m->content_type, m->content_type_len)
                                  : std::string_view("application/json");
        if (emit_json(host_, call, topic,
                      std::string_view(reinterpret_cast<const char*>(m->payload), m->payload_len),
                      ct) != EGW_OK)
            return EGW_ERROR;
        if (it == last_.end()) it = last_.emplace(std::string(topic), last_forwarded{}).first;
        it->second = {v, m->ts_ms};
        return EGW_OK;
    }

    int on_snapshot(egw_call* call) {
        json topics = json::array();
        for (const auto& [topic, l] : last_) topics.push_back({topic, bits(l.value), l.ts_ms});
        json j = {{"v", 1}, {"skipped", skipped_}, {"topics", std::move(topics)}};
        std::string text = j.dump();
        return host_->write_state(call, reinterpret_cast<const uint8_t*>(text.data()), text.size());
    }

    int on_restore(const uint8_t* data, size_t len) {
        json j = json::parse(data, data + len, nullptr, false);
        if (j.is_discarded() || !j.is_object() || j.value("v", 0) != 1) {
            log_.error("restore: not a deadband v1 snapshot");
            return EGW_ERROR;
        }
        std::map<std::string, last_forwarded, std::less<>> restored;
        for (const auto& t : j.at("topics")) {
            restored.emplace(
                t.at(0).get<std::string>(),
                last_forwarded{from_bits(t.at(1).get<uint64_t>()), t.at(2).get<int64_t>()});
        }
        skipped_ = j.at("skipped").get<uint64_t>();
        last_ = std::move(restored);
        return EGW_OK;
    }

    const logger& log() const { return log_; }

private:
    const egw_host* host_;
    logger log_;
    std::string field_;
    std::optional<field_reader> reader_;  // set in the constructor; optional only for its order
    double delta_ = 0;
    int64_t max_silence_ms_ = 0;  // 0: no max silence
    std::map<std::string, last_forwarded, std::less<>> last_;
    uint64_t skipped_ = 0;
};

void* db_create(const egw_host* host, void* ctx, const char* config, size_t len, char* error,
                size_t cap) {
    try {
        return new deadband(host, ctx, parse_config(config, len));
    } catch (const std::exception& e) {
        write_error(error, cap, e.what());
    } catch (...) {
        write_error(error, cap, "config: rejected");
    }
    return nullptr;
}

void db_destroy(void* inst) { delete static_cast<deadband*>(inst); }

int db_on_message(void* inst, const egw_message* m, egw_call* call) {
    auto* self = static_cast<deadband*>(inst);
    return guard(self->log(), "on_message", [&] { return self->on_message(m, call); });
}

int db_on_snapshot(void* inst, egw_call* call) {
    auto* self = static_cast<deadband*>(inst);
    return guard(self->log(), "on_snapshot", [&] { return self->on_snapshot(call); });
}

int db_on_restore(void* inst, const uint8_t* state, size_t len) {
    auto* self = static_cast<deadband*>(inst);
    return guard(self->log(), "on_restore", [&] { return self->on_restore(state, len); });
}

const egw_plugin kDescriptor = {
    EGW_ABI_MAJOR,  EGW_ABI_MINOR, sizeof(egw_plugin), 0, "deadband", "1.0.0", 0,
    db_create,      db_destroy,    db_on_message,
    nullptr,  // no timer: silence is judged when a reading arrives
    db_on_snapshot, db_on_restore,
};

}  // namespace

extern "C" EGW_EXPORT const egw_plugin* egw_plugin_entry(void) { return &kDescriptor; }
