// SPDX-License-Identifier: Apache-2.0
//
// egw-mosq-bench: the relay of egw-paho-bench (edge broker -> relay -> cloud broker, no buffer),
// written with libmosquitto driven from one thread's poll() loop instead of Paho's client
// threads. Not used by the gateway: it measures what a client without threads and without a
// global mutex, running on an event loop as the gateway's libuv loop could run it, does on the
// same machine, next to Paho's ceilings.
//
//   egw-mosq-bench relay --uri tcp://CLOUD --edge-uri tcp://EDGE [--filter F] [--count N]
//                        [--window W] [--mqtt-version 4|5] [--idle-ms MS]
//
// Uplink publishes are QoS 1 with the same two MQTT 5 user properties as the gateway's sink.
// Like Paho before 1.3.10, libmosquitto acknowledges a QoS 1 message before its callback runs,
// so as an ingest client it would reopen the window the gateway closed (see docs/operations.md).

#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <poll.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>

namespace {

std::int64_t now_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

struct options {
    std::string uri = "tcp://127.0.0.1:1883";
    std::string edge_uri = "tcp://127.0.0.1:1884";
    std::string filter = "devices/#";
    long count = 100000;
    int window = 256;
    int mqtt_version = 5;
    long idle_ms = 5000;
};

[[noreturn]] void die(const char* what) {
    std::fprintf(stderr, "egw-mosq-bench: %s\n", what);
    std::exit(1);
}

options parse(int argc, char** argv) {
    if (argc < 2 || std::string_view(argv[1]) != "relay") die("usage: egw-mosq-bench relay ...");
    options o;
    for (int i = 2; i + 1 < argc; i += 2) {
        const std::string_view k = argv[i];
        const char* v = argv[i + 1];
        if (k == "--uri")
            o.uri = v;
        else if (k == "--edge-uri")
            o.edge_uri = v;
        else if (k == "--filter")
            o.filter = v;
        else if (k == "--count")
            o.count = std::atol(v);
        else if (k == "--window")
            o.window = std::atoi(v);
        else if (k == "--mqtt-version")
            o.mqtt_version = std::atoi(v);
        else if (k == "--idle-ms")
            o.idle_ms = std::atol(v);
        else
            die("unknown option");
    }
    return o;
}

// "tcp://host:port" -> host, port
std::pair<std::string, int> host_port(const std::string& uri) {
    const auto scheme = uri.find("://");
    const std::string rest = scheme == std::string::npos ? uri : uri.substr(scheme + 3);
    const auto colon = rest.rfind(':');
    if (colon == std::string::npos) die("URI without a port");
    return {rest.substr(0, colon), std::atoi(rest.c_str() + colon + 1)};
}

struct relay {
    mosquitto* edge = nullptr;
    mosquitto* cloud = nullptr;
    int version = 5;
    long received = 0, acked = 0, seq = 0;
    int connected = 0, subscribed = 0;
    std::int64_t last_ns = 0;
    std::string topic;
};

mosquitto* client(relay& r, const char* id, const std::string& uri, int version, int window) {
    mosquitto* m = mosquitto_new(id, true, &r);
    if (!m) die("mosquitto_new failed");
    mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION,
                         version == 5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
    mosquitto_int_option(m, MOSQ_OPT_SEND_MAXIMUM, window);
    mosquitto_connect_callback_set(m, [](mosquitto*, void* obj, int rc) {
        if (rc != 0) die("connect refused");
        ++static_cast<relay*>(obj)->connected;
    });
    const auto [host, port] = host_port(uri);
    if (mosquitto_connect(m, host.c_str(), port, 30) != MOSQ_ERR_SUCCESS) die("cannot connect");
    return m;
}

// One round of the event loop: waits for either socket, then reads, writes and keeps alive.
void turn(relay& r, int timeout_ms) {
    mosquitto* ms[2] = {r.edge, r.cloud};
    pollfd fds[2];
    for (int i = 0; i < 2; ++i) {
        fds[i] = {mosquitto_socket(ms[i]), static_cast<short>(POLLIN), 0};
        if (mosquitto_want_write(ms[i])) fds[i].events |= POLLOUT;
    }
    if (poll(fds, 2, timeout_ms) < 0) die("poll failed");
    for (int i = 0; i < 2; ++i) {
        if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
            if (mosquitto_loop_read(ms[i], 1) != MOSQ_ERR_SUCCESS) die("connection lost");
        }
    }
    for (int i = 0; i < 2; ++i) {
        if (mosquitto_want_write(ms[i]) && mosquitto_loop_write(ms[i], 1) != MOSQ_ERR_SUCCESS)
            die("write failed");
        mosquitto_loop_misc(ms[i]);
    }
}

}  // namespace

int main(int argc, char** argv) {
    const options o = parse(argc, argv);
    mosquitto_lib_init();
    relay r;
    r.version = o.mqtt_version;
    r.cloud = client(r, "egw-mosq-bench-up", o.uri, o.mqtt_version, o.window);
    r.edge = client(r, "egw-mosq-bench-in", o.edge_uri, 4, o.window);  // 3.1.1, as ingest
    mosquitto_publish_callback_set(
        r.cloud, [](mosquitto*, void* obj, int) { ++static_cast<relay*>(obj)->acked; });
    mosquitto_message_callback_set(r.edge, [](mosquitto*, void* obj, const mosquitto_message* m) {
        auto& s = *static_cast<relay*>(obj);
        ++s.received;
        s.last_ns = now_ns();
        s.topic.assign("gateways/bench/").append(m->topic);
        mosquitto_property* props = nullptr;
        if (s.version == 5) {
            const std::string seq = std::to_string(++s.seq);
            mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "egw-gateway",
                                               "bench");
            mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "egw-seq",
                                               seq.c_str());
        }
        if (mosquitto_publish_v5(s.cloud, nullptr, s.topic.c_str(), m->payloadlen, m->payload, 1,
                                 false, props) != MOSQ_ERR_SUCCESS) {
            die("publish failed");
        }
        mosquitto_property_free_all(&props);
    });
    mosquitto_subscribe_callback_set(r.edge, [](mosquitto*, void* obj, int, int, const int*) {
        ++static_cast<relay*>(obj)->subscribed;
    });
    while (r.connected < 2) turn(r, 100);
    mosquitto_subscribe(r.edge, nullptr, o.filter.c_str(), 1);
    while (r.subscribed < 1) turn(r, 100);
    std::printf("ready=1\n");
    std::fflush(stdout);

    const std::int64_t idle_ns = std::int64_t{o.idle_ms} * 1'000'000;
    std::int64_t last_activity = now_ns();
    long seen = 0;
    while (r.acked < o.count) {
        turn(r, 100);
        if (r.received + r.acked != seen) {
            seen = r.received + r.acked;
            last_activity = now_ns();
        } else if (now_ns() - last_activity > idle_ns) {
            break;
        }
    }
    std::printf("received=%ld\nsent=%ld\nacked=%ld\n", r.received, r.seq, r.acked);
    mosquitto_disconnect(r.edge);
    mosquitto_disconnect(r.cloud);
    mosquitto_destroy(r.edge);
    mosquitto_destroy(r.cloud);
    mosquitto_lib_cleanup();
    return r.acked >= o.count ? 0 : 1;
}
