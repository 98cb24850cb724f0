// SPDX-License-Identifier: Apache-2.0
#include "plugins/host/native_instance.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <mutex>

#include "plugins/host/loader.h"
#include "plugins/host/runtimes.h"

// One hook invocation (opaque to plugins, see plugin.h): where its outputs, timer and state go.
struct egw_call {
    const egw::plugins::call_limits* limits = nullptr;
    std::string_view input_topic;  // empty in on_timer: a suffix output is then invalid
    egw::plugins::call_result* result = nullptr;
    std::string* state = nullptr;  // on_snapshot only
    bool in_snapshot = false;
};

namespace egw::plugins {

const char* to_string(failure_kind k) {
    switch (k) {
        case failure_kind::none:
            return "none";
        case failure_kind::error:
            return "error";
        case failure_kind::exception:
            return "exception";
        case failure_kind::bad_output:
            return "bad_output";
        case failure_kind::timeout:
            return "timeout";
        case failure_kind::memory:
            return "memory";
        case failure_kind::crashed:
            return "crashed";
    }
    return "?";
}

namespace {

bool valid_utf8(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        size_t n = 0;  // continuation bytes
        if (c < 0x80) {
            n = 0;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
        } else {
            return false;
        }
        if (i + n >= s.size() && n > 0) return false;  // truncated sequence
        for (size_t k = 1; k <= n; ++k) {
            if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return false;
        }
        i += n + 1;
    }
    return true;
}

// Rate limit for a plugin's log lines: a plugin logging per message must not flood journald.
// The first 20 lines pass, then one per second, with the number suppressed meanwhile.
class log_throttle {
public:
    bool allow(uint64_t& suppressed) {
        const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::steady_clock::now().time_since_epoch())
                                .count();
        const uint64_t n = count_.fetch_add(1, std::memory_order_relaxed);
        if (n < 20) return true;
        int64_t last = last_ms_.load(std::memory_order_relaxed);
        if (now - last >= 1000 && last_ms_.compare_exchange_strong(last, now)) {
            suppressed = dropped_.exchange(0, std::memory_order_relaxed);
            return true;
        }
        dropped_.fetch_add(1, std::memory_order_relaxed);
        return false;
    }

private:
    std::atomic<uint64_t> count_{0}, dropped_{0};
    std::atomic<int64_t> last_ms_{0};
};

class native_instance final : public instance {
public:
    native_instance(std::shared_ptr<library> lib, const instance_spec& spec)
        : lib_(std::move(lib)), name_(spec.name), limits_(spec.limits) {
        host_.struct_size = sizeof(egw_host);
        host_.abi_minor = EGW_ABI_MINOR;
        host_.log = &host_log;
        host_.emit = &host_emit;
        host_.set_timer = &host_set_timer;
        host_.write_state = &host_write_state;
        const std::string text = spec.config.is_null() ? "{}" : spec.config.dump();
        char error[512] = {0};
        const plugin_descriptor& d = lib_->descriptor();
        try {
            handle_ = d.create(&host_, this, text.c_str(), text.size(), error, sizeof(error));
        } catch (...) {
            throw config_rejected("create() threw an exception");
        }
        if (!handle_) {
            error[sizeof(error) - 1] = 0;
            throw config_rejected(error[0] ? error : "the plugin rejected its config");
        }
    }

    ~native_instance() override {
        try {
            lib_->descriptor().destroy(handle_);
        } catch (...) {
            // Nothing to do: the instance is gone either way.
        }
    }

    bool heavy() const override { return lib_->descriptor().flags & EGW_PLUGIN_HEAVY; }
    unsigned max_concurrent() const override {
        return stateful() ? 1 : lib_->descriptor().max_concurrent;
    }
    bool stateful() const override { return lib_->descriptor().on_snapshot != nullptr; }

