// SPDX-License-Identifier: Apache-2.0
#include "mini_host.h"

#include <dlfcn.h>

#include <stdexcept>

namespace egw::test {

// What egw_call points to during one hook.
struct mini_host::call_ctx {
    mini_host* host = nullptr;
    std::string input_topic;
    std::vector<host_output> outputs;
    std::string* state = nullptr;
    bool bad_output = false;
};

std::string host_output::property(const std::string& key) const {
    for (const auto& [k, v] : properties) {
        if (k == key) return v;
    }
    return "";
}

mini_host::mini_host(const std::string& so_path, size_t max_payload) : max_payload_(max_payload) {
    dl_ = dlopen(so_path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (dl_ == nullptr) throw std::runtime_error(std::string("dlopen: ") + dlerror());
    auto entry = reinterpret_cast<egw_plugin_entry_fn>(dlsym(dl_, EGW_PLUGIN_ENTRY_SYMBOL));
    if (entry == nullptr) throw std::runtime_error(so_path + ": no " EGW_PLUGIN_ENTRY_SYMBOL);
    plugin_ = entry();
    if (plugin_ == nullptr || plugin_->abi_major != EGW_ABI_MAJOR)
        throw std::runtime_error(so_path + ": ABI major mismatch");
    host_.struct_size = sizeof(egw_host);
    host_.abi_minor = EGW_ABI_MINOR;
    host_.log = &on_log;
    host_.emit = &on_emit;
    host_.set_timer = &on_set_timer;
    host_.write_state = &on_write_state;
}

mini_host::~mini_host() {
    destroy();
    if (dl_ != nullptr) dlclose(dl_);
}

void mini_host::destroy() {
    if (instance_ != nullptr) plugin_->destroy(instance_);
    instance_ = nullptr;
    timer_ms_ = 0;
}

bool mini_host::create(const std::string& config_json, std::string* error) {
    destroy();
    char err[512] = {0};
    instance_ =
        plugin_->create(&host_, this, config_json.c_str(), config_json.size(), err, sizeof err);
    if (instance_ == nullptr && error != nullptr) *error = err;
    return instance_ != nullptr;
}

void mini_host::on_log(void* ctx, int level, const char* text, size_t len) {
    static const char* const names[] = {"debug", "info", "warn", "error"};
    auto* self = static_cast<mini_host*>(ctx);
    self->logs_.push_back(std::string(names[level & 3]) + ": " + std::string(text, len));
}

int mini_host::on_emit(egw_call* call, const egw_output* out) {
    auto* c = reinterpret_cast<call_ctx*>(call);
    std::string topic(out->topic, out->topic_len);
    if (out->flags & EGW_OUTPUT_SUFFIX) topic = c->input_topic + topic;
    if (out->topic_len == 0 || topic.find_first_of("+#") != std::string::npos ||
        out->payload_len > c->host->max_payload_) {
        c->bad_output = true;
        return EGW_ERROR;
    }
    host_output o;
    o.topic = std::move(topic);
    o.payload.assign(reinterpret_cast<const char*>(out->payload), out->payload_len);
    if (out->content_type != nullptr)
        o.content_type.assign(out->content_type, out->content_type_len);
    o.priority = out->priority;
    for (size_t i = 0; i < out->property_count; ++i) {
        const egw_property& p = out->properties[i];
        o.properties.emplace_back(std::string(p.key, p.key_len), std::string(p.value, p.value_len));
    }
    c->outputs.push_back(std::move(o));
    return EGW_OK;
}

void mini_host::on_set_timer(egw_call* call, int64_t at_ms) {
    reinterpret_cast<call_ctx*>(call)->host->timer_ms_ = at_ms;
}

int mini_host::on_write_state(egw_call* call, const uint8_t* data, size_t len) {
    auto* c = reinterpret_cast<call_ctx*>(call);
    if (c->state == nullptr) return EGW_ERROR;
    c->state->append(reinterpret_cast<const char*>(data), len);
    return EGW_OK;
}

int mini_host::message(const std::string& topic, const std::string& payload, int64_t ts_ms,
                       uint64_t seq, std::vector<host_output>& out) {
    call_ctx c;
    c.host = this;
    c.input_topic = topic;
    egw_message m{};
    m.struct_size = sizeof m;
    m.topic = topic.data();
    m.topic_len = topic.size();
    m.payload = reinterpret_cast<const uint8_t*>(payload.data());
    m.payload_len = payload.size();
    m.qos = 1;
    m.ts_ms = ts_ms;
    m.seq = seq;
    int rc = plugin_->on_message(instance_, &m, reinterpret_cast<egw_call*>(&c));
    if (c.bad_output) rc = EGW_ERROR;
    if (rc == EGW_OK) {
        for (auto& o : c.outputs) out.push_back(std::move(o));
    }
    return rc;
}

int mini_host::timer(int64_t now_ms, std::vector<host_output>& out) {
    if (plugin_->on_timer == nullptr) return EGW_OK;
    call_ctx c;
    c.host = this;
    int rc = plugin_->on_timer(instance_, now_ms, reinterpret_cast<egw_call*>(&c));
    if (c.bad_output) rc = EGW_ERROR;
    if (rc == EGW_OK) {
        for (auto& o : c.outputs) out.push_back(std::move(o));
    }
    return rc;
}

int mini_host::snapshot(std::string& state) {
    state.clear();
    call_ctx c;
    c.host = this;
    c.state = &state;
    return plugin_->on_snapshot(instance_, reinterpret_cast<egw_call*>(&c));
}

int mini_host::restore(const std::string& state) {
    return plugin_->on_restore(instance_, reinterpret_cast<const uint8_t*>(state.data()),
                               state.size());
}

}  // namespace egw::test
