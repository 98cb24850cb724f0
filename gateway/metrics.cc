// SPDX-License-Identifier: Apache-2.0

#include "gateway/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <vector>

#include "gateway/log.h"

namespace egw {

void lag_histogram::observe(double seconds) {
    if (seconds < 0) seconds = 0;
    for (size_t i = 0; i < bounds.size(); ++i) {
        if (seconds <= bounds[i]) ++buckets[i];
    }
    ++count;
    sum += seconds;
    max = std::max(max, seconds);
}

bool parse_listen(std::string_view text, std::string& host, uint16_t& port) {
    std::string_view h, p;
    if (!text.empty() && text.front() == '[') {
        auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
            return false;
        h = text.substr(1, close - 1);
        p = text.substr(close + 2);
    } else {
        auto colon = text.rfind(':');
        if (colon == std::string_view::npos) return false;
        h = text.substr(0, colon);
        p = text.substr(colon + 1);
        if (h.find(':') != std::string_view::npos) return false;  // IPv6 needs brackets
    }
    if (h.empty() || p.empty() || p.size() > 5) return false;
    unsigned value = 0;
    for (char c : p) {
        if (c < '0' || c > '9') return false;
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value == 0 || value > 65535) return false;
    host = h == "localhost" ? "127.0.0.1" : std::string(h);
    port = static_cast<uint16_t>(value);
    return true;
}

// --- Rendering ------------------------------------------------------------------------------

namespace {

using nlohmann::json;

struct sample {
    std::string labels;  // {a="b",c="d"} or empty
    double value;
};

struct family {
    std::string type;  // counter, gauge, histogram
    std::string help;
    std::vector<sample> samples;
    std::vector<std::string> raw_lines;  // histogram lines, already formatted
};

// Families in the order first seen, so the output is stable and grouped as the format requires
// (all samples of one family together, one TYPE line each).
class exposition {
public:
    family& get(const std::string& name, const std::string& type, const std::string& help) {
        auto it = index_.find(name);
        if (it != index_.end()) return families_[it->second].second;
        index_.emplace(name, families_.size());
        families_.emplace_back(name, family{type, help, {}, {}});
        return families_.back().second;
    }

    std::string text() const {
        std::string out;
        out.reserve(4096);
        char num[64];
        for (const auto& [name, f] : families_) {
            out += "# HELP " + name + " " + f.help + "\n";
            out += "# TYPE " + name + " " + f.type + "\n";
            for (const auto& s : f.samples) {
                format_value(s.value, num, sizeof num);
                out += name + s.labels + " " + num + "\n";
            }
            for (const auto& l : f.raw_lines) out += l + "\n";
        }
        return out;
    }

