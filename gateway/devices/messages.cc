// SPDX-License-Identifier: Apache-2.0
#include "gateway/devices/messages.h"

#include <charconv>

namespace egw::devices {
namespace {

json parse_object(std::string_view payload, std::string& error) {
    json j = json::parse(payload.begin(), payload.end(), nullptr, false);
    if (j.is_discarded()) {
        error = "not valid JSON";
        return json();
    }
    if (!j.is_object()) {
        error = "not a JSON object";
        return json();
    }
    return j;
}

// Each getter: absent and optional -> true with `out` untouched; wrong type -> error.
bool get_string(const json& j, const char* key, std::string& out, bool required, std::string& error,
                const std::string& where = "") {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
        if (required) error = where + key + ": required";
        return !required;
    }
    if (!it->is_string() || it->get_ref<const std::string&>().empty()) {
        error = where + key + ": must be a non-empty string";
        return false;
    }
    out = it->get<std::string>();
    return true;
}

template <class Int>
bool get_int(const json& j, const char* key, Int& out, bool required, int64_t min,
             std::string& error, const std::string& where = "") {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
        if (required) error = where + key + ": required";
        return !required;
    }
    if (!it->is_number_integer() || it->get<int64_t>() < min) {
        error = where + key + ": must be an integer >= " + std::to_string(min);
        return false;
    }
    out = static_cast<Int>(it->get<int64_t>());
    return true;
}

bool get_number(const json& j, const char* key, double& out, std::string& error,
                const std::string& where = "") {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return true;
    if (!it->is_number() || it->get<double>() < 0) {
        error = where + key + ": must be a number >= 0";
        return false;
    }
    out = it->get<double>();
    return true;
}

bool get_strings(const json& j, const char* key, std::vector<std::string>& out, std::string& error,
                 const std::string& where = "") {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return true;
    if (!it->is_array()) {
        error = where + key + ": must be an array of strings";
        return false;
    }
    for (const auto& e : *it) {
        if (!e.is_string()) {
            error = where + key + ": must be an array of strings";
            return false;
        }
        out.push_back(e.get<std::string>());
    }
    return true;
}

bool get_labels(const json& j, const char* key, std::map<std::string, std::string>& out,
                std::string& error, const std::string& where = "") {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return true;
    if (!it->is_object()) {
        error = where + key + ": must be an object of strings";
        return false;
    }
    for (const auto& [k, v] : it->items()) {
        if (!v.is_string()) {
            error = where + key + "." + k + ": must be a string";
            return false;
        }
        out[k] = v.get<std::string>();
    }
    return true;
}

bool parse_caps(const json& j, capabilities& c, std::string& error) {
    const std::string w = "caps.";
    return get_int(j, "cores", c.cores, true, 1, error, w) &&
           get_string(j, "arch", c.arch, false, error, w) &&
           get_int(j, "memory_mb", c.memory_mb, true, 0, error, w) &&
           get_strings(j, "accelerators", c.accelerators, error, w) &&
           get_number(j, "benchmark", c.benchmark, error, w) &&
           get_int(j, "bandwidth_kbps", c.bandwidth_kbps, false, 0, error, w);
}

bool parse_tasks(const json& j, std::vector<task_cap>& out, std::string& error) {
    if (!j.is_array()) {
        error = "tasks: must be an array";
        return false;
    }
    std::set<std::string> seen;
    for (size_t i = 0; i < j.size(); ++i) {
        const std::string w = "tasks[" + std::to_string(i) + "].";
        if (!j[i].is_object()) {
            error = w.substr(0, w.size() - 1) + ": must be an object";
            return false;
        }
        task_cap t;
        if (!get_string(j[i], "type", t.type, true, error, w) ||
            !get_string(j[i], "version", t.version, false, error, w) ||
            !get_int(j[i], "max_concurrent", t.max_concurrent, false, 1, error, w)) {
            return false;
        }
        if (!seen.insert(t.type).second) {
            error = w + "type: '" + t.type + "' listed twice";
            return false;
        }
        out.push_back(std::move(t));
    }
    return true;
}

std::vector<int64_t> version_parts(std::string_view v, bool& numeric) {
    std::vector<int64_t> parts;
    numeric = true;
    size_t i = 0;
    while (i <= v.size()) {
        size_t dot = v.find('.', i);
        if (dot == std::string_view::npos) dot = v.size();
        int64_t n = 0;
        auto [p, ec] = std::from_chars(v.data() + i, v.data() + dot, n);
        if (ec != std::errc() || p != v.data() + dot) {
            numeric = false;
            return {};
        }
        parts.push_back(n);
        i = dot + 1;
    }
    return parts;
}

}  // namespace

