// SPDX-License-Identifier: Apache-2.0
#include "gateway/control.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "gateway/log.h"

namespace egw {
namespace {

// A request is a line of JSON; a dead-letter replay or a task file is far below this.
constexpr size_t max_request_bytes = 4 << 20;

}  // namespace

// One accepted client. Freed in the close callback of its pipe (libuv's rule for handles).
struct control_server::connection {
    uv_pipe_t pipe{};
    control_server* server = nullptr;
    std::string in;
    std::string out;
    uv_write_t write{};
    bool answered = false;
    bool closing = false;
    // Cleared when the server goes away first, so a late `respond` does nothing.
    std::shared_ptr<bool> alive = std::make_shared<bool>(true);

    void close() {
        if (closing) return;
        closing = true;
        *alive = false;
        uv_close(reinterpret_cast<uv_handle_t*>(&pipe),
                 [](uv_handle_t* h) { delete static_cast<connection*>(h->data); });
    }

    void reply(const nlohmann::json& j) {
        if (answered || closing) return;
        answered = true;
        uv_read_stop(reinterpret_cast<uv_stream_t*>(&pipe));
        out = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
        uv_buf_t buf = uv_buf_init(out.data(), static_cast<unsigned>(out.size()));
        write.data = this;
        int rc = uv_write(&write, reinterpret_cast<uv_stream_t*>(&pipe), &buf, 1,
                          [](uv_write_t* w, int) { static_cast<connection*>(w->data)->close(); });
        if (rc != 0) close();
    }
};

control_server::~control_server() { stop(); }

void control_server::on_sync(const std::string& cmd,
                             std::function<nlohmann::json(const nlohmann::json&)> f) {
    on(cmd, [f = std::move(f)](const nlohmann::json& req, respond_fn respond) { respond(f(req)); });
}

int control_server::start(const std::string& path) {
    path_ = path;
    ::unlink(path.c_str());  // a stale socket from a killed predecessor
    listener_ = new uv_pipe_t;
    uv_pipe_init(loop_, listener_, 0);
    listener_->data = this;
    int rc = uv_pipe_bind(listener_, path.c_str());
    if (rc == 0) {
        rc = uv_listen(reinterpret_cast<uv_stream_t*>(listener_), 16,
                       [](uv_stream_t* server, int status) {
                           if (status < 0) return;
                           auto* self = static_cast<control_server*>(server->data);
                           auto* c = new connection;
                           c->server = self;
                           c->pipe.data = c;
                           uv_pipe_init(server->loop, &c->pipe, 0);
                           if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->pipe)) != 0) {
                               c->close();
                               return;
                           }
                           uv_read_start(
                               reinterpret_cast<uv_stream_t*>(&c->pipe),
                               [](uv_handle_t*, size_t suggested, uv_buf_t* buf) {
                                   buf->base = new char[suggested];
                                   buf->len = suggested;
                               },
                               [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
                                   std::unique_ptr<char[]> owned(buf->base);
                                   auto* conn = static_cast<connection*>(s->data);
                                   if (n < 0) {
                                       // EOF before a newline: take what came as the request (an
                                       // old client that only half-closes), else give up.
                                       if (n == UV_EOF && !conn->in.empty()) {
                                           conn->server->dispatch(conn, conn->in);
                                       } else {
                                           conn->close();
                                       }
                                       return;
                                   }
                                   conn->in.append(buf->base, static_cast<size_t>(n));
                                   if (auto nl = conn->in.find('\n'); nl != std::string::npos) {
                                       conn->server->dispatch(conn, conn->in.substr(0, nl));
                                   } else if (conn->in.size() > max_request_bytes) {
                                       conn->reply({{"error", "request too large"}});
                                   }
                               });
                       });
    }
    if (rc != 0) {
        uv_close(reinterpret_cast<uv_handle_t*>(listener_),
                 [](uv_handle_t* h) { delete reinterpret_cast<uv_pipe_t*>(h); });
        listener_ = nullptr;
        return rc;
    }
    ::chmod(path.c_str(), 0660);
    return 0;
}

void control_server::stop() {
    if (!listener_) return;
    uv_close(reinterpret_cast<uv_handle_t*>(listener_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_pipe_t*>(h); });
    listener_ = nullptr;
    ::unlink(path_.c_str());
}

void control_server::dispatch(connection* c, const std::string& line) {
    if (c->answered) return;
    nlohmann::json req;
    try {
        req = nlohmann::json::parse(line);
    } catch (const std::exception& e) {
        c->reply({{"error", std::string("request is not JSON: ") + e.what()}});
        return;
    }
    if (!req.is_object() || !req.contains("cmd") || !req["cmd"].is_string()) {
        c->reply({{"error", "request needs a \"cmd\" string"}});
        return;
    }
    const std::string cmd = req["cmd"].get<std::string>();
    auto it = handlers_.find(cmd);
    if (it == handlers_.end()) {
        c->reply({{"error", "unknown command '" + cmd + "'"}});
        return;
    }
    std::weak_ptr<bool> alive = c->alive;
    try {
        it->second(req, [c, alive](nlohmann::json reply) {
            if (auto a = alive.lock(); a && *a) c->reply(reply);
        });
    } catch (const std::exception& e) {
        log::get("gateway")->error("control command {}: {}", cmd, e.what());
        if (!c->answered) c->reply({{"error", e.what()}});
    }
}

nlohmann::json control_request(const std::string& path, const nlohmann::json& request) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error(std::strerror(errno));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof(addr.sun_path)) {
        ::close(fd);
        throw std::runtime_error("socket path too long");
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        std::string why = std::strerror(errno);
        ::close(fd);
        throw std::runtime_error(why);
    }
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    const std::string line = request.dump() + "\n";
    for (size_t off = 0; off < line.size();) {
        ssize_t n = ::write(fd, line.data() + off, line.size() - off);
        if (n < 0) {
            if (errno == EINTR) continue;
            std::string why = std::strerror(errno);
            ::close(fd);
            throw std::runtime_error(why);
        }
        off += static_cast<size_t>(n);
    }
    std::string out;
    char buf[8192];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
    const int read_errno = errno;
    ::close(fd);
    if (n < 0) throw std::runtime_error(std::strerror(read_errno));
    if (out.empty()) throw std::runtime_error("empty reply");
    try {
        return nlohmann::json::parse(out);
    } catch (const std::exception& e) {
        throw std::runtime_error(std::string("unexpected reply: ") + e.what());
    }
}

}  // namespace egw
