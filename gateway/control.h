// SPDX-License-Identifier: Apache-2.0
// The control socket ({data_dir}/control.sock): how the CLI talks to the running gateway. A
// client connects, writes one request as a single line of JSON, `{"cmd": "status", ...}`, and
// reads one reply, a single line of JSON, after which the gateway closes the connection. A
// reply that is an error carries `{"error": "..."}`.
//
// Threads. The server runs on the loop thread and so do the handlers: they may read and change
// gateway state directly, and must not block. A handler that needs the worker pool replies
// later through the `respond` callback it is given (which must also be called on the loop).
#pragma once

#include <uv.h>

#include <functional>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

namespace egw {

class control_server {
public:
    using respond_fn = std::function<void(nlohmann::json reply)>;
    // Handles `request` and eventually calls `respond` exactly once, on the loop thread.
    using handler = std::function<void(const nlohmann::json& request, respond_fn respond)>;

    explicit control_server(uv_loop_t* loop) : loop_(loop) {}
    ~control_server();
    control_server(const control_server&) = delete;
    control_server& operator=(const control_server&) = delete;

    // Registers a command; a later registration under the same name replaces the earlier one.
    void on(const std::string& cmd, handler h) { handlers_[cmd] = std::move(h); }
    // A handler that answers at once.
    void on_sync(const std::string& cmd, std::function<nlohmann::json(const nlohmann::json&)> f);

    // Binds and listens; returns 0 or a libuv error code (the gateway runs on without it).
    int start(const std::string& path);
    // Closes the listener and removes the socket file. Connections in flight finish.
    void stop();

private:
    struct connection;
    void dispatch(connection* c, const std::string& line);

    uv_loop_t* loop_;
    uv_pipe_t* listener_ = nullptr;
    std::string path_;
    std::map<std::string, handler> handlers_;
};

// Client side, for the CLI: sends `request` to the socket at `path` and returns the reply.
// Throws std::runtime_error when no gateway answers (the message says why).
nlohmann::json control_request(const std::string& path, const nlohmann::json& request);

}  // namespace egw