const char* to_string(task_state s) {
    switch (s) {
        case task_state::queued:
            return "queued";
        case task_state::dispatched:
            return "dispatched";
        case task_state::accepted:
            return "accepted";
        case task_state::running:
            return "running";
        case task_state::succeeded:
            return "succeeded";
        case task_state::failed:
            return "failed";
        case task_state::timed_out:
            return "timed_out";
        case task_state::rejected:
            return "rejected";
        case task_state::canceled:
            return "canceled";
        case task_state::expired:
            return "expired";
    }
    return "?";
}

std::optional<task_state> task_state_from(std::string_view s) {
    for (int i = 0; i <= static_cast<int>(task_state::expired); ++i) {
        auto st = static_cast<task_state>(i);
        if (s == to_string(st)) return st;
    }
    return std::nullopt;
}

bool version_satisfies(std::string_view have, std::string_view want) {
    if (want.empty()) return true;
    bool hn = false, wn = false;
    auto h = version_parts(have, hn);
    auto w = version_parts(want, wn);
    if (!hn || !wn) return have == want;
    h.resize(std::max(h.size(), w.size()), 0);
    w.resize(h.size(), 0);
    if (h[0] != w[0]) return false;
    return h >= w;
}

parsed<registration> parse_register(std::string_view payload) {
    parsed<registration> r;
    json j = parse_object(payload, r.error);
    if (!r.error.empty()) return r;
    registration reg;
    if (!get_string(j, "boot", reg.boot, true, r.error)) return r;
    auto c = j.find("caps");
    if (c == j.end() || !c->is_object()) {
        r.error = c == j.end() ? "caps: required" : "caps: must be an object";
        return r;
    }
    if (!parse_caps(*c, reg.caps, r.error)) return r;
    auto t = j.find("tasks");
    if (t == j.end()) {
        r.error = "tasks: required";
        return r;
    }
    if (!parse_tasks(*t, reg.tasks, r.error)) return r;
    if (!get_labels(j, "labels", reg.labels, r.error)) return r;
    r.value = std::move(reg);
    return r;
}

parsed<status_msg> parse_status(std::string_view payload) {
    parsed<status_msg> r;
    json j = parse_object(payload, r.error);
    if (!r.error.empty()) return r;
    status_msg s;
    std::string state;
    if (!get_string(j, "state", state, true, r.error) ||
        !get_string(j, "boot", s.boot, true, r.error)) {
        return r;
    }
    if (state != "online" && state != "offline") {
        r.error = "state: must be \"online\" or \"offline\"";
        return r;
    }
    s.online = state == "online";
    r.value = std::move(s);
    return r;
}

parsed<device_report> parse_device_report(std::string_view payload) {
    parsed<device_report> r;
    json j = parse_object(payload, r.error);
    if (!r.error.empty()) return r;
    device_report d;
    std::string state;
    if (!get_string(j, "task", d.task, true, r.error) ||
        !get_int(j, "attempt", d.attempt, true, 1, r.error) ||
        !get_string(j, "state", state, true, r.error)) {
        return r;
    }
    auto st = task_state_from(state);
    if (!st ||
        (*st != task_state::accepted && *st != task_state::rejected && *st != task_state::running &&
         *st != task_state::succeeded && *st != task_state::failed)) {
        r.error = "state: must be accepted, rejected, running, succeeded or failed";
        return r;
    }
    d.state = *st;
    if (auto it = j.find("progress"); it != j.end()) d.progress = *it;
    if (auto it = j.find("result"); it != j.end()) d.result = *it;
    if (auto it = j.find("error"); it != j.end() && !it->is_null()) {
        // {"message": ..., "retryable": bool}, or a plain string (not retryable).
        if (it->is_string()) {
            d.error = it->get<std::string>();
        } else if (it->is_object()) {
            d.error = it->value("message", std::string());
            auto rt = it->find("retryable");
            d.retryable = rt != it->end() && rt->is_boolean() && rt->get<bool>();
        } else {
            r.error = "error: must be an object or a string";
            return r;
        }
    }
    if (auto rt = j.find("retryable"); rt != j.end() && rt->is_boolean()) d.retryable = *rt;
    r.value = std::move(d);
    return r;
}

parsed<task_spec> parse_submit(std::string_view payload) {
    parsed<task_spec> r;
    json j = parse_object(payload, r.error);
    if (!r.error.empty()) return r;
    return parse_submit_json(j);
}

