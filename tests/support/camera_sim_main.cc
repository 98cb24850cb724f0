// SPDX-License-Identifier: Apache-2.0
//
// egw-camera-sim: publishes a simulated camera's JPEG frames to an MQTT broker at the camera's
// rate (for the demo and manual runs) and writes the ground truth as JSON.
//
//   egw-camera-sim --broker tcp://127.0.0.1:1883 --topic devices/cam1/camera/front
//                  --width 1280 --height 720 --fps 2 --duration-s 120 --episodes 3
//                  --truth truth.json
//
// --fast publishes as fast as the broker acks instead of in real time. Exit code 0 when every
// frame was acknowledged, 1 on an MQTT error, 2 on bad arguments.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include "support/camera_sim.h"
#include "support/mqtt_test_client.h"

int main(int argc, char** argv) {
    CLI::App app{"egw-camera-sim: a simulated camera that publishes JPEG frames over MQTT"};
    std::string broker = "tcp://127.0.0.1:1883", topic = "devices/cam1/camera/front", truth_file;
    std::string client_id = "egw-camera-sim";
    int width = 1280, height = 720, episodes = 3, quality = 80;
    double fps = 2, duration_s = 120;
    uint32_t seed = 1;
    bool fast = false;
    app.add_option("--broker", broker, "MQTT server URI")->capture_default_str();
    app.add_option("--topic", topic, "topic to publish frames on")->capture_default_str();
    app.add_option("--client-id", client_id)->capture_default_str();
    app.add_option("--width", width)->capture_default_str()->check(CLI::Range(16, 7680));
    app.add_option("--height", height)->capture_default_str()->check(CLI::Range(16, 4320));
    app.add_option("--fps", fps)->capture_default_str()->check(CLI::Range(0.01, 240.0));
    app.add_option("--duration-s", duration_s)->capture_default_str()->check(CLI::PositiveNumber);
    app.add_option("--episodes", episodes, "objects crossing the scene")->capture_default_str();
    app.add_option("--quality", quality, "JPEG quality")
        ->capture_default_str()
        ->check(CLI::Range(1, 100));
    app.add_option("--seed", seed)->capture_default_str();
    app.add_option("--truth", truth_file, "write the ground truth (JSON) here");
    app.add_flag("--fast", fast, "publish as fast as acknowledged, not in real time");
    CLI11_PARSE(app, argc, argv);

    const auto duration_ms = static_cast<int64_t>(duration_s * 1000);
    auto opts = egw::test::camera_sim::scenario(width, height, fps, duration_ms, episodes, seed);
    opts.quality = quality;
    egw::test::camera_sim sim(opts);
    const auto frames = static_cast<size_t>(duration_s * fps);

    uint64_t bytes = 0;
    int64_t base_ms = 0;
    try {
        egw::test::test_publisher pub(broker, client_id, 16);
        pub.connect();
        const auto t0 = std::chrono::steady_clock::now();
        base_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
        for (size_t i = 0; i < frames; ++i) {
            egw::test::sim_frame f = sim.next();
            if (!fast) std::this_thread::sleep_until(t0 + std::chrono::milliseconds(f.t_ms));
            pub.publish(topic, f.jpeg, 1);
            bytes += f.jpeg.size();
        }
        pub.flush();
        pub.disconnect();
    } catch (const std::exception& e) {
        std::cerr << "egw-camera-sim: " << e.what() << "\n";
        return 1;
    }
    const auto truth = sim.truth(frames);
    if (!truth_file.empty()) {
        std::ofstream out(truth_file);
        out << egw::test::truth_json(truth, base_ms) << "\n";
    }
    std::printf("egw-camera-sim: %zu frames, %llu bytes, %zu true episodes\n", frames,
                static_cast<unsigned long long>(bytes), truth.size());
    return 0;
}
