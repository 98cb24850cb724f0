// SPDX-License-Identifier: Apache-2.0
//
// egw-camera-bench: camera-motion (issue 11) measured in process through its real .so, with
// the simulated camera for input and ground truth. Figures, each with its baseline from the
// same run:
//   (a) frames per second on one core (thread CPU time) at 640x480 and 1920x1080, against a
//       plain full-size luma decode of the same frames (what skipping the DCT scaling costs)
//       [640x480 >= 400/s, 1080p >= 120/s];
//   (b) 10 minutes of a mostly still 1080p scene at 2 fps with the simulator's episodes, run as
//       fast as possible on simulated time: payload bytes out (events, thumbnails, frames)
//       against bytes in [<= 2 %], precision and recall against the ground truth [recall 100 %,
//       precision >= 95 %];
//   (c) peak RSS of a fresh process serving 8 1080p cameras with one instance [<= 64 MiB],
//       against the same process before it loads the plugin.
// The isolation cost and the loop stall need the gateway's plugin host and are measured there.
//
//   egw-camera-bench [--quick]      (--quick: 1 minute instead of 10 in (b), shorter (a))
#include <sys/resource.h>
#include <sys/wait.h>
#include <turbojpeg.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mini_host.h"
#include "support/camera_sim.h"

namespace {

using egw::test::camera_sim;
using egw::test::host_output;
using egw::test::mini_host;

constexpr int64_t base_ms = 1'700'000'000'000;

double thread_cpu_s() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double wall_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

const char* contract_config =
    R"({"scale_height": 120, "pixel_threshold": 30, "min_area_pct": 0.5,
        "relearn_above_pct": 80, "min_frames": 2, "end_after_s": 3,
        "thumbnail_width": 240, "keep_frames": "start+peak", "heartbeat_s": 60})";

std::vector<std::string> render(int w, int h, size_t n, int64_t duration_ms, int episodes,
                                uint32_t seed) {
    camera_sim sim(camera_sim::scenario(w, h, 2, duration_ms, episodes, seed));
    std::vector<std::string> v;
    for (size_t i = 0; i < n; ++i) v.push_back(sim.next().jpeg);
    return v;
}

// (a)
void throughput(int w, int h, double min_cpu_s, double target) {
    // 40 frames (20 s) with an object crossing: the plugin sees motion and still frames.
    const auto frames = render(w, h, 40, 20'000, 1, 3);
    size_t bytes = 0;
    for (const auto& f : frames) bytes += f.size();
    mini_host host(EGW_CAMERA_MOTION_SO);
    if (!host.create(contract_config)) throw std::runtime_error("create failed");
    std::vector<host_output> out;
    size_t n = 0;
    const double c0 = thread_cpu_s(), w0 = wall_s();
    while (thread_cpu_s() - c0 < min_cpu_s || n < 200) {
        const auto& f = frames[n % frames.size()];
        host.message("devices/bench/camera/a", f, base_ms + static_cast<int64_t>(n) * 500, n, out);
        out.clear();
        ++n;
    }
    const double cpu = thread_cpu_s() - c0, wall = wall_s() - w0;
    // Baseline: a full-size luma decode of the same frames, no analysis.
    tjhandle d = tjInitDecompress();
    std::vector<uint8_t> buf(static_cast<size_t>(w) * h);
    size_t m = 0;
    const double b0 = thread_cpu_s();
    while (thread_cpu_s() - b0 < min_cpu_s / 2 || m < 50) {
        const auto& f = frames[m % frames.size()];
        tjDecompress2(d, reinterpret_cast<const unsigned char*>(f.data()), f.size(), buf.data(), w,
                      0, h, TJPF_GRAY, 0);
        ++m;
    }
    const double bcpu = thread_cpu_s() - b0;
    tjDestroy(d);
    const double fps = n / cpu, base_fps = m / bcpu;
    std::printf(
        "(a) %4dx%-4d  camera-motion %7.0f frames/s per core (%.2f ms CPU/frame; wall %.0f/s "
        "on this loaded box)  [target >= %.0f: %s]\n"
        "               baseline full-size luma decode %7.0f frames/s  ratio %.2fx; mean JPEG "
        "%zu bytes\n",
        w, h, fps, 1000.0 / fps, n / wall, target, fps >= target ? "met" : "MISSED", base_fps,
        fps / base_fps, bytes / frames.size());
}

// (b)
void ten_minutes(int64_t duration_ms) {
    const int episodes =
        static_cast<int>(duration_ms / 100'000) > 0 ? static_cast<int>(duration_ms / 100'000) : 1;
    camera_sim sim(camera_sim::scenario(1920, 1080, 2, duration_ms, episodes, 42));
    const size_t n = static_cast<size_t>(duration_ms / 500);
    mini_host host(EGW_CAMERA_MOTION_SO);
    if (!host.create(contract_config)) throw std::runtime_error("create failed");
    const std::string topic = "devices/bench/camera/yard";
    std::vector<host_output> out;
    uint64_t in_bytes = 0;
    double cpu = 0;
    for (size_t i = 0; i < n; ++i) {
        const auto f = sim.next();
        in_bytes += f.jpeg.size();
        const double c0 = thread_cpu_s();
        host.message(topic, f.jpeg, base_ms + f.t_ms, i, out);
        cpu += thread_cpu_s() - c0;
    }
    host.timer(base_ms * 2, out);
    uint64_t out_bytes = 0, event_bytes = 0, thumb_bytes = 0, frame_bytes = 0;
    size_t events = 0, thumbs = 0, frames = 0, heartbeats = 0;
    struct span {
        int64_t start, end;
        bool ended = false;
    };
    std::vector<span> det;
    for (const auto& o : out) {
        out_bytes += o.payload.size();
        if (o.topic == topic + "/motion") {
            ++events;
            event_bytes += o.payload.size();
            const auto j = nlohmann::json::parse(o.payload);
            if (j["event"] == "heartbeat") ++heartbeats;
            if (j["event"] == "start")
                det.push_back({j["frame_ts_ms"].get<int64_t>() - base_ms, 0});
            if (j["event"] == "end" && !det.empty()) {
                det.back().end = j["frame_ts_ms"].get<int64_t>() - base_ms;
                det.back().ended = true;
            }
        } else if (o.topic == topic + "/thumbnail") {
            ++thumbs;
            thumb_bytes += o.payload.size();
        } else {
            ++frames;
            frame_bytes += o.payload.size();
        }
    }
    const auto truth = sim.truth(n);
    size_t found = 0, matched = 0;
    for (const auto& t : truth) {
        bool f = false;
        for (const auto& d : det)
            f |= d.start <= t.end_ms && (d.ended ? d.end : d.start) >= t.start_ms;
        found += f;
    }
    for (const auto& d : det) {
        bool f = false;
        for (const auto& t : truth)
            f |= d.start <= t.end_ms && (d.ended ? d.end : d.start) >= t.start_ms;
        matched += f;
    }
    const double ratio = 100.0 * static_cast<double>(out_bytes) / static_cast<double>(in_bytes);
    const double recall = truth.empty() ? 100 : 100.0 * found / truth.size();
    const double precision = det.empty() ? 100 : 100.0 * matched / det.size();
    std::printf(
        "(b) %lld s of 1080p at 2 fps (%zu frames, %zu true episodes), simulated time, %.1f s "
        "CPU in the plugin\n"
        "    in:  %zu frames, %.1f MB\n"
        "    out: %zu events (%zu heartbeats, %.1f KB), %zu thumbnails (%.1f KB), %zu frames "
        "(%.1f KB) = %.2f MB\n"
        "    bytes out / bytes in = %.3f %%  [target <= 2 %%: %s]\n"
        "    detected %zu episodes: recall %.1f %% [100 %%: %s], precision %.1f %% [>= 95 %%: "
        "%s]\n",
        static_cast<long long>(duration_ms / 1000), n, truth.size(), cpu, n, in_bytes / 1e6, events,
        heartbeats, event_bytes / 1e3, thumbs, thumb_bytes / 1e3, frames, frame_bytes / 1e3,
        out_bytes / 1e6, ratio, ratio <= 2 ? "met" : "MISSED", det.size(), recall,
        recall >= 100 ? "met" : "MISSED", precision, precision >= 95 ? "met" : "MISSED");
}

long vm_hwm_kib() {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line)) {
        if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
    }
    return -1;
}