parsed<task_spec> parse_submit_json(const json& j) {
    parsed<task_spec> r;
    if (!j.is_object()) {
        r.error = "not a JSON object";
        return r;
    }
    task_spec s;
    if (!get_string(j, "task", s.id, true, r.error) ||
        !get_string(j, "type", s.type, true, r.error) ||
        !get_string(j, "version", s.version, false, r.error) ||
        !get_int(j, "deadline_ms", s.deadline_ms, false, 1, r.error) ||
        !get_int(j, "attempt_timeout_ms", s.attempt_timeout_ms, false, 1, r.error) ||
        !get_int(j, "max_attempts", s.max_attempts, false, 1, r.error)) {
        return r;
    }
    if (auto it = j.find("priority"); it != j.end() && !it->is_null()) {
        if (!it->is_number_integer()) {
            r.error = "priority: must be an integer";
            return r;
        }
        s.priority = it->get<int>();
    }
    if (s.id.size() > 128 || s.id.find_first_of("/+#") != std::string::npos) {
        r.error = "task: at most 128 characters, no '/', '+' or '#' (it is a topic level)";
        return r;
    }
    if (auto it = j.find("input"); it != j.end()) s.input = *it;
    if (auto it = j.find("requirements"); it != j.end() && !it->is_null()) {
        if (!it->is_object()) {
            r.error = "requirements: must be an object";
            return r;
        }
        const std::string w = "requirements.";
        const json& q = *it;
        double rtt = -1;
        if (!get_int(q, "min_cores", s.req.min_cores, false, 0, r.error, w) ||
            !get_int(q, "min_memory_mb", s.req.min_memory_mb, false, 0, r.error, w) ||
            !get_strings(q, "accelerators", s.req.accelerators, r.error, w) ||
            !get_number(q, "max_rtt_ms", rtt, r.error, w) ||
            !get_labels(q, "labels", s.req.labels, r.error, w)) {
            return r;
        }
        if (rtt >= 0) s.req.max_rtt_ms = rtt;
    }
    r.value = std::move(s);
    return r;
}

parsed<std::string> parse_cancel(std::string_view payload) {
    parsed<std::string> r;
    json j = parse_object(payload, r.error);
    if (!r.error.empty()) return r;
    std::string id;
    if (!get_string(j, "task", id, true, r.error)) return r;
    r.value = std::move(id);
    return r;
}

json device_record(const device& d) {
    json tasks = json::array();
    for (const auto& t : d.tasks) {
        tasks.push_back(
            {{"type", t.type}, {"version", t.version}, {"max_concurrent", t.max_concurrent}});
    }
    return {
        {"id", d.id},
        {"state", d.online ? "online" : "offline"},
        {"boot", d.boot},
        {"caps",
         {{"cores", d.caps.cores},
          {"arch", d.caps.arch.empty() ? json(nullptr) : json(d.caps.arch)},
          {"memory_mb", d.caps.memory_mb},
          {"accelerators", d.caps.accelerators},
          {"benchmark", d.caps.benchmark},
          {"bandwidth_kbps", d.caps.bandwidth_kbps}}},
        {"tasks", tasks},
        {"labels", d.labels},
        {"registered_ms", d.registered_ms},
        {"last_seen_ms", d.last_seen_ms},
        {"rtt_ms", d.rtt.known ? json(d.rtt.srtt_ms) : json(nullptr)},
        {"rttvar_ms", d.rtt.known ? json(d.rtt.rttvar_ms) : json(nullptr)},
        {"failure_score", d.failure_score},
        {"failure_at_ms", d.failure_at_ms},
    };
}

bool device_from_record(const json& j, device& out) {
    if (!j.is_object()) return false;
    std::string error;
    device d;
    d.id = j.value("id", std::string());
    d.boot = j.value("boot", std::string());
    if (d.id.empty()) return false;
    d.online = j.value("state", std::string()) == "online";
    if (auto c = j.find("caps"); c == j.end() || !parse_caps(*c, d.caps, error)) return false;
    if (auto t = j.find("tasks"); t == j.end() || !parse_tasks(*t, d.tasks, error)) return false;
    if (!get_labels(j, "labels", d.labels, error)) return false;
    d.registered_ms = j.value("registered_ms", int64_t{0});
    d.last_seen_ms = j.value("last_seen_ms", int64_t{0});
    if (auto r = j.find("rtt_ms"); r != j.end() && r->is_number()) {
        d.rtt.known = true;
        d.rtt.srtt_ms = r->get<double>();
        d.rtt.rttvar_ms = j.value("rttvar_ms", 0.0);
    }
    d.failure_score = j.value("failure_score", 0.0);
    d.failure_at_ms = j.value("failure_at_ms", int64_t{0});
    out = std::move(d);
    return true;
}

