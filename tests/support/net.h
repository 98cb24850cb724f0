// SPDX-License-Identifier: Apache-2.0
//
// Loopback port helpers and the polling primitive every wait in the tests goes through.

#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <thread>

namespace egw::test {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

// A TCP port on 127.0.0.1 that was free a moment ago, chosen at random below the kernel's
// ephemeral range (so no outgoing connection takes it as its source port while a broker is
// stopped); falls back to a kernel-chosen ephemeral port.
std::uint16_t free_port();

// True if a TCP connect to 127.0.0.1:port succeeds right now.
bool port_accepts(std::uint16_t port);

// Polls `predicate` every `interval` until it returns true (-> true) or `timeout` has passed
// (-> false, after one last check). The only way tests wait: never a blind sleep.
inline bool poll_until(const std::function<bool()>& predicate, std::chrono::milliseconds timeout,
                       std::chrono::milliseconds interval = 20ms) {
    const auto deadline = clock_type::now() + timeout;
    while (true) {
        if (predicate()) {
            return true;
        }
        if (clock_type::now() >= deadline) {
            return false;
        }
        std::this_thread::sleep_for(interval);
    }
}

// Waits until 127.0.0.1:port accepts connections.
bool wait_for_port(std::uint16_t port, std::chrono::milliseconds timeout);

}  // namespace egw::test
