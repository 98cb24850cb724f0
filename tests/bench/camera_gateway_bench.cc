// SPDX-License-Identifier: Apache-2.0
//
// camera-motion with the gateway's plugin host (issue 11, benchmarks 1 and 2):
//  (a) the frame rate of isolation: "process" against in process, through the same runtimes the
//      gateway uses (egw::plugin_runtimes: make_native_instance / make_isolated_instance), for
//      640x480 and 1920x1080 frames from the simulated camera [isolation >= 0.8x in process];
//  (b) the event loop's longest stall while 4 simulated cameras stream 640x480 at 10 fps through
//      the real daemon (camera-motion, isolation: process), from the status JSON's loop.lag_max_s
//      [< 5 ms], against a second daemon with the same config left idle as long (same run).
// Frame rates are per core from CPU time (this process plus the reaped plugin-host children),
// which a loaded machine does not distort; wall rates are printed beside them.
//
//   build/tests/bench/egw-camera-gateway-bench [frames per size, default 300] [stream seconds,
//   default 20]
#include <sys/resource.h>
#include <time.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "plugins/host/isolated_instance.h"
#include "plugins/host/native_instance.h"
#include "support/camera_sim.h"
#include "support/gateway_process.h"
#include "support/mosquitto_process.h"
#include "support/mqtt_test_client.h"
#include "support/temp_dir.h"

namespace {

using namespace egw::plugins;
using namespace std::chrono_literals;
using nlohmann::json;

double cpu_ns() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) * 1e9 + double(ts.tv_nsec);
}
double children_ns() {
    rusage ru{};
    getrusage(RUSAGE_CHILDREN, &ru);
    return (double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
            double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec)) *
           1e3;
}
long peak_rss_kib() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

const json k_motion_config = {{"scale_height", 120},    {"pixel_threshold", 30},
                              {"min_area_pct", 0.5},    {"relearn_above_pct", 80},
                              {"min_frames", 2},        {"end_after_s", 3},
                              {"thumbnail_width", 240}, {"keep_frames", "start+peak"},
                              {"heartbeat_s", 60}};

std::vector<std::string> render(int w, int h, size_t n, double fps) {
    // Motion in most of the clip, so the full path (components, thumbnails) is exercised.
    auto o = egw::test::camera_sim::scenario(w, h, fps, 30000, 1, 3);
    o.objects[0].start_ms = 0;
    o.objects[0].end_ms = 1000000;
    egw::test::camera_sim sim(o);
    std::vector<std::string> frames;
    for (size_t i = 0; i < n; ++i) frames.push_back(sim.next().jpeg);
    return frames;
}

struct rate {
    double cpu_fps = 0, wall_fps = 0;
};

// Runs every frame once through a fresh instance; the instance is destroyed before the child
// CPU time is read (RUSAGE_CHILDREN counts reaped children only).
rate run(const std::vector<std::string>& frames, bool isolated) {
    instance_spec spec;
    spec.name = "motion";
    spec.path = EGW_CAMERA_MOTION_SO;
    spec.config = k_motion_config;
    spec.limits.max_output_bytes = 64 << 20;
    spec.limits.time_budget_ms = 10000;
    isolation_options iso;
    iso.host_path = EGW_PLUGIN_HOST;
    auto inst = isolated ? make_isolated_instance(spec, iso) : make_native_instance(spec);
    message_view m;
    m.topic = "devices/cam1/camera/front";
    m.content_type = "image/jpeg";
    // Warm-up (and for isolation: the child's start), not counted.
    int64_t ts = 1'700'000'000'000;
    for (int i = 0; i < 5; ++i) {
        m.payload = frames[static_cast<size_t>(i) % frames.size()];
        m.ts_ms = ts += 100;
        inst->on_message(m);
    }
    const double c0 = children_ns(), p0 = cpu_ns();
    const auto w0 = std::chrono::steady_clock::now();
    uint64_t seq = 10;
    for (const auto& f : frames) {
        m.payload = f;
        m.ts_ms = ts += 100;
        m.seq = ++seq;
        if (!inst->on_message(m).ok()) std::fprintf(stderr, "a call failed\n");
    }
    const double wall_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
    const double parent = cpu_ns() - p0;
    inst.reset();
    const double child = isolated ? children_ns() - c0 : 0;
    const double n = double(frames.size());
    return {n / ((parent + child) / 1e9), n / wall_s};
}

