// SPDX-License-Identifier: Apache-2.0
//
// Fuzzes a plugin through the C ABI with a minimal host: the .so named by EGW_FUZZ_PLUGIN is
// loaded the way the gateway loads it (dlopen RTLD_NOW | RTLD_LOCAL, egw_plugin_entry, ABI
// major check), one instance is created from EGW_FUZZ_PLUGIN_CONFIG (default "{}"), and each
// input becomes a message (a topic under devices/<id>/ and any payload bytes). The timer hook
// runs when asked for, and every 16 messages a stateful plugin snapshots and a second instance
// restores from that snapshot. Whatever the plugin does with bad input, it must return EGW_OK or
// EGW_ERROR and emit only outputs the host would accept, without a sanitizer report.
//
//   EGW_FUZZ_PLUGIN=plugins/window-stats/window-stats.so \
//   EGW_FUZZ_PLUGIN_CONFIG='{"field":"temp_c","window_ms":1000}' build-fuzz/tests/fuzz/plugin_fuzz
#include <dlfcn.h>
#include <edge-gateway/plugin.h>
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

struct egw_call {
    bool snapshot = false;
    std::vector<uint8_t> state;
    int64_t timer_at = 0;
    size_t emitted = 0;
    bool invalid = false;
};

namespace {

void host_log(void*, int level, const char* text, size_t len) {
    if (level < EGW_LOG_DEBUG || level > EGW_LOG_ERROR || (len > 0 && text == nullptr))
        __builtin_trap();
    if (len > 0) (void)std::memchr(text, 0, len);  // ASan checks that the whole range is readable
}

int host_emit(egw_call* call, const egw_output* out) {
    if (call == nullptr || out == nullptr || call->snapshot) __builtin_trap();
    if (out->struct_size < offsetof(egw_output, content_type)) return EGW_ERROR;
    if (out->topic_len == 0 || out->topic == nullptr) {
        call->invalid = true;
        return EGW_ERROR;
    }
    // Touch every byte the plugin claims: ASan reports a length that overruns its buffer.
    std::string topic(out->topic, out->topic_len);
    std::string payload(reinterpret_cast<const char*>(out->payload), out->payload_len);
    if (topic.find_first_of("+#") != std::string::npos || payload.size() > (1u << 20)) {
        call->invalid = true;
        return EGW_ERROR;
    }
    ++call->emitted;
    return EGW_OK;
}

void host_set_timer(egw_call* call, int64_t at_ms) {
    if (call == nullptr || call->snapshot) __builtin_trap();
    call->timer_at = at_ms;
}

int host_write_state(egw_call* call, const uint8_t* data, size_t len) {
    if (call == nullptr || !call->snapshot) __builtin_trap();
    call->state.insert(call->state.end(), data, data + len);
    return EGW_OK;
}

const egw_host host = {sizeof(egw_host), EGW_ABI_MINOR,  host_log,
                       host_emit,        host_set_timer, host_write_state};

struct loaded {
    const egw_plugin* p = nullptr;
    void* instance = nullptr;
    std::string config;
    int64_t timer_at = 0;
    uint64_t seq = 0;
};

loaded& plugin() {
    static loaded l = [] {
        loaded r;
        const char* path = std::getenv("EGW_FUZZ_PLUGIN");
        if (path == nullptr) {
            std::fprintf(stderr, "plugin_fuzz: set EGW_FUZZ_PLUGIN to a plugin .so\n");
            std::exit(2);
        }
        void* h = ::dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (h == nullptr) {
            std::fprintf(stderr, "plugin_fuzz: %s\n", ::dlerror());
            std::exit(2);
        }
        auto entry = reinterpret_cast<egw_plugin_entry_fn>(::dlsym(h, EGW_PLUGIN_ENTRY_SYMBOL));
        if (entry == nullptr || (r.p = entry()) == nullptr || r.p->abi_major != EGW_ABI_MAJOR ||
            r.p->create == nullptr || r.p->on_message == nullptr || r.p->destroy == nullptr) {
            std::fprintf(stderr, "plugin_fuzz: %s is not an ABI %d plugin\n", path, EGW_ABI_MAJOR);
            std::exit(2);
        }
        const char* cfg = std::getenv("EGW_FUZZ_PLUGIN_CONFIG");
        r.config = cfg ? cfg : "{}";
        char error[256] = {};
        r.instance =
            r.p->create(&host, nullptr, r.config.c_str(), r.config.size(), error, sizeof error);
        if (r.instance == nullptr) {
            std::fprintf(stderr, "plugin_fuzz: %s refused the config: %s\n", r.p->name, error);
            std::exit(2);
        }
        return r;
    }();
    return l;
}

}  // namespace

// Loaded before fuzzing starts, so libFuzzer sees the plugin's coverage counters from the start.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
    plugin();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    loaded& l = plugin();
    FuzzedDataProvider in(data, size);
    const std::string device = in.ConsumeRandomLengthString(16);
    const std::string stream = in.ConsumeRandomLengthString(16);
    const int64_t ts = 1'700'000'000'000 + in.ConsumeIntegralInRange<int64_t>(0, 86'400'000);
    const std::string payload = in.ConsumeRemainingBytesAsString();
    const std::string topic = "devices/" + device + "/telemetry/" + stream;

    // Exactly sized copies, so ASan sees any read past the end.
    std::vector<char> topic_buf(topic.begin(), topic.end());
    std::vector<uint8_t> payload_buf(payload.begin(), payload.end());
    egw_message msg{};
    msg.struct_size = sizeof msg;
    msg.topic = topic_buf.data();
    msg.topic_len = topic_buf.size();
    msg.payload = payload_buf.data();
    msg.payload_len = payload_buf.size();
    msg.qos = 1;
    msg.ts_ms = ts;
    msg.seq = ++l.seq;
    msg.device_id = topic_buf.data() + 8;
    msg.device_id_len = device.size();
    msg.content_type = "application/json";
    msg.content_type_len = 16;

    egw_call call;
    const int rc = l.p->on_message(l.instance, &msg, &call);
    if (rc != EGW_OK && rc != EGW_ERROR) __builtin_trap();
    if (call.timer_at != 0) l.timer_at = call.timer_at;
    if (l.p->on_timer && l.timer_at != 0 && ts >= l.timer_at) {
        egw_call tc;
        l.timer_at = 0;
        const int trc = l.p->on_timer(l.instance, ts, &tc);
        if (trc != EGW_OK && trc != EGW_ERROR) __builtin_trap();
        l.timer_at = tc.timer_at;
    }
    if (l.p->on_snapshot && (l.seq % 16) == 0) {
        egw_call sc;
        sc.snapshot = true;
        if (l.p->on_snapshot(l.instance, &sc) == EGW_OK && l.p->on_restore) {
            char error[256] = {};
            void* twin =
                l.p->create(&host, nullptr, l.config.c_str(), l.config.size(), error, sizeof error);
            if (twin == nullptr) __builtin_trap();  // the same config was accepted before
            std::vector<uint8_t> state = sc.state;
            const int rrc = l.p->on_restore(twin, state.data(), state.size());
            if (rrc != EGW_OK && rrc != EGW_ERROR) __builtin_trap();
            l.p->destroy(twin);
        }
    }
    return 0;
}
