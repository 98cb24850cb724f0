// SPDX-License-Identifier: Apache-2.0
// Test plugins of the host (plugins/host), one source built as several .so files:
//   egw_test_echo       stateless; emits each payload on topic + config "suffix" (default
//                       "/echo"); payload "error" (or config "fail") returns EGW_ERROR, "throw"
//                       throws a C++ exception, "badtopic" emits a topic with a wildcard. Config
//                       {"reject": true} is refused with "reject: asked to".
//   egw_test_counter    stateful; emits "<payload>|n=<count>" on topic + "/count" (count of
//                       messages it has seen, restored from its snapshot).
//   egw_test_major      built for ABI major EGW_ABI_MAJOR + 1: must be refused.
//   egw_test_old_minor  an older minor: descriptor and outputs shorter than this header's.
#include <edge-gateway/plugin.h>

#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>

namespace {

struct state {
    const egw_host* host;
    void* ctx;
    std::string suffix = "/echo";
    std::string fail = "error";  // the payload that returns EGW_ERROR
    uint64_t count = 0;
};

void* create(const egw_host* host, void* ctx, const char* config, size_t len, char* error,
             size_t cap) {
    std::string c(config, len);
    if (c.find("\"reject\":true") != std::string::npos) {
        std::snprintf(error, cap, "reject: asked to");
        return nullptr;
    }
    auto* s = new state{host, ctx};
#ifdef EGW_TEST_COUNTER
    s->suffix = "/count";
#endif
    // {"suffix":"/x"}: the tests write compact JSON through the gateway's dump().
    if (auto at = c.find("\"suffix\":\""); at != std::string::npos) {
        auto from = at + 10;
        s->suffix = c.substr(from, c.find('"', from) - from);
    }
    if (auto at = c.find("\"fail\":\""); at != std::string::npos) {
        auto from = at + 8;
        s->fail = c.substr(from, c.find('"', from) - from);
    }
    return s;
}

void destroy(void* p) { delete static_cast<state*>(p); }

int on_message(void* p, const egw_message* m, egw_call* call) {
    auto* s = static_cast<state*>(p);
    std::string payload(reinterpret_cast<const char*>(m->payload), m->payload_len);
    if (payload == s->fail) {
        const char why[] = "payload says error";
        s->host->log(s->ctx, EGW_LOG_WARN, why, sizeof(why) - 1);
        return EGW_ERROR;
    }
    if (payload == "throw") throw std::runtime_error("payload says throw");
    ++s->count;
#ifdef EGW_TEST_COUNTER
    payload += "|n=" + std::to_string(s->count);
#endif
    egw_output out{};
#ifdef EGW_TEST_OLD_MINOR
    // An older minor's egw_output ended before content_type.
    out.struct_size = offsetof(egw_output, content_type);
#else
    out.struct_size = sizeof(egw_output);
#endif
    out.flags = EGW_OUTPUT_SUFFIX;
    std::string suffix = payload == "badtopic" ? "/#" : s->suffix;
    out.topic = suffix.data();
    out.topic_len = suffix.size();
    out.payload = reinterpret_cast<const uint8_t*>(payload.data());
    out.payload_len = payload.size();
    return s->host->emit(call, &out);
}

#ifdef EGW_TEST_COUNTER
int on_snapshot(void* p, egw_call* call) {
    auto* s = static_cast<state*>(p);
    std::string v = std::to_string(s->count);
    return s->host->write_state(call, reinterpret_cast<const uint8_t*>(v.data()), v.size());
}

int on_restore(void* p, const uint8_t* data, size_t len) {
    auto* s = static_cast<state*>(p);
    s->count = std::stoull(std::string(reinterpret_cast<const char*>(data), len));
    return EGW_OK;
}
#endif

const egw_plugin descriptor = [] {
    egw_plugin d{};
#ifdef EGW_TEST_MAJOR
    d.abi_major = EGW_ABI_MAJOR + 1;
#else
    d.abi_major = EGW_ABI_MAJOR;
#endif
    d.abi_minor = 0;
#ifdef EGW_TEST_OLD_MINOR
    // An older minor had no on_timer, on_snapshot or on_restore.
    d.struct_size = offsetof(egw_plugin, on_timer);
#else
    d.struct_size = sizeof(egw_plugin);
#endif
    d.name = "egw-test";
    d.version = "1";
    d.create = create;
    d.destroy = destroy;
    d.on_message = on_message;
#ifdef EGW_TEST_COUNTER
    d.on_snapshot = on_snapshot;
    d.on_restore = on_restore;
#endif
    return d;
}();

}  // namespace

extern "C" EGW_EXPORT const egw_plugin* egw_plugin_entry(void) { return &descriptor; }
