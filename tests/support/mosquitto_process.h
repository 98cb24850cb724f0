// SPDX-License-Identifier: Apache-2.0
//
// mosquitto_process: a real Mosquitto broker on 127.0.0.1 in its own temp dir.

#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "support/child_process.h"
#include "support/temp_dir.h"

namespace egw::test {

// A TLS listener in addition to the plain one (the plain listener stays, so test clients can
// watch the broker without certificates).
struct mosquitto_tls_options {
    std::filesystem::path ca_file;
    std::filesystem::path cert_file;
    std::filesystem::path key_file;
    bool require_certificate = true;  // mutual TLS
};

struct mosquitto_options {
    std::string name = "mosquitto";  // used in the temp dir name and diagnostics
    bool persistence = true;         // keep sessions, queued and retained messages across stop()
    std::optional<mosquitto_tls_options> tls;
    // A mosquitto_passwd file: a client that gives a user name must give its password
    // (anonymous clients, such as test subscribers, are still let in).
    std::optional<std::filesystem::path> password_file;
    // set_tcp_nodelay: no Nagle delay on the broker's client sockets (Mosquitto's default is
    // off: a small packet waits for the ACK of the previous one, up to a delayed ACK of 40 ms).
    bool tcp_nodelay = false;
};

// The ports are chosen at construction and kept for the object's life, so a broker can be
// stopped and started again on the SAME port (clients reconnect to the address they know), and
// a test can hand the address to the gateway before the broker runs. The persistence file
// ({dir}/mosquitto.db, written on stop()) survives restarts; kill() loses what was not saved.
class mosquitto_process {
public:
    explicit mosquitto_process(mosquitto_options options = {});
    ~mosquitto_process() = default;

    mosquitto_process(const mosquitto_process&) = delete;
    mosquitto_process& operator=(const mosquitto_process&) = delete;

    // Spawns the broker and waits until its listener(s) accept connections. Throws
    // std::runtime_error (with the log tail) if it does not come up within `timeout`.
    void start(std::chrono::milliseconds timeout = std::chrono::seconds(10));

    // SIGTERM, wait for exit (Mosquitto saves its persistence file), SIGKILL after `timeout`.
    void stop(std::chrono::milliseconds timeout = std::chrono::seconds(10));

    // SIGKILL: a crash, nothing saved.
    void kill();

    void restart() {
        stop();
        start();
    }

    bool running() { return process_.running(); }

    std::uint16_t port() const { return port_; }
    std::uint16_t tls_port() const { return tls_port_; }
    std::string uri() const;      // tcp://127.0.0.1:port
    std::string tls_uri() const;  // ssl://127.0.0.1:tls_port
    const std::filesystem::path& log_file() const { return log_file_; }
    const std::filesystem::path& dir() const { return dir_.path(); }
    const std::string& name() const { return options_.name; }

private:
    mosquitto_options options_;
    temp_dir dir_;
    std::uint16_t port_ = 0;
    std::uint16_t tls_port_ = 0;
    std::filesystem::path conf_file_;
    std::filesystem::path log_file_;
    child_process process_;
};

}  // namespace egw::test
