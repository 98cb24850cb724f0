// SPDX-License-Identifier: Apache-2.0
// Plugin benchmarks through the plugin harness (tests/support/plugin_harness.h), without the
// daemon: what a plugin itself costs per message, and what deadband + window-stats do to a site's
// traffic.
//
//   egw-plugins-bench [messages]      (default 200000 per measurement)
//
// 1. CPU ns per message through egw_fx_noop (the baseline: the harness's host services and a
//    plugin that emits its input), deadband, threshold-alert and window-stats, each as the best
//    of 3 runs over the same pre-built messages from 100 topics; printed with the ratio to noop.
// 2. The site of issue 7 §10 (twice: sensor noise sigma 0.08 and 0.25): 100 sensors at 1 reading/s
// for 10 simulated minutes through
//    deadband (delta 0.5, max_silence_s 300) then window-stats (10 s windows), timers fired as
//    simulated time passes. Messages and bytes out (window summaries) against in (readings).
// Peak RSS at the end. Figures go to stdout; nothing here is asserted (see the unit tests).
#include <sys/resource.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "support/plugin_harness.h"

namespace {

using egw::test::hook_result;
using egw::test::plugin_harness;
using egw::test::plugin_library;

constexpr int64_t kT0 = 1764446400000;  // 2025-11-29T20:00:00Z, on a 10 s boundary

std::string plugin_path(const char* name) {
    return std::string(EGW_PLUGIN_DIR) + "/" + name + ".so";
}

struct input {
    std::string topic;
    std::string payload;
    int64_t ts_ms;
};

// 100 sensors, one message each per 10 ms of ingest time, a reading that moves a little.
std::vector<input> make_stream(size_t n) {
    std::vector<input> in;
    in.reserve(n);
    std::mt19937_64 rng(7);
    std::normal_distribution<double> noise(0, 0.3);
    char buf[128];
    for (size_t i = 0; i < n; ++i) {
        int sensor = static_cast<int>(i % 100);
        int64_t ts = kT0 + static_cast<int64_t>(i) * 10;
        std::snprintf(buf, sizeof buf, "{\"temp\":%.2f,\"hum\":%.1f,\"ts\":%lld}",
                      20 + sensor * 0.1 + noise(rng), 45 + noise(rng), static_cast<long long>(ts));
        in.push_back({"devices/s" + std::to_string(sensor) + "/telemetry/env", buf, ts});
    }
    return in;
}

// CPU time of this thread, not wall time: the machines these run on are shared, and CPU time
// is what a plugin costs the loop whatever else runs beside it.
int64_t thread_cpu_ns() {
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

double ns_per_message(const plugin_library& lib, const char* config, const std::vector<input>& in,
                      size_t* outputs) {
    double best = 1e300;
    for (int run = 0; run < 3; ++run) {
        plugin_harness h(lib, config);
        size_t out = 0;
        int64_t start = thread_cpu_ns();
        for (const auto& m : in) {
            out += h.message(m.topic, m.payload, m.ts_ms).outputs.size();
            if (h.timer_ms() != 0 && h.timer_ms() <= m.ts_ms)
                out += h.advance_to(m.ts_ms).outputs.size();
        }
        auto ns = static_cast<double>(thread_cpu_ns() - start);
        best = std::min(best, ns / static_cast<double>(in.size()));
        *outputs = out;
    }
    return best;
}

// A slowly drifting temperature (a daily-like swing seen over minutes) with sensor noise and
// the 0.01 resolution of a typical sensor.
struct sensor {
    double base, amplitude, period_s, phase;
};

void site_simulation(double noise_sigma) {
    plugin_library deadband_lib(plugin_path("deadband"));
    plugin_library stats_lib(plugin_path("window-stats"));
    plugin_harness deadband(deadband_lib, R"({"field":"temp","delta":0.5,"max_silence_s":300})");
    plugin_harness stats(stats_lib, R"({"field":"temp","window_s":10})");

    std::mt19937_64 rng(11);
    std::uniform_real_distribution<double> u(0, 1);
    std::normal_distribution<double> noise(0, noise_sigma);
    std::vector<sensor> sensors;
    for (int s = 0; s < 100; ++s)
        sensors.push_back({18 + 6 * u(rng), 1 + 2 * u(rng), 1800 + 3600 * u(rng), 6.283 * u(rng)});

    uint64_t in_msgs = 0, in_bytes = 0, in_topic_bytes = 0;
    uint64_t mid_msgs = 0, mid_bytes = 0;
    uint64_t out_msgs = 0, out_bytes = 0, out_topic_bytes = 0;
    auto count_out = [&](const hook_result& r) {
        for (const auto& o : r.outputs) {
            ++out_msgs;
            out_bytes += o.payload.size();
            out_topic_bytes += o.topic.size();
        }
    };
    char buf[128];
    constexpr int kSeconds = 600;
    for (int t = 0; t < kSeconds; ++t) {
        for (int s = 0; s < 100; ++s) {
            // Sensors report at their own offset within the second.
            int64_t ts = kT0 + t * 1000LL + s * 9;
            const sensor& x = sensors[s];
            double temp =
                x.base + x.amplitude * std::sin(6.283 * t / x.period_s + x.phase) + noise(rng);
            std::snprintf(buf, sizeof buf, "{\"temp\":%.2f,\"hum\":%.1f,\"ts\":%lld}", temp,
                          50 + 5 * std::sin(t / 300.0 + s) + noise(rng),
                          static_cast<long long>(ts));
            std::string topic = "devices/s" + std::to_string(s) + "/telemetry/env";
            ++in_msgs;
            in_bytes += std::strlen(buf);
            in_topic_bytes += topic.size();
            count_out(stats.advance_to(ts));
            auto r = deadband.message(topic, buf, ts);
            for (const auto& o : r.outputs) {
                ++mid_msgs;
                mid_bytes += o.payload.size();
                count_out(stats.message(o.topic, o.payload, ts));
            }
        }
    }
    count_out(stats.advance_to(kT0 + kSeconds * 1000LL + 11000));

    std::printf(
        "\nsite: 100 sensors x 1 reading/s x %d s, noise sigma %.2f, through deadband(delta 0.5, "
        "max_silence_s 300) -> window-stats(window_s 10)\n",
        kSeconds, noise_sigma);
    std::printf("  in:              %8llu msgs %9llu payload bytes %9llu with topics\n",
                (unsigned long long)in_msgs, (unsigned long long)in_bytes,
                (unsigned long long)(in_bytes + in_topic_bytes));
    std::printf("  after deadband:  %8llu msgs %9llu payload bytes (%.1f %% of msgs)\n",
                (unsigned long long)mid_msgs, (unsigned long long)mid_bytes,
                100.0 * mid_msgs / in_msgs);
    std::printf("  out (summaries): %8llu msgs %9llu payload bytes %9llu with topics\n",
                (unsigned long long)out_msgs, (unsigned long long)out_bytes,
                (unsigned long long)(out_bytes + out_topic_bytes));
    double msg_pct = 100.0 * out_msgs / in_msgs;
    double byte_pct = 100.0 * out_bytes / in_bytes;
    double wire_pct = 100.0 * (out_bytes + out_topic_bytes) / (in_bytes + in_topic_bytes);
    std::printf(
        "  out/in: messages %.2f %%, payload bytes %.2f %%, payload+topic bytes %.2f %% "
        "[target <= 10 %%: %s]\n",
        msg_pct, byte_pct, wire_pct,
        msg_pct <= 10 && byte_pct <= 10 && wire_pct <= 10 ? "met" : "NOT met");
}

}  // namespace

int main(int argc, char** argv) {
    size_t n = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 200000;
    auto stream = make_stream(n);
    struct bench {
        const char* name;
        const char* config;
    };
    const bench benches[] = {
        {"egw_fx_noop", "{}"},
        {"deadband", R"({"field":"temp","delta":0.5,"max_silence_s":300})"},
        {"threshold-alert", R"({"rules":[{"field":"temp","above":30,"clear_below":28}]})"},
        {"window-stats", R"({"field":"temp","window_s":10})"},
    };
    std::printf(
        "plugin CPU cost per message through the harness (%zu msgs, 100 topics, best of "
        "3)\n",
        n);
    double baseline = 0;
    for (const auto& b : benches) {
        plugin_library lib(plugin_path(b.name));
        size_t outputs = 0;
        double ns = ns_per_message(lib, b.config, stream, &outputs);
        if (baseline == 0) baseline = ns;
        std::printf("  %-16s %8.0f ns/msg  %6.2fx noop  (%zu outputs)\n", b.name, ns, ns / baseline,
                    outputs);
    }
    // Sensor noise well under the deadband (a good sensor), then a noisy one whose noise alone
    // crosses delta now and then.
    site_simulation(0.08);
    site_simulation(0.25);
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    std::printf("\npeak RSS %ld KiB\n", ru.ru_maxrss);
    return 0;
}
