// SPDX-License-Identifier: Apache-2.0
// Scheduling decisions per second with 10,000 registered devices, and the task state machine's
// throughput, without I/O (the scheduler and engine are Sans-I/O, gateway/devices/).
//
//   build/tests/bench/egw-devices-bench [devices=10000] [seconds=2]
//
// Baseline, measured in the same run: an exact search that filters and scores every device
// listing the task's type (feasible_sample unlimited). The gateway's default stops after 100
// feasible devices, as kube-scheduler's percentageOfNodesToScore does; the ratio is printed.
#include <sys/resource.h>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>

#include "gateway/devices/engine.h"

using namespace egw::devices;
using bench_clock = std::chrono::steady_clock;

namespace {

// CPU seconds of this process: the machine may be shared, so rates are also given per CPU second.
double cpu_now() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

double last_cpu_rate = 0;

const char* const types[] = {"infer", "resize", "transcode", "aggregate"};

std::string reg_msg(std::mt19937& rng) {
    std::uniform_int_distribution<int> cores(1, 16), mem(1, 32), t(0, 3), zone(0, 3);
    int a = t(rng), b = (a + 1 + t(rng) % 3) % 4;
    json tasks = {{{"type", types[a]}, {"version", "1.2.0"}, {"max_concurrent", 4}},
                  {{"type", types[b]}, {"version", "2.0.1"}, {"max_concurrent", 2}}};
    json caps = {{"cores", cores(rng)}, {"memory_mb", 512 * mem(rng)}, {"arch", "arm64"}};
    if (rng() % 5 == 0) caps["accelerators"] = {"npu"};
    return json{{"boot", "b"},
                {"caps", caps},
                {"tasks", tasks},
                {"labels", {{"zone", std::to_string(zone(rng))}}}}
        .dump();
}

task make_task(std::mt19937& rng, int i) {
    task t;
    t.spec.id = "t" + std::to_string(i);
    t.spec.type = types[rng() % 4];
    t.spec.req.min_cores = static_cast<int>(rng() % 8);
    t.spec.req.min_memory_mb = 256 * static_cast<int64_t>(rng() % 16);
    if (rng() % 4 == 0) t.spec.req.labels["zone"] = std::to_string(rng() % 4);
    if (rng() % 10 == 0) t.spec.req.accelerators = {"npu"};
    return t;
}

size_t considered_total = 0;

double decisions_per_s(registry& reg, size_t sample, double seconds, size_t& found) {
    considered_total = 0;
    scheduler_options o;
    o.feasible_sample = sample;
    scheduler s(o);
    std::mt19937 rng(7);
    std::vector<task> tasks;
    for (int i = 0; i < 1024; ++i) tasks.push_back(make_task(rng, i));
    size_t n = 0;
    found = 0;
    double cpu0 = cpu_now();
    auto start = bench_clock::now();
    auto end = start + std::chrono::duration<double>(seconds);
    while (bench_clock::now() < end) {
        for (int k = 0; k < 256; ++k, ++n) {
            auto c = s.pick(reg, tasks[n % tasks.size()], 0);
            found += c.best != nullptr;
            considered_total += c.considered;
        }
    }
    double el = std::chrono::duration<double>(bench_clock::now() - start).count();
    last_cpu_rate = n / (cpu_now() - cpu0);
    std::printf("  (sample %zu: %.0f devices looked at per decision, %.0f%% found one)\n",
                sample == std::numeric_limits<size_t>::max() ? 0 : sample,
                double(considered_total) / n, 100.0 * found / n);
    return n / el;
}

}  // namespace

int main(int argc, char** argv) {
    int ndev = argc > 1 ? std::atoi(argv[1]) : 10000;
    double seconds = argc > 2 ? std::atof(argv[2]) : 2;
    std::mt19937 rng(1);
    engine e;
    effects fx;
    for (int i = 0; i < ndev; ++i) e.on_register("d" + std::to_string(i), reg_msg(rng), 0, fx);
    fx.clear();

    size_t found_exact = 0, found_sampled = 0;
    double exact =
        decisions_per_s(e.devices(), std::numeric_limits<size_t>::max(), seconds, found_exact);
    double exact_cpu = last_cpu_rate;
    double sampled = decisions_per_s(e.devices(), 100, seconds, found_sampled);
    double sampled_cpu = last_cpu_rate;
    std::printf("devices registered:                 %d\n", ndev);
    std::printf("baseline exact search (all devices): %10.0f decisions/s wall, %10.0f per CPU s\n",
                exact, exact_cpu);
    std::printf(
        "sampled search (100 feasible):       %10.0f decisions/s wall, %10.0f per CPU s"
        "  (x%.1f, target >= 50000)\n",
        sampled, sampled_cpu, sampled_cpu / exact_cpu);

    // The state machine: submit, dispatch, accept, running, succeeded, through the engine.
    double cpu0 = cpu_now();
    auto start = bench_clock::now();
    int tasks = 0;
    auto end = start + std::chrono::duration<double>(seconds);
    while (bench_clock::now() < end) {
        for (int k = 0; k < 100; ++k, ++tasks) {
            std::string id = "x" + std::to_string(tasks);
            e.submit(json{{"task", id}, {"type", types[tasks % 4]}}.dump(), tasks, fx);
            const task* t = e.find_task(id);
            if (const attempt* a = t->current()) {
                std::string dev = a->device;
                for (const char* st : {"accepted", "running", "succeeded"}) {
                    e.on_report(dev, id,
                                json{{"task", id}, {"attempt", a->n}, {"state", st}}.dump(), tasks,
                                fx);
                }
            }
            fx.clear();
        }
    }
    double el = std::chrono::duration<double>(bench_clock::now() - start).count();
    std::printf(
        "engine: submit..succeeded (5 states) %10.0f tasks/s wall, %10.0f per CPU s"
        "  (%llu succeeded)\n",
        tasks / el, tasks / (cpu_now() - cpu0),
        static_cast<unsigned long long>(e.counters().succeeded));
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    std::printf("peak RSS: %.1f MiB\n", ru.ru_maxrss / 1024.0);
    return sampled_cpu >= 50000 ? 0 : 1;
}
