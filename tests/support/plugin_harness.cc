// SPDX-License-Identifier: Apache-2.0
#include "support/plugin_harness.h"

#include <dlfcn.h>

#include <exception>
#include <stdexcept>
#include <string>

// The opaque egw_call of the ABI, as this host defines it: the state of one hook invocation.
struct egw_call {
    egw::test::plugin_harness* harness = nullptr;
    egw::test::hook_result* result = nullptr;
    std::string_view input_topic;  // empty in on_timer: a suffix has nothing to attach to
    bool in_snapshot = false;
    std::string* state = nullptr;
    int64_t* timer_ms = nullptr;
    size_t max_output_bytes = 0;
};

namespace egw::test {

namespace {

void host_log(void* ctx, int level, const char* text, size_t len) {
    auto* logs = static_cast<std::vector<log_line>*>(ctx);
    logs->push_back({level, std::string(text, len)});
}

int host_emit(egw_call* call, const egw_output* out) {
    auto reject = [&] {
        call->result->bad_output = true;
        return EGW_ERROR;
    };
    if (call->in_snapshot || out == nullptr) return reject();
    std::string topic(out->topic, out->topic_len);
    if (out->flags & EGW_OUTPUT_SUFFIX) {
        if (call->input_topic.empty()) return reject();
        topic = std::string(call->input_topic) + topic;
    }
    if (topic.empty() || topic.find_first_of("+#") != std::string::npos ||
        topic.find('\0') != std::string::npos || topic.size() > 65535)
        return reject();
    if (out->payload_len > call->max_output_bytes) return reject();
    emitted e;
    e.topic = std::move(topic);
    e.payload.assign(reinterpret_cast<const char*>(out->payload), out->payload_len);
    if (out->content_type != nullptr)
        e.content_type.assign(out->content_type, out->content_type_len);
    e.priority = out->priority;
    call->result->outputs.push_back(std::move(e));
    return EGW_OK;
}

void host_set_timer(egw_call* call, int64_t at_ms) {
    if (call->in_snapshot || call->timer_ms == nullptr) return;
    *call->timer_ms = at_ms;
}

int host_write_state(egw_call* call, const uint8_t* data, size_t len) {
    if (!call->in_snapshot || call->state == nullptr) return EGW_ERROR;
    call->state->append(reinterpret_cast<const char*>(data), len);
    return EGW_OK;
}

std::string_view device_id_of(std::string_view topic) {
    constexpr std::string_view prefix = "devices/";
    if (topic.substr(0, prefix.size()) != prefix) return {};
    auto rest = topic.substr(prefix.size());
    return rest.substr(0, rest.find('/'));
}

}  // namespace

const egw_host plugin_harness::kHost = {
    sizeof(egw_host), EGW_ABI_MINOR, host_log, host_emit, host_set_timer, host_write_state,
};

plugin_library::plugin_library(const std::string& path) : path_(path) {
    handle_ = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle_ == nullptr) throw std::runtime_error("dlopen " + path + ": " + dlerror());
    void* sym = dlsym(handle_, EGW_PLUGIN_ENTRY_SYMBOL);
    if (sym == nullptr) {
        dlclose(handle_);
        throw std::runtime_error(path + ": no " EGW_PLUGIN_ENTRY_SYMBOL);
    }
    desc_ = reinterpret_cast<egw_plugin_entry_fn>(sym)();
    if (desc_ == nullptr) {
        dlclose(handle_);
        throw std::runtime_error(path + ": " EGW_PLUGIN_ENTRY_SYMBOL " returned NULL");
    }
}

plugin_library::~plugin_library() { dlclose(handle_); }

plugin_harness::plugin_harness(const plugin_library& lib, std::string_view config)
    : desc_(&lib.descriptor()) {
    std::string text(config);
    char error[512] = {};
    instance_ = desc_->create(&kHost, &logs_, text.c_str(), text.size(), error, sizeof error);
    if (instance_ == nullptr) throw std::runtime_error(error);
}

plugin_harness::~plugin_harness() {
    if (instance_ != nullptr) desc_->destroy(instance_);
}

