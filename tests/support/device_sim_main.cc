// SPDX-License-Identifier: Apache-2.0
// egw-device-sim: a simulated device as a real MQTT client of the local broker (docs/devices.md).
// It registers with its capabilities, keeps a retained online status with an offline last will,
// accepts every task of its type, runs it for --delay-ms and reports succeeded (or failed with
// --fail), de-duplicating task messages by (task, attempt). --vanish-after-accept ends the
// process abruptly after the first accepted report: no DISCONNECT, so the broker publishes the
// will, as for a device that lost power.
//
// Threads: Paho's callback thread only queues task messages; the main thread runs them.
#include <mqtt/async_client.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <iostream>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include <unistd.h>

#include <nlohmann/json.hpp>

using json = nlohmann::json;

namespace {

struct queue_callback : mqtt::callback {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::string> tasks;
    void message_arrived(mqtt::const_message_ptr msg) override {
        try {
            std::lock_guard lock(mu);
            tasks.push_back(msg->get_payload_str());
            cv.notify_one();
        } catch (...) {
        }
    }
};

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"egw-device-sim: a simulated edge-gateway device"};
    std::string uri = "tcp://127.0.0.1:1883", id = "sim-1", boot, type = "work";
    int delay_ms = 100, max_concurrent = 1, cores = 4;
    bool fail = false, vanish = false;
    app.add_option("--uri", uri, "the local broker");
    app.add_option("--id", id, "device id");
    app.add_option("--boot", boot, "per-boot id (default: pid and time)");
    app.add_option("--type", type, "the task type it runs");
    app.add_option("--delay-ms", delay_ms, "how long a task runs");
    app.add_option("--max-concurrent", max_concurrent, "max_concurrent of its task type");
    app.add_option("--cores", cores, "caps.cores");
    app.add_flag("--fail", fail, "report every task as failed (retryable)");
    app.add_flag("--vanish-after-accept", vanish, "die without DISCONNECT after accepting");
    CLI11_PARSE(app, argc, argv);
    if (boot.empty())
        boot = std::to_string(::getpid()) + "-" +
               std::to_string(std::chrono::system_clock::now().time_since_epoch().count());
    const std::string base = "devices/" + id;
    try {
        mqtt::async_client cli(uri, "egw-device-sim-" + id, nullptr);
        queue_callback cb;
        cli.set_callback(cb);
        mqtt::connect_options opts;
        opts.set_clean_session(true);
        opts.set_keep_alive_interval(5);
        opts.set_will(mqtt::message(base + "/status",
                                    json{{"state", "offline"}, {"boot", boot}}.dump(), 1, true));
        cli.connect(opts)->wait();
        cli.subscribe(base + "/tasks/+", 1)->wait();
        json reg = {
            {"boot", boot},
            {"caps",
             {{"cores", cores},
              {"arch", "x86_64"},
              {"memory_mb", 1024},
              {"accelerators", json::array()},
              {"benchmark", 100},
              {"bandwidth_kbps", 10000}}},
            {"tasks",
             json::array(
                 {{{"type", type}, {"version", "1.0"}, {"max_concurrent", max_concurrent}}})},
            {"labels", {{"sim", "1"}}}};
        cli.publish(base + "/register", reg.dump(), 1, false)->wait();
        cli.publish(base + "/status", json{{"state", "online"}, {"boot", boot}}.dump(), 1, true)
            ->wait();
        std::cout << "registered " << id << " boot " << boot << std::endl;
        std::set<std::pair<std::string, int>> seen;
        for (;;) {
            std::string payload;
            {
                std::unique_lock lock(cb.mu);
                cb.cv.wait(lock, [&] { return !cb.tasks.empty(); });
                payload = std::move(cb.tasks.front());
                cb.tasks.pop_front();
            }
            json t = json::parse(payload, nullptr, false);
            if (t.is_discarded() || !t.contains("task")) continue;
            const std::string task = t.value("task", "");
            const int attempt = t.value("attempt", 0);
            if (!seen.insert({task, attempt}).second) continue;  // QoS 1 may deliver twice
            const std::string topic = base + "/tasks/" + task + "/state";
            auto report = [&](json r) {
                r["task"] = task;
                r["attempt"] = attempt;
                cli.publish(topic, r.dump(), 1, false)->wait();
            };
            report({{"state", "accepted"}});
            std::cout << "accepted " << task << " attempt " << attempt << std::endl;
            if (vanish) {
                std::cout << "vanishing" << std::endl;
                std::_Exit(0);  // no DISCONNECT: the broker sends the will
            }
            report({{"state", "running"}});
            std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
            if (fail) {
                report({{"state", "failed"}, {"error", "simulated failure"}, {"retryable", true}});
            } else {
                report({{"state", "succeeded"},
                        {"result", {{"device", id}, {"input", t.value("input", json())}}}});
            }
            std::cout << "finished " << task << std::endl;
        }
    } catch (const std::exception& e) {
        std::cerr << "egw-device-sim: " << e.what() << "\n";
        return 1;
    }
}