    call_result on_message(const message_view& m) override {
        call_result r;
        egw_call call;
        call.limits = &limits_;
        call.input_topic = m.topic;
        call.result = &r;
        egw_message msg{};
        msg.struct_size = sizeof(egw_message);
        msg.topic = m.topic.data();
        msg.topic_len = m.topic.size();
        msg.payload = reinterpret_cast<const uint8_t*>(m.payload.data());
        msg.payload_len = m.payload.size();
        msg.qos = m.qos;
        msg.ts_ms = m.ts_ms;
        msg.seq = m.seq;
        msg.device_id = m.device_id.data();
        msg.device_id_len = m.device_id.size();
        msg.content_type = m.content_type.data();
        msg.content_type_len = m.content_type.size();
        int rc = EGW_ERROR;
        try {
            rc = lib_->descriptor().on_message(handle_, &msg, &call);
        } catch (const std::exception& e) {
            return failed(r, failure_kind::exception, std::string("exception: ") + e.what());
        } catch (...) {
            return failed(r, failure_kind::exception, "exception of unknown type");
        }
        return finish(r, rc, "on_message");
    }

    call_result on_timer(int64_t now_ms) override {
        call_result r;
        const auto fn = lib_->descriptor().on_timer;
        if (!fn) return r;
        egw_call call;
        call.limits = &limits_;
        call.result = &r;
        int rc = EGW_ERROR;
        try {
            rc = fn(handle_, now_ms, &call);
        } catch (const std::exception& e) {
            return failed(r, failure_kind::exception, std::string("exception: ") + e.what());
        } catch (...) {
            return failed(r, failure_kind::exception, "exception of unknown type");
        }
        return finish(r, rc, "on_timer");
    }

    call_result snapshot(std::string& state) override {
        call_result r;
        const auto fn = lib_->descriptor().on_snapshot;
        state.clear();
        if (!fn) return r;
        egw_call call;
        call.limits = &limits_;
        call.result = &r;
        call.state = &state;
        call.in_snapshot = true;
        int rc = EGW_ERROR;
        try {
            rc = fn(handle_, &call);
        } catch (const std::exception& e) {
            return failed(r, failure_kind::exception, std::string("exception: ") + e.what());
        } catch (...) {
            return failed(r, failure_kind::exception, "exception of unknown type");
        }
        return finish(r, rc, "on_snapshot");
    }

    call_result restore(std::string_view state) override {
        call_result r;
        const auto fn = lib_->descriptor().on_restore;
        if (!fn) return r;
        int rc = EGW_ERROR;
        try {
            rc = fn(handle_, reinterpret_cast<const uint8_t*>(state.data()), state.size());
        } catch (const std::exception& e) {
            return failed(r, failure_kind::exception, std::string("exception: ") + e.what());
        } catch (...) {
            return failed(r, failure_kind::exception, "exception of unknown type");
        }
        return finish(r, rc, "on_restore");
    }

private:
    static call_result& failed(call_result& r, failure_kind k, std::string reason) {
        r.failure = k;
        r.reason = std::move(reason);
        r.outputs.clear();
        return r;
    }

    call_result finish(call_result& r, int rc, const char* hook) {
        if (!r.ok()) {
            r.outputs.clear();  // an emit() already failed the call
        } else if (rc != EGW_OK) {
            std::string why = hook + std::string(" returned ") + std::to_string(rc);
            {
                std::lock_guard lock(last_log_mu_);
                if (!last_log_.empty()) why += ": " + last_log_;
            }
            failed(r, failure_kind::error, std::move(why));
        }
        return r;
    }

    static void host_log(void* ctx, int level, const char* text, size_t len) noexcept {
        auto* self = static_cast<native_instance*>(ctx);
        if (!self || !text) return;
        std::string_view line(text, len);
        if (level >= EGW_LOG_WARN) {
            // Kept as the reason of a following EGW_ERROR (plugin.h: "after telling the host
            // why through log()").
            try {
                std::lock_guard lock(self->last_log_mu_);
                self->last_log_.assign(line.substr(0, 512));
            } catch (...) {
            }
        }
        uint64_t suppressed = 0;
        if (!self->throttle_.allow(suppressed)) return;
        try {
            auto lg = spdlog::get("plugin");
            if (!lg) lg = spdlog::default_logger();
            const auto lvl = level <= EGW_LOG_DEBUG  ? spdlog::level::debug
                             : level == EGW_LOG_INFO ? spdlog::level::info
                             : level == EGW_LOG_WARN ? spdlog::level::warn
                                                     : spdlog::level::err;
            if (suppressed) {
                lg->log(lvl, "{}: {} ({} line(s) suppressed)", self->name_, line, suppressed);
            } else {
                lg->log(lvl, "{}: {}", self->name_, line);
            }
        } catch (...) {
        }
    }