std::string plugin_harness::rejection(const plugin_library& lib, std::string_view config) {
    std::vector<log_line> logs;
    std::string text(config);
    char error[512] = {};
    void* inst =
        lib.descriptor().create(&kHost, &logs, text.c_str(), text.size(), error, sizeof error);
    if (inst == nullptr) return error[0] != '\0' ? std::string(error) : "(no reason given)";
    lib.descriptor().destroy(inst);
    return {};
}

hook_result plugin_harness::message(std::string_view topic, std::string_view payload, int64_t ts_ms,
                                    std::string_view content_type) {
    hook_result r;
    std::string topic_copy(topic);
    std::string payload_copy(payload);
    std::string ct(content_type);
    auto device = device_id_of(topic_copy);
    egw_message m{};
    m.struct_size = sizeof(egw_message);
    m.topic = topic_copy.data();
    m.topic_len = topic_copy.size();
    m.payload = reinterpret_cast<const uint8_t*>(payload_copy.data());
    m.payload_len = payload_copy.size();
    m.qos = 1;
    m.ts_ms = ts_ms;
    m.seq = next_seq_++;
    m.device_id = device.data();
    m.device_id_len = device.size();
    m.content_type = ct.data();
    m.content_type_len = ct.size();
    egw_call call;
    call.harness = this;
    call.result = &r;
    call.input_topic = topic_copy;
    call.timer_ms = &timer_ms_;
    call.max_output_bytes = max_output_bytes;
    try {
        r.rc = desc_->on_message(instance_, &m, &call);
    } catch (const std::exception& e) {
        r.threw = true;
        r.what = e.what();
    } catch (...) {
        r.threw = true;
    }
    if (!r.ok()) r.outputs.clear();  // a failed call's outputs are discarded
    return r;
}

hook_result plugin_harness::timer(int64_t now_ms) {
    hook_result r;
    if (desc_->struct_size < offsetof(egw_plugin, on_timer) + sizeof(desc_->on_timer) ||
        desc_->on_timer == nullptr)
        return r;
    egw_call call;
    call.harness = this;
    call.result = &r;
    call.timer_ms = &timer_ms_;
    call.max_output_bytes = max_output_bytes;
    timer_ms_ = 0;  // a fired timer is spent unless the hook asks again
    try {
        r.rc = desc_->on_timer(instance_, now_ms, &call);
    } catch (const std::exception& e) {
        r.threw = true;
        r.what = e.what();
    } catch (...) {
        r.threw = true;
    }
    if (!r.ok()) r.outputs.clear();
    return r;
}

hook_result plugin_harness::advance_to(int64_t now_ms) {
    hook_result all;
    // Bounded: a plugin that re-arms in the past forever must not hang a test.
    for (int i = 0; i < 1000 && timer_ms_ != 0 && timer_ms_ <= now_ms; ++i) {
        hook_result r = timer(now_ms);
        for (auto& o : r.outputs) all.outputs.push_back(std::move(o));
        if (!r.ok()) {
            all.rc = r.rc;
            all.bad_output = r.bad_output;
            all.threw = r.threw;
            all.what = r.what;
            break;
        }
    }
    return all;
}

std::string plugin_harness::snapshot() {
    if (desc_->struct_size < offsetof(egw_plugin, on_snapshot) + sizeof(desc_->on_snapshot) ||
        desc_->on_snapshot == nullptr)
        throw std::runtime_error("plugin has no on_snapshot");
    hook_result r;
    std::string state;
    egw_call call;
    call.harness = this;
    call.result = &r;
    call.in_snapshot = true;
    call.state = &state;
    if (desc_->on_snapshot(instance_, &call) != EGW_OK)
        throw std::runtime_error("on_snapshot failed");
    return state;
}

int plugin_harness::restore(std::string_view state) {
    if (desc_->struct_size < offsetof(egw_plugin, on_restore) + sizeof(desc_->on_restore) ||
        desc_->on_restore == nullptr)
        return EGW_ERROR;
    return desc_->on_restore(instance_, reinterpret_cast<const uint8_t*>(state.data()),
                             state.size());
}

size_t plugin_harness::count_logs(int level, std::string_view needle) const {
    size_t n = 0;
    for (const auto& l : logs_) n += l.level == level && l.text.find(needle) != std::string::npos;
    return n;
}

}  // namespace egw::test
