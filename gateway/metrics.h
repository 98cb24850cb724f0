// SPDX-License-Identifier: Apache-2.0
//
// Prometheus metrics: a loopback HTTP/1.1 listener on the gateway's libuv loop that serves
// GET /metrics in the text exposition format 0.0.4, and a probe that measures the loop's lag.
//
// Threads: everything here runs on the loop thread (construction, callbacks, close()).
// What is exported is rendered from the same JSON as `edge-gateway status` (status_json()), so
// a section another part of the gateway adds to the status (plugins, routes) appears in
// /metrics without changes here; see render_prometheus() for the naming rules.
//
// Ownership: metrics_server owns its libuv handles (the listener, one socket and one idle
// timer per client), lag_probe its timer. close() closes them all; the memory goes in the last
// close callback, so the loop must run once more after close() (gateway's destructor does).
#pragma once

#include <uv.h>

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace egw {

// How late the loop runs a timer that was due: a loop that is blocked (a slow callback, a
// synchronous write) runs it late by as long as it was blocked.
struct lag_histogram {
    // Upper bounds in seconds; "+Inf" is count.
    static constexpr std::array<double, 13> bounds{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                   0.25,  0.5,    1,     2.5,  5,     10};
    std::array<uint64_t, bounds.size()> buckets{};  // cumulative, as exported
    uint64_t count = 0;
    double sum = 0;  // seconds
    double max = 0;  // seconds, since start (status only)

    void observe(double seconds);
};

// "127.0.0.1:9883", "localhost:9883" or "[::1]:9883". False if it is not host:port with a port
// in 1..65535.
bool parse_listen(std::string_view text, std::string& host, uint16_t& port);

// The Prometheus text for a status JSON as gateway::status_json() makes it, plus the lag
// histogram (null: none). Naming:
//   - "counters": edge_gateway_<name>_total; a nested object becomes one family with a label
//     (dropped -> reason="...", others -> kind="...");
//   - an object of objects ("sinks", "plugins", "routes", ...): one family per field,
//     edge_gateway_<singular>_<field>{<singular>="<key>"} (sinks -> sink="cloud");
//   - another object ("buffer", "local"): edge_gateway_<section>_<field>;
//   - fields named like counts (sent, acked, reconnects, dropped, errors, ...) are counters
//     with _total; the rest gauges. Units: *_s -> *_seconds, *_ms -> *_seconds (divided),
//     bytes_x -> x_bytes, rate_*_s -> *_per_second. Booleans are 0/1; a string field "state"
//     becomes <...>_state{state="online"} 1; other strings (URIs, errors) are not exported.
std::string render_prometheus(const nlohmann::json& status, const lag_histogram* lag);

// Measures the loop's lag: a one-shot timer re-armed every probe_ms; how much later than due it
// runs is observed into the histogram. On all the time (the status shows the figures too): one
// wake-up every 250 ms next to the 50 ms tick costs nothing measurable.
class lag_probe {
public:
    explicit lag_probe(uv_loop_t* loop);
    ~lag_probe();
    lag_probe(const lag_probe&) = delete;
    lag_probe& operator=(const lag_probe&) = delete;

    void close();  // idempotent; the memory goes in the close callback
    const lag_histogram& histogram() const;

    static constexpr uint64_t probe_ms = 250;

    struct impl;

private:
    impl* impl_;
};

class metrics_server {
public:
    using status_fn = std::function<nlohmann::json()>;

    // Binds `listen` (see parse_listen) on `loop`; each scrape renders status() and `lag` (may
    // be null; must outlive this object). Throws std::runtime_error if the address is malformed
    // or cannot be bound.
    metrics_server(uv_loop_t* loop, const std::string& listen, status_fn status,
                   const lag_histogram* lag);
    ~metrics_server();
    metrics_server(const metrics_server&) = delete;
    metrics_server& operator=(const metrics_server&) = delete;

    // Stops listening and closes every connection. Idempotent.
    void close();

    uint16_t port() const;  // the bound port (useful with port 0)

    // Bounds: a request head larger than this gets 431 and is closed; a client that has not
    // sent a whole request head within idle_timeout is closed; beyond max_clients open
    // connections a new one is closed at once.
    static constexpr size_t max_request_bytes = 8192;
    static constexpr uint64_t idle_timeout_ms = 10'000;
    static constexpr size_t max_clients = 64;

    struct impl;

private:
    impl* impl_;  // freed by the last close callback after close()
};

}  // namespace egw