    static int host_emit(egw_call* call, const egw_output* out) noexcept {
        if (!call || !call->result || call->in_snapshot || !out) return EGW_ERROR;
        call_result& r = *call->result;
        if (!r.ok()) return EGW_ERROR;
        try {
            // Fields beyond what the plugin's struct_size covers are absent (older minor).
            const uint32_t s = out->struct_size;
            auto has = [s](size_t off, size_t size) { return s >= off + size; };
            if (!has(offsetof(egw_output, payload_len), sizeof(size_t))) {
                failed(r, failure_kind::bad_output, "output struct_size too small");
                return EGW_ERROR;
            }
            output o;
            std::string_view t(out->topic ? out->topic : "", out->topic ? out->topic_len : 0);
            if (out->flags & EGW_OUTPUT_SUFFIX) {
                if (call->input_topic.empty()) {
                    failed(r, failure_kind::bad_output,
                           "a suffix topic needs an input message (not in on_timer)");
                    return EGW_ERROR;
                }
                o.topic.reserve(call->input_topic.size() + t.size());
                o.topic.append(call->input_topic).append(t);
            } else {
                o.topic.assign(t);
            }
            if (auto p = output_topic_problem(o.topic); !p.empty()) {
                failed(r, failure_kind::bad_output,
                       "output topic '" + o.topic.substr(0, 200) + "': " + p);
                return EGW_ERROR;
            }
            if (out->payload_len > call->limits->max_output_bytes) {
                failed(r, failure_kind::bad_output,
                       "output payload of " + std::to_string(out->payload_len) +
                           " bytes is above the limit of " +
                           std::to_string(call->limits->max_output_bytes));
                return EGW_ERROR;
            }
            if (out->payload_len && !out->payload) {
                failed(r, failure_kind::bad_output, "output payload is NULL");
                return EGW_ERROR;
            }
            o.payload.assign(reinterpret_cast<const char*>(out->payload), out->payload_len);
            if (has(offsetof(egw_output, content_type_len), sizeof(size_t)) && out->content_type)
                o.content_type.assign(out->content_type, out->content_type_len);
            if (has(offsetof(egw_output, priority), sizeof(int32_t))) o.priority = out->priority;
            if (has(offsetof(egw_output, property_count), sizeof(size_t)) && out->properties) {
                for (size_t i = 0; i < out->property_count; ++i) {
                    const egw_property& p = out->properties[i];
                    o.properties.emplace_back(
                        std::string(p.key ? p.key : "", p.key ? p.key_len : 0),
                        std::string(p.value ? p.value : "", p.value ? p.value_len : 0));
                }
            }
            r.outputs.push_back(std::move(o));
            return EGW_OK;
        } catch (...) {
            failed(r, failure_kind::bad_output, "out of memory copying an output");
            return EGW_ERROR;
        }
    }

    static void host_set_timer(egw_call* call, int64_t at_ms) noexcept {
        if (!call || !call->result || call->in_snapshot) return;
        call->result->timer_ms = at_ms < 0 ? 0 : at_ms;
    }

    static int host_write_state(egw_call* call, const uint8_t* data, size_t len) noexcept {
        if (!call || !call->state || !call->in_snapshot) return EGW_ERROR;
        try {
            call->state->append(reinterpret_cast<const char*>(data), len);
            return EGW_OK;
        } catch (...) {
            return EGW_ERROR;
        }
    }

    std::shared_ptr<library> lib_;
    std::string name_;
    call_limits limits_;
    egw_host host_{};
    void* handle_ = nullptr;
    log_throttle throttle_;
    std::mutex last_log_mu_;
    std::string last_log_;
};

}  // namespace

std::string output_topic_problem(std::string_view topic) {
    if (topic.empty()) return "is empty";
    if (topic.size() > 65535) return "is longer than 65535 bytes";
    if (topic.find_first_of(std::string_view("+#\0", 3)) != std::string_view::npos)
        return "contains a wildcard (+, #) or a NUL";
    if (!valid_utf8(topic)) return "is not valid UTF-8";
    return {};
}

std::unique_ptr<instance> make_native_instance(const instance_spec& spec) {
    auto lib = library::open(spec.path);
    return std::make_unique<native_instance>(std::move(lib), spec);
}

}  // namespace egw::plugins
