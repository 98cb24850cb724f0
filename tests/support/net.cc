// SPDX-License-Identifier: Apache-2.0

#include "support/net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <random>
#include <system_error>
#include <utility>

namespace egw::test {

namespace {

sockaddr_in loopback(std::uint16_t port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return addr;
}

}  // namespace

namespace {

// The kernel's ephemeral range (source ports of outgoing connections).
std::pair<int, int> ephemeral_range() {
    int lo = 32768;
    int hi = 60999;
    if (FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
        if (std::fscanf(f, "%d %d", &lo, &hi) != 2) {
            lo = 32768;
            hi = 60999;
        }
        std::fclose(f);
    }
    return {lo, hi};
}

bool can_bind(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return false;
    }
    sockaddr_in addr = loopback(port);
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    return ok;
}

}  // namespace

std::uint16_t free_port() {
    // Prefer a port below the ephemeral range: a broker stopped and restarted on the same port
    // must not find it taken by some client's outgoing connection in between (source ports come
    // from the ephemeral range). Random choice keeps parallel test processes apart.
    const auto [lo, hi] = ephemeral_range();
    (void)hi;
    constexpr int k_lowest = 10000;
    if (lo - k_lowest > 1000) {
        static std::mt19937 rng{std::random_device{}()};
        std::uniform_int_distribution<int> pick(k_lowest, lo - 1);
        for (int attempt = 0; attempt < 200; ++attempt) {
            const auto port = static_cast<std::uint16_t>(pick(rng));
            if (can_bind(port)) {
                return port;
            }
        }
    }
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        throw std::system_error(errno, std::generic_category(), "socket");
    }
    sockaddr_in addr = loopback(0);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        const int err = errno;
        ::close(fd);
        throw std::system_error(err, std::generic_category(), "bind 127.0.0.1:0");
    }
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    ::close(fd);
    return ntohs(addr.sin_port);
}

bool port_accepts(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return false;
    }
    sockaddr_in addr = loopback(port);
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    return ok;
}

bool wait_for_port(std::uint16_t port, std::chrono::milliseconds timeout) {
    return poll_until([port] { return port_accepts(port); }, timeout);
}

}  // namespace egw::test