    static void format_value(double v, char* buf, size_t n) {
        if (std::isnan(v)) {
            std::snprintf(buf, n, "NaN");
        } else if (std::isinf(v)) {
            std::snprintf(buf, n, v > 0 ? "+Inf" : "-Inf");
        } else if (v == std::floor(v) && std::fabs(v) < 1e15) {
            std::snprintf(buf, n, "%.0f", v);
        } else {
            std::snprintf(buf, n, "%.9g", v);
        }
    }

private:
    std::vector<std::pair<std::string, family>> families_;
    std::map<std::string, size_t> index_;
};

std::string sanitize_name(std::string_view s) {
    std::string out;
    for (char c : s) {
        const bool ok =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
        out += ok ? c : '_';
    }
    if (out.empty() || (out[0] >= '0' && out[0] <= '9')) out.insert(out.begin(), '_');
    return out;
}

std::string escape_label(std::string_view s) {
    std::string out;
    for (char c : s) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '"') {
            out += "\\\"";
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

using label_list = std::vector<std::pair<std::string, std::string>>;

std::string format_labels(const label_list& labels) {
    if (labels.empty()) return {};
    std::string out = "{";
    for (size_t i = 0; i < labels.size(); ++i) {
        if (i) out += ',';
        out += labels[i].first + "=\"" + escape_label(labels[i].second) + "\"";
    }
    return out + "}";
}

// Words that name a count of events: such fields only grow, so they are counters.
bool is_count(std::string_view field) {
    static const std::set<std::string_view> words{
        "received",   "buffered",  "sent",      "acked",      "rejected", "writes",
        "reconnects", "dropped",   "errors",    "processed",  "inputs",   "outputs",
        "failures",   "failed",    "crashes",   "timeouts",   "restarts", "calls",
        "retries",    "published", "delivered", "letters",    "uploads",  "requests",
        "emitted",    "consumed",  "skipped",   "exceptions", "alerts",   "total"};
    auto us = field.rfind('_');
    return words.count(field) ||
           (us != std::string_view::npos && words.count(field.substr(us + 1)));
}

struct metric_name {
    std::string name;  // without the prefix, without _total
    double scale = 1;
};

// Field name to a Prometheus name in base units.
metric_name unit_name(std::string_view field) {
    auto ends = [&](std::string_view suffix) {
        return field.size() > suffix.size() && field.substr(field.size() - suffix.size()) == suffix;
    };
    std::string f = sanitize_name(field);
    if (f.rfind("rate_", 0) == 0 && ends("_s")) {
        std::string what = f.substr(5, f.size() - 7);
        if (what == "msg") what = "messages";
        return {what + "_per_second", 1};
    }
    if (ends("_ms")) return {f.substr(0, f.size() - 3) + "_seconds", 0.001};
    if (ends("_s")) return {f.substr(0, f.size() - 2) + "_seconds", 1};
    if (f.rfind("bytes_", 0) == 0) return {f.substr(6) + "_bytes", 1};
    return {f, 1};
}

struct renderer {
    exposition& out;

    // One status field (any JSON value) as metrics named prefix_<field>.
    void field(const std::string& prefix, const std::string& key, const json& v,
               const label_list& labels, const std::string& where) {
        if (v.is_number() || v.is_boolean()) {
            const bool count = is_count(key);
            metric_name m = unit_name(key);
            std::string name = prefix + "_" + m.name + (count ? "_total" : "");
            double value = v.is_boolean() ? (v.get<bool>() ? 1.0 : 0.0) : v.get<double>() * m.scale;
            out.get(name, count ? "counter" : "gauge", "Status field " + where + key + ".")
                .samples.push_back({format_labels(labels), value});
        } else if (v.is_string() && key == "state") {
            label_list l = labels;
            l.emplace_back("state", v.get<std::string>());
            out.get(prefix + "_state", "gauge",
                    "Current state (the sample with value 1), status field " + where + key + ".")
                .samples.push_back({format_labels(l), 1});
        } else if (v.is_object()) {
            // A breakdown: one family with the keys as a label (dropped -> reason).
            const bool all_numbers =
                std::all_of(v.begin(), v.end(), [](const json& e) { return e.is_number(); });
            if (all_numbers && !v.empty()) {
                const std::string label = key == "dropped" ? "reason" : "kind";
                const bool count = is_count(key);
                metric_name m = unit_name(key);
                std::string name = prefix + "_" + m.name + (count ? "_total" : "");
                family& f = out.get(name, count ? "counter" : "gauge",
                                    "Status field " + where + key + ", by " + label + ".");
                for (const auto& [k, n] : v.items()) {
                    label_list l = labels;
                    l.emplace_back(label, k);
                    f.samples.push_back({format_labels(l), n.get<double>() * m.scale});
                }
            } else {
                for (const auto& [k, n] : v.items())
                    field(prefix + "_" + sanitize_name(key), k, n, labels, where + key + ".");
            }
        }
        // Other strings (URIs, error texts, paths), arrays and nulls are not metrics.
    }
};

std::string singular(const std::string& s) {
    if (s.size() > 1 && s.back() == 's') return s.substr(0, s.size() - 1);
    return s;
}

}  // namespace

std::string render_prometheus(const json& status, const lag_histogram* lag) {
    exposition out;
    renderer r{out};
    const std::string p = "edge_gateway";

    label_list info;
    if (status.contains("gateway_id") && status["gateway_id"].is_string())
        info.emplace_back("gateway_id", status["gateway_id"].get<std::string>());
    if (status.contains("version") && status["version"].is_string())
        info.emplace_back("version", status["version"].get<std::string>());
    out.get(p + "_info", "gauge", "The gateway's identity and version (always 1).")
        .samples.push_back({format_labels(info), 1});

    for (const auto& [key, v] : status.items()) {
        if (key == "gateway_id" || key == "version" || key == "pid") continue;
        if (key == "counters" && v.is_object()) {
            for (const auto& [k, n] : v.items()) r.field(p, k, n, {}, "counters.");
        } else if (v.is_object() && !v.empty() &&
                   std::all_of(v.begin(), v.end(), [](const json& e) { return e.is_object(); })) {
            const std::string one = sanitize_name(singular(key));
            for (const auto& [name, entry] : v.items()) {
                for (const auto& [k, n] : entry.items())
                    r.field(p + "_" + one, k, n, {{one, name}}, key + ".*.");
            }
        } else if (v.is_object()) {
            for (const auto& [k, n] : v.items())
                r.field(p + "_" + sanitize_name(key), k, n, {}, key + ".");
        } else {
            r.field(p, key, v, {}, "");
        }
    }

    if (lag != nullptr) {
        family& f = out.get(p + "_loop_lag_seconds", "histogram",
                            "How late the event loop ran a timer that was due (loop blocked).");
        char num[64];
        for (size_t i = 0; i < lag_histogram::bounds.size(); ++i) {
            exposition::format_value(lag_histogram::bounds[i], num, sizeof num);
            std::string le = num;
            if (lag_histogram::bounds[i] != std::floor(lag_histogram::bounds[i])) {
                std::snprintf(num, sizeof num, "%g", lag_histogram::bounds[i]);
                le = num;
            }
            f.raw_lines.push_back(p + "_loop_lag_seconds_bucket{le=\"" + le + "\"} " +
                                  std::to_string(lag->buckets[i]));
        }
        f.raw_lines.push_back(p + "_loop_lag_seconds_bucket{le=\"+Inf\"} " +
                              std::to_string(lag->count));
        exposition::format_value(lag->sum, num, sizeof num);
        f.raw_lines.push_back(p + "_loop_lag_seconds_sum " + std::string(num));
        f.raw_lines.push_back(p + "_loop_lag_seconds_count " + std::to_string(lag->count));
    }
    return out.text();
}

// --- The HTTP server -------------------------------------------------------------------------

namespace {

struct client;

}  // namespace

struct metrics_server::impl {
    uv_loop_t* loop = nullptr;
    status_fn status;
    uv_tcp_t listener{};
    const lag_histogram* lag = nullptr;
    std::set<client*> clients;
    uint16_t port = 0;
    int open_handles = 0;  // handles not yet through their close callback
    bool closing = false;