void part_a(size_t n) {
    std::printf("(a) camera-motion per frame: isolation: process against in process (%zu frames)\n",
                n);
    for (auto [w, h] : {std::pair{640, 480}, std::pair{1920, 1080}}) {
        const auto frames = render(w, h, n, 10);
        size_t bytes = 0;
        for (auto& f : frames) bytes += f.size();
        // Best of 3 alternating runs each: the machine's load comes and goes.
        rate in{}, iso{};
        for (int k = 0; k < 3; ++k) {
            auto a = run(frames, false), b = run(frames, true);
            if (a.cpu_fps > in.cpu_fps) in = a;
            if (b.cpu_fps > iso.cpu_fps) iso = b;
        }
        const double ratio = iso.cpu_fps / in.cpu_fps;
        std::printf("    %4dx%-4d mean JPEG %zu B\n", w, h, bytes / frames.size());
        std::printf("      in process          %7.0f frames/s per core (wall %6.0f/s)\n",
                    in.cpu_fps, in.wall_fps);
        std::printf(
            "      isolation: process  %7.0f frames/s per core (wall %6.0f/s)  "
            "ratio %.2fx  [>= 0.8x: %s]\n",
            iso.cpu_fps, iso.wall_fps, ratio, ratio >= 0.8 ? "met" : "NOT met");
    }
}

