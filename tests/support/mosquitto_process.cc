// SPDX-License-Identifier: Apache-2.0

#include "support/mosquitto_process.h"

#include <signal.h>

#include <sstream>
#include <stdexcept>

#include "support/net.h"

namespace egw::test {

namespace {

constexpr const char* k_mosquitto_bin = "/usr/sbin/mosquitto";

}  // namespace

mosquitto_process::mosquitto_process(mosquitto_options options)
    : options_(std::move(options)), dir_("egw-" + options_.name) {
    port_ = free_port();
    if (options_.tls) {
        do {
            tls_port_ = free_port();
        } while (tls_port_ == port_);
    }
    conf_file_ = dir_ / "mosquitto.conf";
    log_file_ = dir_ / "mosquitto.log";

    std::ostringstream conf;
    // Running as root, Mosquitto would switch to the `mosquitto` user and then fail to write
    // its persistence file into our 0700 temp dir.
    conf << "user root\n"
         << "per_listener_settings false\n"
         << "allow_anonymous true\n"
         // 0 = no limit: the durability contract relies on the broker queueing everything
         // for an offline persistent session.
         << "max_queued_messages 0\n"
         << "max_inflight_messages 0\n"
         << "log_dest stderr\n"
         << "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
         << "log_timestamp_format %H:%M:%S\n"
         << "connection_messages true\n";
    if (options_.persistence) {
        conf << "persistence true\n"
             << "persistence_location " << dir_.path().string() << "/\n"
             << "persistence_file mosquitto.db\n"
             << "autosave_interval 60\n";
    } else {
        conf << "persistence false\n";
    }
    if (options_.tcp_nodelay) {
        conf << "set_tcp_nodelay true\n";
    }
    if (options_.password_file) {
        conf << "password_file " << options_.password_file->string() << "\n";
    }
    conf << "listener " << port_ << " 127.0.0.1\n";
    if (options_.tls) {
        conf << "listener " << tls_port_ << " 127.0.0.1\n"
             << "cafile " << options_.tls->ca_file.string() << "\n"
             << "certfile " << options_.tls->cert_file.string() << "\n"
             << "keyfile " << options_.tls->key_file.string() << "\n"
             << "require_certificate " << (options_.tls->require_certificate ? "true" : "false")
             << "\n";
    }
    write_file(conf_file_, conf.str());
}

void mosquitto_process::start(std::chrono::milliseconds timeout) {
    if (process_.running()) {
        return;
    }
    process_ =
        child_process::spawn({k_mosquitto_bin, "-c", conf_file_.string()}, log_file_, log_file_);
    const bool up = poll_until(
        [this] {
            return !process_.running() ||
                   (port_accepts(port_) && (tls_port_ == 0 || port_accepts(tls_port_)));
        },
        timeout);
    if (!up || !process_.running()) {
        process_.kill_and_reap();
        throw std::runtime_error(options_.name + " did not start on port " + std::to_string(port_) +
                                 "; log:\n" + tail_file(log_file_, 20));
    }
}

void mosquitto_process::stop(std::chrono::milliseconds timeout) {
    if (!process_.running()) {
        return;
    }
    process_.send_signal(SIGTERM);
    if (!process_.wait_for_exit(timeout)) {
        process_.kill_and_reap();
    }
}

void mosquitto_process::kill() { process_.kill_and_reap(); }

std::string mosquitto_process::uri() const { return "tcp://127.0.0.1:" + std::to_string(port_); }

std::string mosquitto_process::tls_uri() const {
    return "ssl://127.0.0.1:" + std::to_string(tls_port_);
}

}  // namespace egw::test