    void handle_closed() {
        if (--open_handles == 0 && closing) delete this;
    }
};

namespace {

struct client {
    metrics_server::impl* server = nullptr;
    uv_tcp_t tcp{};
    uv_timer_t idle{};
    uv_write_t write_req{};
    std::string request;
    std::string response;
    bool responded = false;
    bool closing = false;
    int open_handles = 0;
};

void client_handle_closed(uv_handle_t* h) {
    auto* c = static_cast<client*>(h->data);
    metrics_server::impl* s = c->server;
    if (--c->open_handles == 0) delete c;
    s->handle_closed();
}

void close_client(client* c) {
    if (c->closing) return;
    c->closing = true;
    c->server->clients.erase(c);
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), client_handle_closed);
    uv_close(reinterpret_cast<uv_handle_t*>(&c->idle), client_handle_closed);
}

void respond(client* c, int code, const char* reason, const std::string& content_type,
             std::string body) {
    c->responded = true;
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&c->tcp));
    c->response = "HTTP/1.1 " + std::to_string(code) + " " + reason +
                  "\r\nContent-Type: " + content_type +
                  "\r\nContent-Length: " + std::to_string(body.size()) +
                  "\r\nConnection: close\r\n\r\n" + body;
    uv_buf_t buf = uv_buf_init(c->response.data(), static_cast<unsigned>(c->response.size()));
    c->write_req.data = c;
    int rc = uv_write(&c->write_req, reinterpret_cast<uv_stream_t*>(&c->tcp), &buf, 1,
                      [](uv_write_t* req, int) { close_client(static_cast<client*>(req->data)); });
    if (rc != 0) close_client(c);
}

