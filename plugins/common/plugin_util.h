// SPDX-License-Identifier: Apache-2.0
// What the shipped plugins (window-stats, threshold-alert, deadband) share: reading a numeric
// field by dotted path out of a JSON payload, config checks whose messages name the key, a
// logger over the host's log(), exact encoding of doubles in snapshots, and the boundary guard
// that keeps C++ exceptions on the plugin's side of the C ABI.
//
// Header-only and internal to the shipped plugins: it depends on plugin.h and nlohmann_json
// only, never on the gateway. Everything here runs on whatever thread runs the hook that calls
// it and keeps no global state.
#pragma once

#include <edge-gateway/plugin.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace egw::plugin_util {

using json = nlohmann::json;

// A config the plugin rejects; what() names the key ("window_s: must be a positive integer").
struct config_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// The host's log, bound to one instance. Never throws.
class logger {
public:
    logger(const egw_host* host, void* host_ctx) : host_(host), ctx_(host_ctx) {}
    void log(int level, std::string_view text) const noexcept {
        if (host_ != nullptr && host_->log != nullptr)
            host_->log(ctx_, level, text.data(), text.size());
    }
    void debug(std::string_view text) const noexcept { log(EGW_LOG_DEBUG, text); }
    void warn(std::string_view text) const noexcept { log(EGW_LOG_WARN, text); }
    void error(std::string_view text) const noexcept { log(EGW_LOG_ERROR, text); }

private:
    const egw_host* host_;
    void* ctx_;
};

// Parses a config: an empty string is an empty object; anything but an object is rejected.
inline json parse_config(const char* text, size_t len) {
    if (text == nullptr || len == 0) return json::object();
    json j = json::parse(std::string_view(text, len), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) throw config_error("config: not valid JSON");
    if (j.is_null()) return json::object();
    if (!j.is_object()) throw config_error("config: must be a JSON object");
    return j;
}

// Rejects keys a plugin does not know, so a typo ("window_sec") is an error, not a default.
inline void check_known_keys(const json& obj, std::initializer_list<std::string_view> known,
                             const std::string& prefix = {}) {
    for (const auto& [key, value] : obj.items()) {
        bool ok = false;
        for (auto k : known) ok = ok || key == k;
        if (!ok) throw config_error(prefix + key + ": unknown key");
    }
}

inline std::string required_field_path(const json& obj, const std::string& key,
                                       const std::string& prefix = {}) {
    auto it = obj.find(key);
    if (it == obj.end()) throw config_error(prefix + key + ": required");
    if (!it->is_string() || it->get_ref<const std::string&>().empty())
        throw config_error(prefix + key + ": must be a non-empty string (a dotted path)");
    const auto& s = it->get_ref<const std::string&>();
    if (s.front() == '.' || s.back() == '.' || s.find("..") != std::string::npos)
        throw config_error(prefix + key + ": must be a dotted path such as \"env.temp\"");
    return s;
}

inline std::optional<double> optional_number(const json& obj, const std::string& key,
                                             const std::string& prefix = {}) {
    auto it = obj.find(key);
    if (it == obj.end()) return std::nullopt;
    if (!it->is_number()) throw config_error(prefix + key + ": must be a number");
    double v = it->get<double>();
    if (!std::isfinite(v)) throw config_error(prefix + key + ": must be a finite number");
    return v;
}

// The outcome of looking a reading up in a payload.
enum class reading_status { ok, malformed, missing, not_numeric };

inline const char* to_string(reading_status s) {
    switch (s) {
        case reading_status::ok:
            return "ok";
        case reading_status::malformed:
            return "malformed JSON";
        case reading_status::missing:
            return "field missing";
        case reading_status::not_numeric:
            return "field not numeric";
    }
    return "?";
}

// Parses a payload as JSON without throwing. A discarded value means "not JSON" (binary
// garbage, truncated text); the caller treats it as a skipped reading.
inline json parse_payload(const uint8_t* data, size_t len) {
    if (data == nullptr || len == 0) return json(json::value_t::discarded);
    return json::parse(data, data + len, nullptr, /*allow_exceptions=*/false);
}

// Follows a dotted path ("env.temp") through nested objects. Returns null when any step is not
// an object or lacks the key.
inline const json* find_path(const json& root, std::string_view path) {
    const json* cur = &root;
    while (true) {
        if (!cur->is_object()) return nullptr;
        size_t dot = path.find('.');
        std::string_view key = path.substr(0, dot);
        auto it = cur->find(key);
        if (it == cur->end()) return nullptr;
        cur = &*it;
        if (dot == std::string_view::npos) return cur;
        path.remove_prefix(dot + 1);
    }
}

// A finite JSON number at path. Booleans and numeric strings ("21.5") are not numbers: a
// sensor that sends strings is a bug worth seeing in the skip count, not something to guess at.
inline reading_status read_number(const json& doc, std::string_view path, double& out) {
    if (doc.is_discarded()) return reading_status::malformed;
    const json* v = find_path(doc, path);
    if (v == nullptr) return reading_status::missing;
    if (!v->is_number()) return reading_status::not_numeric;
    out = v->get<double>();
    // nlohmann parses 1e999 as infinity; such a value would poison min/max/mean.
    if (!std::isfinite(out)) return reading_status::not_numeric;
    return reading_status::ok;
}

