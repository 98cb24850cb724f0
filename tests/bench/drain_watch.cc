// SPDX-License-Identifier: Apache-2.0
// egw-drain-watch: the clock of batch_drain.sh. Asks a running gateway for its status every few
// milliseconds over the control socket until one sink has drained, and prints when the gateway
// first answered and when the sink had no row waiting and no batch in flight, plus the
// gateway's peak resident size (VmHWM) as seen meanwhile.
//
//   egw-drain-watch --socket DATA_DIR/control.sock --sink out --pid PID
//                   [--interval-ms 10] [--timeout-s 600] [--status-out FILE]
//
// Prints key=value lines: first_ns, done_ns (CLOCK_REALTIME), vmhwm_kib; --status-out gets
// the last status answer. Exit code 0 when the sink drained, 1 on timeout or a dead gateway.
//
// Why not the CLI in a shell loop: one `edge-gateway status` process costs about 18 ms of CPU
// (and a python3 to read its JSON about 200 ms), so a 50 ms poll took a quarter of a core, or
// more, from the two-core machine whose drain it was timing. This polls in process: a connect
// and one status answer per poll, and a resolution of the poll interval.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "gateway/control.h"

namespace {

int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

long vmhwm_kib(const std::string& pid) {
    std::ifstream in("/proc/" + pid + "/status");
    std::string key;
    long value = 0;
    while (in >> key) {
        if (key == "VmHWM:") {
            in >> value;
            return value;
        }
        in.ignore(1 << 12, '\n');
    }
    return -1;  // gone
}

}  // namespace

int main(int argc, char** argv) {
    std::string socket, sink = "out", pid, status_out;
    int interval_ms = 10, timeout_s = 600;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i], v = argv[i + 1];
        if (k == "--socket") {
            socket = v;
        } else if (k == "--sink") {
            sink = v;
        } else if (k == "--pid") {
            pid = v;
        } else if (k == "--interval-ms") {
            interval_ms = std::stoi(v);
        } else if (k == "--timeout-s") {
            timeout_s = std::stoi(v);
        } else if (k == "--status-out") {
            status_out = v;
        } else {
            std::cerr << "egw-drain-watch: unknown option " << k << "\n";
            return 2;
        }
    }
    if (socket.empty() || pid.empty()) {
        std::cerr << "usage: egw-drain-watch --socket PATH --pid PID [--sink NAME] "
                     "[--interval-ms N] [--timeout-s N] [--status-out FILE]\n";
        return 2;
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    int64_t first = 0, done = 0;
    long peak = 0;
    nlohmann::json last;
    while (std::chrono::steady_clock::now() < deadline) {
        const long hwm = vmhwm_kib(pid);
        if (hwm < 0) {
            std::cerr << "egw-drain-watch: process " << pid << " is gone\n";
            return 1;
        }
        peak = std::max(peak, hwm);
        try {
            last = egw::control_request(socket, {{"cmd", "status"}});
            if (first == 0) first = now_ns();
            const auto& s = last.at("sinks").at(sink);
            if (s.at("rows_waiting").get<int64_t>() == 0 && s.at("batch_in_flight").is_null()) {
                done = now_ns();
                break;
            }
        } catch (const std::runtime_error&) {
            // Not answering yet (starting up).
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
    }
    peak = std::max(peak, vmhwm_kib(pid));
    if (!status_out.empty()) std::ofstream(status_out) << last.dump() << "\n";
    std::printf("first_ns=%lld\ndone_ns=%lld\nvmhwm_kib=%ld\n", static_cast<long long>(first),
                static_cast<long long>(done), peak);
    return done != 0 ? 0 : 1;
}