// (b) Through the daemon: local and cloud Mosquitto, edge-gateway with camera-motion
// (isolation: process), 4 cameras at 10 fps for `seconds`.
void part_b(int seconds) {
    egw::test::temp_dir tmp("egw-cam-bench");
    egw::test::mosquitto_process local, cloud;
    local.start();
    cloud.start();
    json cfg = {
        {"gateway_id", "bench"},
        {"data_dir", (tmp.path() / "data").string()},
        {"log_level", "info"},  // start_and_wait_ready waits for the info line "ready"
        {"status_interval_ms", 1000},
        {"local",
         {{"uri", local.uri()},
          {"client_id", "bench-local"},
          {"max_payload_bytes", 4 << 20},
          {"subscribe", json::array({{{"filter", "devices/+/camera/#"}, {"qos", 1}}})}}},
        {"plugins",
         {{"instances",
           {{"motion",
             {{"plugin", "camera-motion"},
              {"isolation", "process"},
              {"config", k_motion_config}}}}}}},
        {"routes",
         json::array({{{"from", "devices/+/camera/#"}, {"via", {"motion"}}, {"to", {"cloud"}}}})},
        {"sinks",
         {{"cloud",
           {{"type", "mqtt"},
            {"uri", cloud.uri()},
            {"client_id", "bench-uplink"},
            {"topic", "gateways/{gateway_id}/{topic}"},
            {"qos", 1},
            {"mqtt_version", 5}}}}},
        {"buffer", {{"max_bytes", 512 << 20}, {"when_full", "drop-oldest"}}},
    };
    // Two daemons with the same config, one after the other: the first streams from its start,
    // the second stays idle as long. lag_max_s is a maximum since start, so each figure covers
    // its phase only (a daemon that idled first would carry the idle phase's maximum).
    auto start = [&](const char* name, json c) {
        const auto dir = tmp.path() / name;
        std::filesystem::create_directories(dir);
        c["data_dir"] = (dir / "data").string();
        auto g = std::make_unique<egw::test::gateway_process>(dir, c);
        if (!g->start_and_wait_ready(30s)) {
            std::printf("(b) the gateway did not start:\n%s\n", g->log_since_start().c_str());
            return std::unique_ptr<egw::test::gateway_process>();
        }
        return g;
    };
    auto lag = [](egw::test::gateway_process& g) -> double {
        auto s = g.status_json();
        return s ? egw::test::json_at(*s, "loop/lag_max_s").get<double>() : -1;
    };
    auto gwp = start("stream", cfg);
    if (!gwp) return;
    egw::test::gateway_process& gw = *gwp;

    constexpr int cameras = 4;
    constexpr double fps = 10;
    std::vector<std::vector<std::string>> clips;
    for (int c = 0; c < cameras; ++c) {
        auto o = egw::test::camera_sim::scenario(640, 480, fps, seconds * 1000, 2, 20 + c);
        egw::test::camera_sim sim(o);
        std::vector<std::string> f;
        for (int i = 0; i < seconds * fps; ++i) f.push_back(sim.next().jpeg);
        clips.push_back(std::move(f));
    }
    std::atomic<uint64_t> sent{0}, bytes{0};
    std::vector<std::thread> cams;
    const auto t0 = std::chrono::steady_clock::now();
    for (int c = 0; c < cameras; ++c) {
        cams.emplace_back([&, c] {
            egw::test::test_publisher pub(local.uri(), "cam-" + std::to_string(c), 16);
            pub.connect();
            const std::string topic = "devices/cam" + std::to_string(c) + "/camera/front";
            for (size_t i = 0; i < clips[c].size(); ++i) {
                std::this_thread::sleep_until(t0 +
                                              std::chrono::milliseconds(int64_t(i * 1000 / fps)));
                pub.publish(topic, clips[c][i]);
                ++sent;
                bytes += clips[c][i].size();
            }
            pub.flush();
            pub.disconnect();
        });
    }
    for (auto& t : cams) t.join();
    // Until the stage has processed every frame.
    auto st = gw.wait_until(
        [&](const json& s) {
            return egw::test::json_at(s, "plugins/instances/motion/in").get<int64_t>() >=
                       int64_t(sent.load()) &&
                   egw::test::json_at(s, "plugins/stage/rows_waiting") == 0;
        },
        120s);
    const double stream_max = lag(gw);
    gw.terminate();
    double idle_max = -1;
    if (auto idle = start("idle", cfg)) {
        std::this_thread::sleep_for(std::chrono::seconds(seconds));
        idle_max = lag(*idle);
        idle->terminate();
    }
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf(
        "(b) %d cameras, 640x480 at %.0f fps for %d s through the daemon "
        "(camera-motion, isolation: process): %llu frames, %.1f MB, done in %.1f s%s\n",
        cameras, fps, seconds, static_cast<unsigned long long>(sent.load()),
        double(bytes.load()) / 1e6, wall, st ? "" : " (stage NOT drained in 120 s)");
    if (st) {
        std::printf("    instance: p50 %s us, p99 %s us per frame, restarts %s\n",
                    egw::test::json_at(*st, "plugins/instances/motion/p50_us").dump().c_str(),
                    egw::test::json_at(*st, "plugins/instances/motion/p99_us").dump().c_str(),
                    egw::test::json_at(*st, "plugins/instances/motion/restarts").dump().c_str());
    }
    std::printf("    loop's longest stall: idle %.2f ms, streaming %.2f ms  [< 5 ms: %s]\n",
                idle_max * 1e3, stream_max * 1e3,
                stream_max >= 0 && stream_max < 0.005 ? "met" : "NOT met");
}

}  // namespace

int main(int argc, char** argv) {
    const size_t n = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 300;
    const int seconds = argc > 2 ? std::atoi(argv[2]) : 20;
    if (n > 0) part_a(n);  // 0: only (b)
    part_b(seconds);
    std::printf("peak RSS of the bench process: %.1f MiB\n", double(peak_rss_kib()) / 1024);
    return 0;
}