// (c), in a fresh process: --rss-child FILE reads length-prefixed frames from FILE and feeds
// each to 8 cameras of one instance, one frame in memory at a time.
int rss_child(const char* path) {
    const long before = vm_hwm_kib();
    mini_host host(EGW_CAMERA_MOTION_SO);
    if (!host.create(contract_config)) return 1;
    std::vector<host_output> out;
    std::string frame;
    for (int round = 0; round < 3; ++round) {
        std::ifstream in(path, std::ios::binary);
        uint32_t len = 0;
        for (size_t i = 0; in.read(reinterpret_cast<char*>(&len), 4); ++i) {
            frame.resize(len);
            in.read(frame.data(), len);
            const size_t t = round * 1000 + i;
            for (int cam = 0; cam < 8; ++cam) {
                host.message("devices/d" + std::to_string(cam) + "/camera/c", frame,
                             base_ms + static_cast<int64_t>(t) * 500, t * 8 + cam, out);
                out.clear();
            }
        }
    }
    std::string state;
    host.snapshot(state);
    const long after = vm_hwm_kib();
    std::printf(
        "(c) 8 cameras of 1920x1080 on one instance: peak RSS %.1f MiB [target <= 64 MiB: %s]; "
        "the same process before loading the plugin %.1f MiB; snapshot %zu KB\n",
        after / 1024.0, after <= 64 * 1024 ? "met" : "MISSED", before / 1024.0,
        state.size() / 1024);
    return 0;
}

void peak_rss(const char* self) {
    char tmpl[] = "/tmp/egw-camera-bench-XXXXXX";
    const int fd = mkstemp(tmpl);
    if (fd < 0) throw std::runtime_error("mkstemp");
    close(fd);
    {
        // Episodes early and often, so all 8 cameras hold a peak frame at once.
        const auto frames = render(1920, 1080, 60, 30'000, 2, 5);
        std::ofstream f(tmpl, std::ios::binary);
        for (const auto& fr : frames) {
            const auto len = static_cast<uint32_t>(fr.size());
            f.write(reinterpret_cast<const char*>(&len), 4);
            f.write(fr.data(), len);
        }
    }
    std::fflush(stdout);
    const pid_t pid = fork();
    if (pid == 0) {
        execl(self, self, "--rss-child", tmpl, static_cast<char*>(nullptr));
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    unlink(tmpl);
}

}  // namespace

int main(int argc, char** argv) {
    try {
        if (argc == 3 && std::strcmp(argv[1], "--rss-child") == 0) return rss_child(argv[2]);
        const bool quick = argc == 2 && std::strcmp(argv[1], "--quick") == 0;
        std::printf("egw-camera-bench: camera-motion in process (%s)\n", EGW_CAMERA_MOTION_SO);
        throughput(640, 480, quick ? 1.0 : 3.0, 400);
        throughput(1920, 1080, quick ? 1.0 : 3.0, 120);
        ten_minutes(quick ? 60'000 : 600'000);
        peak_rss("/proc/self/exe");
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "egw-camera-bench: %s\n", e.what());
        return 1;
    }
}
