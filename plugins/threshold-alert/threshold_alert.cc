// SPDX-License-Identifier: Apache-2.0
// threshold-alert: rules on numeric JSON fields, evaluated per input topic, that emit once per
// transition (raised, then cleared), never once per reading.
//
// Config: {"rules": [RULE, ...]} where each RULE names a "field" (dotted path) and exactly one
// trigger:
//   {"field": "temp", "above": 80, "clear_below": 75}   raised when v > 80, cleared when v < 75
//   {"field": "temp", "below": 5, "clear_above": 8}      raised when v < 5, cleared when v > 8
//   {"field": "temp", "rate_above": 2}                   raised when dv/dt > 2 per second
//   {"field": "temp", "rate_below": -2, "clear_above": -1}  raised when dv/dt < -2 per second
// All comparisons are strict. Without clear_below / clear_above a rule clears as soon as its
// trigger no longer holds (v <= above, v >= below). The rate is (v - previous v) / (ts_ms -
// previous ts_ms) * 1000 between two consecutive readings of the field on the topic (ingest
// times); the first reading, and one with the same or an earlier ingest time, has no rate.
//
// Output, on "{topic}/alert" (application/json), at the transition:
//   {"field", "value" (the reading), "rule" (index in rules), "state": "raised"|"cleared",
//    "ts_ms" (ingest time of the reading)}  plus "rate" for rate rules.
// Readings whose payload is not JSON or holds none of the rules' fields (or only non-numbers)
// are skipped, counted and logged at debug level; the hook returns EGW_OK.
//
// State per (topic, rule): raised or not, and for rate rules the previous reading. Snapshotted
// whole (doubles as IEEE bits). Fast plugin, one call at a time.
#include <edge-gateway/plugin.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "plugin_util.h"

namespace {

using namespace egw::plugin_util;

enum class trigger { above, below, rate_above, rate_below };

struct rule {
    std::string field;
    trigger kind = trigger::above;
    double threshold = 0;
    double clear = 0;  // the clearing bound (strict); equals threshold when not configured

    bool is_rate() const { return kind == trigger::rate_above || kind == trigger::rate_below; }
    bool raises(double x) const {
        return (kind == trigger::above || kind == trigger::rate_above) ? x > threshold
                                                                       : x < threshold;
    }
    bool clears(double x, bool explicit_clear) const {
        bool up = kind == trigger::above || kind == trigger::rate_above;
        if (!explicit_clear) return up ? x <= threshold : x >= threshold;
        return up ? x < clear : x > clear;
    }
    bool has_clear = false;
};

struct rule_state {
    bool raised = false;
    bool has_prev = false;  // rate rules: the previous reading of the field
    double prev_value = 0;
    int64_t prev_ts_ms = 0;
};

rule parse_rule(const json& r, size_t i) {
    std::string p = "rules[" + std::to_string(i) + "].";
    if (!r.is_object()) throw config_error("rules[" + std::to_string(i) + "]: must be an object");
    check_known_keys(
        r, {"field", "above", "below", "rate_above", "rate_below", "clear_below", "clear_above"},
        p);
    rule out;
    out.field = required_field_path(r, "field", p);
    int triggers = 0;
    const std::pair<const char*, trigger> names[] = {{"above", trigger::above},
                                                     {"below", trigger::below},
                                                     {"rate_above", trigger::rate_above},
                                                     {"rate_below", trigger::rate_below}};
    for (const auto& [name, kind] : names) {
        if (auto v = optional_number(r, name, p)) {
            ++triggers;
            out.kind = kind;
            out.threshold = *v;
        }
    }
    if (triggers != 1)
        throw config_error("rules[" + std::to_string(i) +
                           "]: needs exactly one of above, below, rate_above, rate_below");
    bool up = out.kind == trigger::above || out.kind == trigger::rate_above;
    auto clear_below = optional_number(r, "clear_below", p);
    auto clear_above = optional_number(r, "clear_above", p);
    if (up && clear_above) throw config_error(p + "clear_above: only with below or rate_below");
    if (!up && clear_below) throw config_error(p + "clear_below: only with above or rate_above");
    if (clear_below) {
        if (*clear_below > out.threshold)
            throw config_error(p + "clear_below: must not be greater than the raise threshold");
        out.clear = *clear_below;
        out.has_clear = true;
    } else if (clear_above) {
        if (*clear_above < out.threshold)
            throw config_error(p + "clear_above: must not be less than the raise threshold");
        out.clear = *clear_above;
        out.has_clear = true;
    } else {
        out.clear = out.threshold;
    }
    return out;
}

class threshold_alert {
public:
    threshold_alert(const egw_host* host, void* ctx, const json& config)
        : host_(host), log_(host, ctx) {
        check_known_keys(config, {"rules"});
        auto it = config.find("rules");
        if (it == config.end()) throw config_error("rules: required");
        if (!it->is_array() || it->empty())
            throw config_error("rules: must be a non-empty array of rules");
        for (size_t i = 0; i < it->size(); ++i) rules_.push_back(parse_rule((*it)[i], i));
    }