// The request line of a complete head: "GET /metrics HTTP/1.1". Headers are read past: the
// response does not depend on them.
void on_request(client* c) noexcept {
    const std::string& r = c->request;
    const auto line_end = r.find_first_of("\r\n");
    const std::string line = r.substr(0, line_end);
    const auto sp1 = line.find(' ');
    const auto sp2 = sp1 == std::string::npos ? std::string::npos : line.find(' ', sp1 + 1);
    if (sp1 == std::string::npos || sp2 == std::string::npos ||
        line.compare(sp2 + 1, 5, "HTTP/") != 0) {
        respond(c, 400, "Bad Request", "text/plain; charset=utf-8", "bad request\n");
        return;
    }
    const std::string method = line.substr(0, sp1);
    std::string target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    target = target.substr(0, target.find('?'));
    if (method != "GET" || target != "/metrics") {
        respond(c, 404, "Not Found", "text/plain; charset=utf-8", "not found: GET /metrics\n");
        return;
    }
    try {
        std::string body = render_prometheus(c->server->status(), c->server->lag);
        respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", std::move(body));
    } catch (const std::exception& e) {
        log::get("metrics")->error("rendering /metrics: {}", e.what());
        respond(c, 500, "Internal Server Error", "text/plain; charset=utf-8", "internal error\n");
    }
}

void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) noexcept {
    auto* c = static_cast<client*>(stream->data);
    std::unique_ptr<char[]> owned(buf->base);
    if (nread < 0) {
        close_client(c);
        return;
    }
    if (c->responded || nread == 0) return;
    c->request.append(buf->base, static_cast<size_t>(nread));
    if (c->request.find("\r\n\r\n") != std::string::npos ||
        c->request.find("\n\n") != std::string::npos) {
        on_request(c);
    } else if (c->request.size() > metrics_server::max_request_bytes) {
        respond(c, 431, "Request Header Fields Too Large", "text/plain; charset=utf-8",
                "request too large\n");
    }
}

void on_connection(uv_stream_t* server, int status) noexcept {
    auto* s = static_cast<metrics_server::impl*>(server->data);
    if (status < 0 || s->closing) return;
    auto* c = new client;
    c->server = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->idle);
    c->tcp.data = c->idle.data = c;
    c->open_handles = 2;
    s->open_handles += 2;
    s->clients.insert(c);
    if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0 ||
        s->clients.size() > metrics_server::max_clients) {
        close_client(c);
        return;
    }
    uv_timer_start(
        &c->idle, [](uv_timer_t* t) { close_client(static_cast<client*>(t->data)); },
        metrics_server::idle_timeout_ms, 0);
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&c->tcp),
        [](uv_handle_t*, size_t, uv_buf_t* b) {
            // Small reads: a request head is a few hundred bytes.
            *b = uv_buf_init(new (std::nothrow) char[2048], 2048);
            if (b->base == nullptr) b->len = 0;
        },
        on_read);
}

}  // namespace

