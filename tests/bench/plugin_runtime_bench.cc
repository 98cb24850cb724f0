// SPDX-License-Identifier: Apache-2.0
//
// The plugin runtimes' cost per call, all measured in this run against the same baseline: the
// echo fixture (tests/plugins/runtime_fixtures) called in process through dlopen, with a host
// table whose emit copies the output as the gateway's does. Against it: the same plugin with
// isolation: "process", a no-op Lua script and a Lua echo. Payloads of 100 bytes and 1 MiB.
// Prints ns per call, the ratio to the baseline, and the peak RSS of this process and of the
// plugin host children.
//
//   build/tests/bench/egw-plugin-runtime-bench [iterations for 100 B, default 20000]
#include <dlfcn.h>
#include <malloc.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "edge-gateway/plugin.h"
#include "plugins/host/isolated_instance.h"
#include "plugins/host/lua_instance.h"

namespace {

using namespace egw::plugins;

// The baseline: the C ABI called directly, outputs copied into egw::plugins::output.
struct direct_echo {
    struct call_ctx {
        std::vector<output>* outs;
        std::string_view topic;
    };
    static int emit(egw_call* c, const egw_output* o) {
        auto* ctx = reinterpret_cast<call_ctx*>(c);
        output out;
        out.topic.assign(ctx->topic);
        out.topic.append(o->topic, o->topic_len);
        out.payload.assign(reinterpret_cast<const char*>(o->payload), o->payload_len);
        if (o->content_type) out.content_type.assign(o->content_type, o->content_type_len);
        ctx->outs->push_back(std::move(out));
        return EGW_OK;
    }
    static void log(void*, int, const char*, size_t) {}
    static void set_timer(egw_call*, int64_t) {}
    static int write_state(egw_call*, const uint8_t*, size_t) { return EGW_ERROR; }

    explicit direct_echo(const char* path) {
        void* h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h) throw std::runtime_error(dlerror());
        p = reinterpret_cast<egw_plugin_entry_fn>(dlsym(h, EGW_PLUGIN_ENTRY_SYMBOL))();
        host = {sizeof(egw_host), EGW_ABI_MINOR, &log, &emit, &set_timer, &write_state};
        char err[256];
        inst = p->create(&host, nullptr, "{}", 2, err, sizeof err);
    }
    std::vector<output> call(const message_view& m) {
        std::vector<output> outs;
        call_ctx ctx{&outs, m.topic};
        egw_message msg{};
        msg.struct_size = sizeof msg;
        msg.topic = m.topic.data();
        msg.topic_len = m.topic.size();
        msg.payload = reinterpret_cast<const uint8_t*>(m.payload.data());
        msg.payload_len = m.payload.size();
        p->on_message(inst, &msg, reinterpret_cast<egw_call*>(&ctx));
        return outs;
    }
    const egw_plugin* p;
    egw_host host;
    void* inst;
};

// The best of 5 rounds: the machine is shared, and the best round is the one least disturbed.
double ns_per_call(int iterations, const std::function<size_t()>& call) {
    size_t sink = 0;
    for (int i = 0; i < iterations / 10 + 1; ++i) sink += call();  // warm up
    double best = 1e18;
    for (int round = 0; round < 5; ++round) {
        auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < iterations; ++i) sink += call();
        std::chrono::duration<double, std::nano> ns = std::chrono::steady_clock::now() - t0;
        best = std::min(best, ns.count() / iterations);
    }
    if (sink == 0) std::printf("(no outputs?)\n");
    return best;
}

}  // namespace

int main(int argc, char** argv) {
    int small_iters = argc > 1 ? std::atoi(argv[1]) : 20000;
    // EGW_BENCH_MALLOPT=1: keep freed MiB-sized blocks in the heap instead of glibc's default of
    // unmapping/trimming them, which makes every 1 MiB call pay ~256 page faults (see README).
    if (const char* e = std::getenv("EGW_BENCH_MALLOPT"); e && *e == '1') {
        mallopt(M_MMAP_THRESHOLD, 64 << 20);
        mallopt(M_TRIM_THRESHOLD, 128 << 20);
        std::printf("mallopt: mmap threshold 64 MiB, trim threshold 128 MiB\n");
    }
    auto dir = std::filesystem::temp_directory_path() / "egw-rt-bench";
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "noop.lua") << "function on_message(m) end\n";
    std::ofstream(dir / "echo.lua")
        << "function on_message(m) emit{suffix = '/echo', payload = m.payload} end\n";

    instance_spec spec;
    spec.name = "bench";
    spec.path = EGW_RT_ECHO;
    spec.limits.max_output_bytes = 8 << 20;
    spec.limits.time_budget_ms = 5000;
    isolation_options iso;
    iso.host_path = EGW_PLUGIN_HOST;

    direct_echo direct(EGW_RT_ECHO);
    auto isolated = make_isolated_instance(spec, iso);
    instance_spec lua_noop = spec, lua_echo = spec;
    lua_noop.path = (dir / "noop.lua").string();
    lua_echo.path = (dir / "echo.lua").string();
    auto noop = make_lua_instance(lua_noop);
    auto echo = make_lua_instance(lua_echo);

    std::printf("%-34s %10s %12s %10s\n", "runtime (echo plugin)", "payload", "ns/call", "ratio");
    for (size_t size : {size_t(100), size_t(1) << 20}) {
        std::string payload(size, 'x');
        message_view m;
        m.topic = "devices/d1/telemetry/t";
        m.payload = payload;
        int iters = size <= 100 ? small_iters : std::max(50, small_iters / 100);
        double base = ns_per_call(iters, [&] { return direct.call(m).size(); });
        double iso_ns = ns_per_call(iters, [&] { return isolated->on_message(m).outputs.size(); });
        double lua_noop_ns = ns_per_call(iters, [&] { return noop->on_message(m).ok() ? 1 : 0; });
        double lua_echo_ns = ns_per_call(iters, [&] { return echo->on_message(m).ok() ? 1 : 0; });
        const char* label = size <= 100 ? "100 B" : "1 MiB";
        std::printf("%-34s %10s %12.0f %10s\n", "in process (dlopen, direct call)", label, base,
                    "1.00x");
        std::printf("%-34s %10s %12.0f %9.2fx\n", "isolation: process", label, iso_ns,
                    iso_ns / base);
        std::printf("%-34s %10s %12.0f %9.2fx\n", "Lua echo (emit payload)", label, lua_echo_ns,
                    lua_echo_ns / base);
        std::printf("%-34s %10s %12.0f %9.2fx\n", "Lua no-op", label, lua_noop_ns,
                    lua_noop_ns / base);
    }
    std::printf("isolation restarts during the run: %llu\n",
                static_cast<unsigned long long>(isolated->restarts()));
    isolated.reset();  // reaps the child, so RUSAGE_CHILDREN covers it
    rusage self{}, children{};
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &children);
    std::printf("peak RSS: this process %ld KiB, plugin host child %ld KiB\n", self.ru_maxrss,
                children.ru_maxrss);
    std::filesystem::remove_all(dir);
    return 0;
}