    int on_message(const egw_message* m, egw_call* call) {
        std::string_view topic(m->topic, m->topic_len);
        json doc = parse_payload(m->payload, m->payload_len);
        auto it = state_.find(topic);
        bool any = false;
        reading_status first_failure = reading_status::ok;
        for (size_t i = 0; i < rules_.size(); ++i) {
            const rule& r = rules_[i];
            double v = 0;
            auto st = read_number(doc, r.field, v);
            if (st != reading_status::ok) {
                if (first_failure == reading_status::ok) first_failure = st;
                continue;
            }
            any = true;
            if (it == state_.end())
                it = state_.emplace(std::string(topic), std::vector<rule_state>(rules_.size()))
                         .first;
            rule_state& s = it->second[i];
            double x = v;
            if (r.is_rate()) {
                bool have_rate = s.has_prev && m->ts_ms > s.prev_ts_ms;
                double rate = have_rate ? (v - s.prev_value) * 1000.0 /
                                              static_cast<double>(m->ts_ms - s.prev_ts_ms)
                                        : 0;
                s.has_prev = true;
                s.prev_value = v;
                s.prev_ts_ms = m->ts_ms;
                if (!have_rate) continue;
                x = rate;
            }
            bool transition = s.raised ? r.clears(x, r.has_clear) : r.raises(x);
            if (!transition) continue;
            s.raised = !s.raised;
            nlohmann::ordered_json out;
            out["field"] = r.field;
            out["value"] = v;
            out["rule"] = i;
            out["state"] = s.raised ? "raised" : "cleared";
            out["ts_ms"] = m->ts_ms;
            if (r.is_rate()) out["rate"] = x;
            if (emit_json(host_, call, std::string(topic) + "/alert", out.dump()) != EGW_OK)
                return EGW_ERROR;
        }
        if (!any) {
            ++skipped_;
            log_.debug("skipped a reading on " + std::string(topic) + ": " +
                       to_string(first_failure) + " (" + std::to_string(skipped_) + " so far)");
        }
        return EGW_OK;
    }

    int on_snapshot(egw_call* call) {
        json topics = json::array();
        for (const auto& [topic, rs] : state_) {
            json rules = json::array();
            for (const auto& s : rs)
                rules.push_back({s.raised, s.has_prev, bits(s.prev_value), s.prev_ts_ms});
            topics.push_back({{"t", topic}, {"r", std::move(rules)}});
        }
        json j = {{"v", 1},
                  {"rules", rules_.size()},
                  {"skipped", skipped_},
                  {"topics", std::move(topics)}};
        std::string text = j.dump();
        return host_->write_state(call, reinterpret_cast<const uint8_t*>(text.data()), text.size());
    }

    int on_restore(const uint8_t* data, size_t len) {
        json j = json::parse(data, data + len, nullptr, false);
        if (j.is_discarded() || !j.is_object() || j.value("v", 0) != 1) {
            log_.error("restore: not a threshold-alert v1 snapshot");
            return EGW_ERROR;
        }
        // Rules are matched by index: with another number of rules the indexes mean other
        // rules, so the old states would be attached to the wrong ones.
        if (j.at("rules").get<size_t>() != rules_.size()) {
            log_.warn("restore: snapshot was taken with other rules; ignored");
            return EGW_OK;
        }
        std::map<std::string, std::vector<rule_state>, std::less<>> restored;
        for (const auto& t : j.at("topics")) {
            std::vector<rule_state> rs;
            for (const auto& r : t.at("r")) {
                rule_state s;
                s.raised = r.at(0).get<bool>();
                s.has_prev = r.at(1).get<bool>();
                s.prev_value = from_bits(r.at(2).get<uint64_t>());
                s.prev_ts_ms = r.at(3).get<int64_t>();
                rs.push_back(s);
            }
            if (rs.size() != rules_.size()) {
                log_.error("restore: a topic's rule states do not match the rules");
                return EGW_ERROR;
            }
            restored.emplace(t.at("t").get<std::string>(), std::move(rs));
        }
        skipped_ = j.at("skipped").get<uint64_t>();
        state_ = std::move(restored);
        return EGW_OK;
    }

    const logger& log() const { return log_; }

private:
    const egw_host* host_;
    logger log_;
    std::vector<rule> rules_;
    std::map<std::string, std::vector<rule_state>, std::less<>> state_;
    uint64_t skipped_ = 0;
};

void* ta_create(const egw_host* host, void* ctx, const char* config, size_t len, char* error,
                size_t cap) {
    try {
        return new threshold_alert(host, ctx, parse_config(config, len));
    } catch (const std::exception& e) {
        write_error(error, cap, e.what());
    } catch (...) {
        write_error(error, cap, "config: rejected");
    }
    return nullptr;
}

void ta_destroy(void* inst) { delete static_cast<threshold_alert*>(inst); }

int ta_on_message(void* inst, const egw_message* m, egw_call* call) {
    auto* self = static_cast<threshold_alert*>(inst);
    return guard(self->log(), "on_message", [&] { return self->on_message(m, call); });
}

int ta_on_snapshot(void* inst, egw_call* call) {
    auto* self = static_cast<threshold_alert*>(inst);
    return guard(self->log(), "on_snapshot", [&] { return self->on_snapshot(call); });
}

int ta_on_restore(void* inst, const uint8_t* state, size_t len) {
    auto* self = static_cast<threshold_alert*>(inst);
    return guard(self->log(), "on_restore", [&] { return self->on_restore(state, len); });
}

const egw_plugin kDescriptor = {
    EGW_ABI_MAJOR,  EGW_ABI_MINOR, sizeof(egw_plugin), 0, "threshold-alert", "1.0.0", 0,
    ta_create,      ta_destroy,    ta_on_message,
    nullptr,  // no timers: a transition needs a reading
    ta_on_snapshot, ta_on_restore,
};

}  // namespace

extern "C" EGW_EXPORT const egw_plugin* egw_plugin_entry(void) { return &kDescriptor; }