metrics_server::metrics_server(uv_loop_t* loop, const std::string& listen, status_fn status,
                               const lag_histogram* lag)
    : impl_(new impl) {
    impl_->loop = loop;
    impl_->status = std::move(status);
    impl_->lag = lag;
    std::string host;
    uint16_t port = 0;
    if (!parse_listen(listen, host, port)) {
        delete impl_;
        throw std::runtime_error("metrics.listen: '" + listen + "' is not host:port");
    }
    sockaddr_storage addr{};
    int rc = host.find(':') != std::string::npos
                 ? uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(&addr))
                 : uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(&addr));
    if (rc != 0) {
        delete impl_;
        throw std::runtime_error("metrics.listen: '" + host + "' is not an IP address");
    }
    uv_tcp_init(loop, &impl_->listener);
    impl_->listener.data = impl_;
    impl_->open_handles = 1;
    rc = uv_tcp_bind(&impl_->listener, reinterpret_cast<const sockaddr*>(&addr), 0);
    if (rc == 0)
        rc = uv_listen(reinterpret_cast<uv_stream_t*>(&impl_->listener), 64, on_connection);
    if (rc != 0) {
        close();
        throw std::runtime_error("metrics.listen " + listen + ": " + uv_strerror(rc));
    }
    sockaddr_storage bound{};
    int len = sizeof bound;
    uv_tcp_getsockname(&impl_->listener, reinterpret_cast<sockaddr*>(&bound), &len);
    impl_->port =
        ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                          : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
}

metrics_server::~metrics_server() { close(); }

void metrics_server::close() {
    if (impl_ == nullptr) return;
    impl* s = impl_;
    impl_ = nullptr;
    s->closing = true;
    auto closed = [](uv_handle_t* h) { static_cast<impl*>(h->data)->handle_closed(); };
    uv_close(reinterpret_cast<uv_handle_t*>(&s->listener), closed);
    for (client* c : std::vector<client*>(s->clients.begin(), s->clients.end())) close_client(c);
}

uint16_t metrics_server::port() const { return impl_ ? impl_->port : 0; }

// --- The lag probe ---------------------------------------------------------------------------

struct lag_probe::impl {
    uv_loop_t* loop = nullptr;
    uv_timer_t timer{};
    uint64_t expected_ns = 0;
    lag_histogram histogram;

    void arm() {
        // uv_timer_start counts from the loop's cached time; refresh it so "due" is now + probe.
        uv_update_time(loop);
        expected_ns = uv_hrtime() + probe_ms * 1'000'000;
        uv_timer_start(
            &timer,
            [](uv_timer_t* t) {
                auto* self = static_cast<impl*>(t->data);
                const uint64_t now = uv_hrtime();
                // libuv rounds timers to milliseconds: below 1 ms late is the clock, not the
                // loop, and lands in the first bucket.
                self->histogram.observe(now > self->expected_ns
                                            ? static_cast<double>(now - self->expected_ns) / 1e9
                                            : 0.0);
                self->arm();
            },
            probe_ms, 0);
    }
};

lag_probe::lag_probe(uv_loop_t* loop) : impl_(new impl) {
    impl_->loop = loop;
    uv_timer_init(loop, &impl_->timer);
    impl_->timer.data = impl_;
    impl_->arm();
}

lag_probe::~lag_probe() { close(); }

void lag_probe::close() {
    if (impl_ == nullptr) return;
    uv_timer_stop(&impl_->timer);
    uv_close(reinterpret_cast<uv_handle_t*>(&impl_->timer),
             [](uv_handle_t* h) { delete static_cast<impl*>(h->data); });
    impl_ = nullptr;
}

const lag_histogram& lag_probe::histogram() const {
    static const lag_histogram none;
    return impl_ ? impl_->histogram : none;
}

}  // namespace egw