json task_state_message(const task& t, time_ms now_ms) {
    const attempt* a = t.attempts.empty() ? nullptr : &t.attempts.back();
    json j = {
        {"task", t.spec.id},
        {"state", to_string(t.state)},
        {"attempt", a ? a->n : 0},
        {"device", a ? json(a->device) : json(nullptr)},
        {"reason", t.reason.empty() ? json(nullptr) : json(t.reason)},
        {"seq", t.seq},
        {"ts_ms", now_ms},
        {"final", t.final},
    };
    if (t.state == task_state::succeeded) j["result"] = t.result;
    return j;
}

json task_document(const task& t) {
    json attempts = json::array();
    for (const auto& a : t.attempts) {
        attempts.push_back({{"n", a.n},
                            {"device", a.device},
                            {"boot", a.boot},
                            {"dispatched_ms", a.dispatched_ms},
                            {"timeout_at_ms", a.timeout_at_ms},
                            {"ended_ms", a.ended_ms},
                            {"state", to_string(a.state)},
                            {"reason", a.reason}});
    }
    json req = {{"min_cores", t.spec.req.min_cores},
                {"min_memory_mb", t.spec.req.min_memory_mb},
                {"accelerators", t.spec.req.accelerators},
                {"labels", t.spec.req.labels}};
    if (t.spec.req.max_rtt_ms) req["max_rtt_ms"] = *t.spec.req.max_rtt_ms;
    json spec = {{"task", t.spec.id},
                 {"type", t.spec.type},
                 {"input", t.spec.input},
                 {"requirements", req},
                 {"max_attempts", t.spec.max_attempts},
                 {"priority", t.spec.priority}};
    if (!t.spec.version.empty()) spec["version"] = t.spec.version;
    if (t.spec.deadline_ms) spec["deadline_ms"] = t.spec.deadline_ms;
    if (t.spec.attempt_timeout_ms) spec["attempt_timeout_ms"] = t.spec.attempt_timeout_ms;
    return {{"spec", spec},
            {"task", t.spec.id},
            {"state", to_string(t.state)},
            {"final", t.final},
            {"seq", t.seq},
            {"submitted_ms", t.submitted_ms},
            {"deadline_at_ms", t.deadline_at_ms},
            {"updated_ms", t.updated_ms},
            {"reason", t.reason},
            {"progress", t.progress},
            {"result", t.result},
            {"attempts", attempts},
            {"excluded", t.excluded},
            {"order", t.order}};
}

bool task_from_document(const json& j, task& out) {
    if (!j.is_object() || !j.contains("spec")) return false;
    auto spec = parse_submit_json(j["spec"]);
    if (!spec) return false;
    task t;
    t.spec = std::move(*spec.value);
    auto st = task_state_from(j.value("state", std::string()));
    if (!st) return false;
    t.state = *st;
    t.final = j.value("final", false);
    t.seq = j.value("seq", uint64_t{0});
    t.submitted_ms = j.value("submitted_ms", int64_t{0});
    t.deadline_at_ms = j.value("deadline_at_ms", int64_t{0});
    t.updated_ms = j.value("updated_ms", int64_t{0});
    t.reason = j.value("reason", std::string());
    t.progress = j.value("progress", json());
    t.result = j.value("result", json());
    t.order = j.value("order", uint64_t{0});
    for (const auto& e : j.value("excluded", json::array())) {
        if (e.is_string()) t.excluded.insert(e.get<std::string>());
    }
    for (const auto& a : j.value("attempts", json::array())) {
        attempt at;
        at.n = a.value("n", 0);
        at.device = a.value("device", std::string());
        at.boot = a.value("boot", std::string());
        at.dispatched_ms = a.value("dispatched_ms", int64_t{0});
        at.timeout_at_ms = a.value("timeout_at_ms", int64_t{0});
        at.ended_ms = a.value("ended_ms", int64_t{0});
        auto as = task_state_from(a.value("state", std::string()));
        if (!as) return false;
        at.state = *as;
        at.reason = a.value("reason", std::string());
        t.attempts.push_back(std::move(at));
    }
    out = std::move(t);
    return true;
}

json task_message(const task& t, const attempt& a, int64_t ttl_ms) {
    json j = {{"task", t.spec.id},
              {"attempt", a.n},
              {"type", t.spec.type},
              {"input", t.spec.input},
              {"ttl_ms", ttl_ms}};
    if (!t.spec.version.empty()) j["version"] = t.spec.version;
    return j;
}

}  // namespace egw::devices