// The same lookup as parse_payload + read_number, without building the document: a SAX pass
// that validates the whole payload (so truncated JSON is still "malformed") and keeps only the
// value at the path. For plugins that read one field per message (deadband, window-stats), it
// spares the allocations of a DOM, which is most of their cost per message. As with the DOM, a
// key that appears twice counts with its last value.
class field_reader : public nlohmann::json_sax<json> {
public:
    explicit field_reader(std::string_view dotted) {
        while (true) {
            size_t dot = dotted.find('.');
            path_.emplace_back(dotted.substr(0, dot));
            if (dot == std::string_view::npos) break;
            dotted.remove_prefix(dot + 1);
        }
    }

    reading_status read(const uint8_t* data, size_t len, double& out) {
        depth_ = 0;
        matched_ = 0;
        pending_ = false;
        status_ = reading_status::missing;
        if (data == nullptr || len == 0) return reading_status::malformed;
        if (!json::sax_parse(data, data + len, this)) return reading_status::malformed;
        if (status_ == reading_status::ok) out = value_;
        return status_;
    }

    // json_sax: `pending_` says the last key, at the depth of the deepest matched object, is the
    // next path component; the value that follows it is either the target (at the last
    // component) or an object that extends the match.
    bool null() override { return scalar(reading_status::not_numeric, 0); }
    bool boolean(bool) override { return scalar(reading_status::not_numeric, 0); }
    bool number_integer(json::number_integer_t v) override {
        return scalar(reading_status::ok, static_cast<double>(v));
    }
    bool number_unsigned(json::number_unsigned_t v) override {
        return scalar(reading_status::ok, static_cast<double>(v));
    }
    bool number_float(json::number_float_t v, const json::string_t&) override {
        return scalar(std::isfinite(v) ? reading_status::ok : reading_status::not_numeric, v);
    }
    bool string(json::string_t&) override { return scalar(reading_status::not_numeric, 0); }
    bool binary(json::binary_t&) override { return scalar(reading_status::not_numeric, 0); }
    bool start_object(std::size_t) override {
        ++depth_;
        if (pending_) {
            if (matched_ + 1 == path_.size())
                status_ = reading_status::not_numeric;
            else
                ++matched_;
        }
        pending_ = false;
        return true;
    }
    bool key(json::string_t& k) override {
        pending_ = depth_ == matched_ + 1 && k == path_[matched_];
        return true;
    }
    bool end_object() override {
        if (depth_ == matched_ + 1 && matched_ > 0) --matched_;
        --depth_;
        return true;
    }
    bool start_array(std::size_t) override {
        ++depth_;
        if (pending_ && matched_ + 1 == path_.size()) status_ = reading_status::not_numeric;
        pending_ = false;
        return true;
    }
    bool end_array() override {
        --depth_;
        return true;
    }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
        return false;
    }

private:
    bool scalar(reading_status st, double v) {
        if (pending_ && matched_ + 1 == path_.size()) {
            status_ = st;
            value_ = v;
        }
        pending_ = false;
        return true;
    }

    std::vector<std::string> path_;
    size_t depth_ = 0;
    size_t matched_ = 0;  // path components matched by the chain of open objects
    bool pending_ = false;
    reading_status status_ = reading_status::missing;
    double value_ = 0;
};

// Snapshots store doubles as their IEEE-754 bits, so a restored instance continues with exactly
// the numbers it had (no decimal round trip, and infinities survive).
inline uint64_t bits(double d) { return std::bit_cast<uint64_t>(d); }
inline double from_bits(uint64_t b) { return std::bit_cast<double>(b); }

// floor(ts / width) * width for any sign of ts.
inline int64_t align_down(int64_t ts, int64_t width) {
    int64_t q = ts / width;
    if (ts % width != 0 && ts < 0) --q;
    return q * width;
}

inline void write_error(char* error, size_t cap, std::string_view text) noexcept {
    if (error == nullptr || cap == 0) return;
    size_t n = text.size() < cap - 1 ? text.size() : cap - 1;
    std::memcpy(error, text.data(), n);
    error[n] = '\0';
}

// Runs a hook body and turns any exception into EGW_ERROR with a log line: nothing thrown ever
// crosses the C ABI (std::bad_alloc included).
template <class F>
int guard(const logger& log, const char* hook, F&& body) noexcept {
    try {
        return body();
    } catch (const std::exception& e) {
        try {
            log.error(std::string(hook) + ": " + e.what());
        } catch (...) {
        }
    } catch (...) {
        log.error(hook);
    }
    return EGW_ERROR;
}

// Emits an output with a full topic and content type application/json.
inline int emit_json(const egw_host* host, egw_call* call, std::string_view topic,
                     std::string_view payload, std::string_view content_type = "application/json") {
    egw_output out{};
    out.struct_size = sizeof(egw_output);
    out.flags = 0;
    out.topic = topic.data();
    out.topic_len = topic.size();
    out.payload = reinterpret_cast<const uint8_t*>(payload.data());
    out.payload_len = payload.size();
    out.content_type = content_type.data();
    out.content_type_len = content_type.size();
    out.priority = EGW_PRIORITY_ROUTE;
    return host->emit(call, &out);
}

}  // namespace egw::plugin_util
