// SPDX-License-Identifier: Apache-2.0
//
// egw-paho-bench: what the Paho C client itself can do on this machine, with nothing of the
// gateway around it. The gateway's uplink and ingest are Paho (the project's chosen client), so
// these are the ceilings its figures are measured against:
//
//   egw-paho-bench publish [options]  publish N messages as fast as a window of W unacknowledged
//                                     QoS 1 publishes allows (the uplink's drain without a buffer)
//   egw-paho-bench relay [options]    subscribe to the edge broker and republish every message to
//                                     the cloud broker through a forwarding thread, with the same
//                                     window (the gateway's data path without its buffer)
//
// Both use the MQTTAsync C API directly (the gateway uses the C++ wrapper over it), MQTT 5 with
// the same two user properties per publish as the gateway's sink (`egw-gateway`, `egw-seq`), or
// MQTT 3.1.1 with --mqtt-version 4. Payloads are the load generator's (see loadgen.cc), so
// `egw-loadgen consume` checks what arrives. Results are `key=value` lines on stdout.

#include <MQTTAsync.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

std::int64_t now_ns() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

struct options {
    std::string mode;
    std::string uri = "tcp://127.0.0.1:1883";       // publish: cloud; relay: cloud
    std::string edge_uri = "tcp://127.0.0.1:1884";  // relay: where the devices publish
    std::string filter = "devices/#";               // relay
    long count = 100000;
    int size = 100;
    int devices = 100;
    int window = 256;
    int mqtt_version = 5;
    long idle_ms = 5000;  // relay: stop this long after the last message
};

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr,
                 "egw-paho-bench: %s\n"
                 "usage: egw-paho-bench publish|relay [--uri U] [--edge-uri U] [--filter F]\n"
                 "       [--count N] [--size B] [--devices D] [--window W] [--mqtt-version 4|5]\n"
                 "       [--idle-ms MS]\n",
                 why);
    std::exit(2);
}

options parse(int argc, char** argv) {
    if (argc < 2) usage("no mode");
    options o;
    o.mode = argv[1];
    if (o.mode != "publish" && o.mode != "relay") usage("unknown mode");
    for (int i = 2; i < argc; ++i) {
        std::string_view k = argv[i];
        if (i + 1 >= argc) usage("option without a value");
        const char* v = argv[++i];
        if (k == "--uri")
            o.uri = v;
        else if (k == "--edge-uri")
            o.edge_uri = v;
        else if (k == "--filter")
            o.filter = v;
        else if (k == "--count")
            o.count = std::atol(v);
        else if (k == "--size")
            o.size = std::atoi(v);
        else if (k == "--devices")
            o.devices = std::atoi(v);
        else if (k == "--window")
            o.window = std::atoi(v);
        else if (k == "--mqtt-version")
            o.mqtt_version = std::atoi(v);
        else if (k == "--idle-ms")
            o.idle_ms = std::atol(v);
        else
            usage("unknown option");
    }
    if (o.count <= 0 || o.window <= 0 || o.devices <= 0) usage("bad number");
    if (o.mqtt_version != 4 && o.mqtt_version != 5) usage("--mqtt-version is 4 or 5");
    return o;
}

// The load generator's payload: {"d":<device>,"c":<counter>,"t":<ns>,"p":"xxx"}, padded.
std::string payload(int size, int device, long counter, std::int64_t t) {
    std::string p = "{\"d\":" + std::to_string(device) + ",\"c\":" + std::to_string(counter) +
                    ",\"t\":" + std::to_string(t) + ",\"p\":\"";
    if (p.size() + 2 < static_cast<size_t>(size)) p.append(size - p.size() - 2, 'x');
    p += "\"}";
    return p;
}

// One Paho client with the connect boilerplate; blocks until connected or exits.
class client {
public:
    client(const std::string& uri, const std::string& id, int version, int window) {
        MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer5;
        co.MQTTVersion = version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
        co.sendWhileDisconnected = 0;
        co.maxBufferedMessages = 1'000'000;  // the relay queues in Paho beyond the window
        if (MQTTAsync_createWithOptions(&h_, uri.c_str(), id.c_str(), MQTTCLIENT_PERSISTENCE_NONE,
                                        nullptr, &co) != MQTTASYNC_SUCCESS) {
            std::fprintf(stderr, "cannot create a client for %s\n", uri.c_str());
            std::exit(1);
        }
        version_ = version;
        window_ = window;
    }
    ~client() {
        MQTTAsync_disconnect(h_, nullptr);
        MQTTAsync_destroy(&h_);
    }

    void set_arrived(MQTTAsync_messageArrived* fn, void* ctx) {
        MQTTAsync_setCallbacks(h_, ctx, nullptr, fn, nullptr);
    }

    void connect() {
        MQTTAsync_connectOptions co = version_ == 5 ? initializer5() : initializer4();
        co.keepAliveInterval = 30;
        co.maxInflight = window_;
        co.context = this;
        if (version_ == 5) {
            co.cleanstart = 1;
            co.onSuccess5 = [](void* c, MQTTAsync_successData5*) {
                static_cast<client*>(c)->up(0);
            };
            co.onFailure5 = [](void* c, MQTTAsync_failureData5*) {
                static_cast<client*>(c)->up(1);
            };
        } else {
            co.cleansession = 1;
            co.onSuccess = [](void* c, MQTTAsync_successData*) { static_cast<client*>(c)->up(0); };
            co.onFailure = [](void* c, MQTTAsync_failureData*) { static_cast<client*>(c)->up(1); };
        }
        if (MQTTAsync_connect(h_, &co) != MQTTASYNC_SUCCESS) {
            std::fprintf(stderr, "connect failed\n");
            std::exit(1);
        }
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return state_ != 0; });
        if (state_ != 1) {
            std::fprintf(stderr, "cannot connect\n");
            std::exit(1);
        }
    }

    void subscribe(const std::string& filter) {
        MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
        ro.context = this;
        if (version_ == 5) {
            ro.onSuccess5 = [](void* c, MQTTAsync_successData5*) {
                static_cast<client*>(c)->up(0);
            };
        } else {
            ro.onSuccess = [](void* c, MQTTAsync_successData*) { static_cast<client*>(c)->up(0); };
        }
        state_ = 0;
        if (MQTTAsync_subscribe(h_, filter.c_str(), 1, &ro) != MQTTASYNC_SUCCESS) {
            std::fprintf(stderr, "subscribe failed\n");
            std::exit(1);
        }
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return state_ != 0; });
    }

    // Publishes one QoS 1 message the way the gateway's sink does; `done` runs on Paho's
    // receive thread when the PUBACK arrives.
    int publish(const char* topic, const void* data, int len, long seq, MQTTAsync_onSuccess5* done5,
                MQTTAsync_onSuccess* done, void* ctx) {
        MQTTAsync_message m = MQTTAsync_message_initializer;
        m.payload = const_cast<void*>(data);
        m.payloadlen = len;
        m.qos = 1;
        MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
        ro.context = ctx;
        MQTTProperties props = MQTTProperties_initializer;
        if (version_ == 5) {
            const std::string seq_text = std::to_string(seq);
            add_user_property(props, "egw-gateway", "bench");
            add_user_property(props, "egw-seq", seq_text);
            m.properties = props;
            ro.onSuccess5 = done5;
        } else {
            ro.onSuccess = done;
        }
        int rc = MQTTAsync_sendMessage(h_, topic, &m, &ro);
        MQTTProperties_free(&props);
        return rc;
    }

private:
    static MQTTAsync_connectOptions initializer5() {
        MQTTAsync_connectOptions o = MQTTAsync_connectOptions_initializer5;
        return o;
    }
    static MQTTAsync_connectOptions initializer4() {
        MQTTAsync_connectOptions o = MQTTAsync_connectOptions_initializer;
        return o;
    }
    static void add_user_property(MQTTProperties& props, const char* key, const std::string& v) {
        MQTTProperty p{};
        p.identifier = MQTTPROPERTY_CODE_USER_PROPERTY;
        p.value.data.data = const_cast<char*>(key);
        p.value.data.len = static_cast<int>(std::strlen(key));
        p.value.value.data = const_cast<char*>(v.c_str());
        p.value.value.len = static_cast<int>(v.size());
        MQTTProperties_add(&props, &p);  // copies
    }
    void up(int failed) {
        std::lock_guard lock(mu_);
        state_ = failed ? 2 : 1;
        cv_.notify_all();
    }

    MQTTAsync h_ = nullptr;
    int version_ = 5;
    int window_ = 256;
    std::mutex mu_;
    std::condition_variable cv_;
    int state_ = 0;  // 0 waiting, 1 done, 2 failed
};

// --- publish: a publisher thread refills the window whenever half of it was acknowledged,
// which is how the gateway's sink batches (acks collected, then the window topped up).
struct publish_state {
    std::atomic<long> acked{0};
    std::atomic<long> inflight{0};
    long window = 0;
    std::mutex mu;
    std::condition_variable cv;
    bool waiting = false;

    void on_ack() {
        acked.fetch_add(1, std::memory_order_relaxed);
        if (inflight.fetch_sub(1, std::memory_order_acq_rel) - 1 <= window / 2) {
            std::lock_guard lock(mu);
            if (waiting) cv.notify_one();
        }
    }
};

int run_publish(const options& o) {
    client c(o.uri, "egw-paho-bench-pub", o.mqtt_version, o.window);
    c.connect();
    publish_state st;
    st.window = o.window;
    auto done5 = [](void* ctx, MQTTAsync_successData5*) {
        static_cast<publish_state*>(ctx)->on_ack();
    };
    auto done = [](void* ctx, MQTTAsync_successData*) {
        static_cast<publish_state*>(ctx)->on_ack();
    };
    std::vector<long> counters(o.devices, 0);
    const std::int64_t start = now_ns();
    for (long i = 0; i < o.count; ++i) {
        if (st.inflight.load(std::memory_order_acquire) >= o.window) {
            std::unique_lock lock(st.mu);
            st.waiting = true;
            st.cv.wait(lock, [&] { return st.inflight.load() <= o.window / 2; });
            st.waiting = false;
        }
        const int d = static_cast<int>(i % o.devices);
        const std::string topic =
            "gateways/bench/devices/dev" + std::to_string(d) + "/telemetry/bench";
        const std::string p = payload(o.size, d, counters[d]++, now_ns());
        st.inflight.fetch_add(1, std::memory_order_acq_rel);
        int rc;
        while ((rc = c.publish(topic.c_str(), p.data(), static_cast<int>(p.size()), i + 1, done5,
                               done, &st)) == MQTTASYNC_MAX_BUFFERED_MESSAGES) {
            std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
        if (rc != MQTTASYNC_SUCCESS) {
            std::fprintf(stderr, "publish failed: %d\n", rc);
            return 1;
        }
    }
    while (st.acked.load() < o.count) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const std::int64_t end = now_ns();
    const double secs = static_cast<double>(end - start) / 1e9;
    std::printf("acked=%ld\nstart_ns=%lld\nend_ns=%lld\nelapsed_s=%.3f\nrate=%.0f\n",
                st.acked.load(), static_cast<long long>(start), static_cast<long long>(end), secs,
                static_cast<double>(o.count) / secs);
    return 0;
}

// --- relay: the arrival callback (Paho's receive thread) queues each message and a forwarding
// thread publishes it to the cloud with the same window as `publish`: the gateway's data path
// without the buffer, the routing and the event loop, so the ceiling for a Paho forwarder.
struct relay_state {
    publish_state up;
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::pair<std::string, std::string>> queue;  // topic, payload
    std::atomic<long> received{0};
};

int run_relay(const options& o) {
    relay_state st;
    st.up.window = o.window;
    client cloud(o.uri, "egw-paho-bench-up", o.mqtt_version, o.window);
    // MQTT 3.1.1 towards the edge, as the gateway's ingest.
    client edge(o.edge_uri, "egw-paho-bench-in", 4, o.window);
    edge.set_arrived(
        [](void* ctx, char* topic, int topic_len, MQTTAsync_message* m) -> int {
            auto* s = static_cast<relay_state*>(ctx);
            std::string t = "gateways/bench/";
            t.append(topic, topic_len > 0 ? static_cast<size_t>(topic_len) : std::strlen(topic));
            {
                std::lock_guard lock(s->mu);
                s->queue.emplace_back(std::move(t),
                                      std::string(static_cast<const char*>(m->payload),
                                                  static_cast<size_t>(m->payloadlen)));
                s->received.fetch_add(1, std::memory_order_relaxed);
            }
            s->cv.notify_one();
            MQTTAsync_freeMessage(&m);
            MQTTAsync_free(topic);
            return 1;
        },
        &st);
    cloud.connect();
    edge.connect();
    edge.subscribe(o.filter);
    std::printf("ready=1\n");
    std::fflush(stdout);

    auto done5 = [](void* ctx, MQTTAsync_successData5*) {
        static_cast<publish_state*>(ctx)->on_ack();
    };
    auto done = [](void* ctx, MQTTAsync_successData*) {
        static_cast<publish_state*>(ctx)->on_ack();
    };
    long sent = 0;
    std::deque<std::pair<std::string, std::string>> batch;
    while (sent < o.count) {
        {
            std::unique_lock lock(st.mu);
            if (!st.cv.wait_for(lock, std::chrono::milliseconds(o.idle_ms),
                                [&] { return !st.queue.empty(); })) {
                break;  // nothing arrived for idle_ms
            }
            batch.swap(st.queue);
        }
        for (auto& [topic, body] : batch) {
            if (st.up.inflight.load(std::memory_order_acquire) >= o.window) {
                std::unique_lock lock(st.up.mu);
                st.up.waiting = true;
                st.up.cv.wait(lock, [&] { return st.up.inflight.load() <= o.window / 2; });
                st.up.waiting = false;
            }
            st.up.inflight.fetch_add(1, std::memory_order_acq_rel);
            ++sent;
            if (cloud.publish(topic.c_str(), body.data(), static_cast<int>(body.size()), sent,
                              done5, done, &st.up) != MQTTASYNC_SUCCESS) {
                std::fprintf(stderr, "publish failed\n");
                return 1;
            }
        }
        batch.clear();
    }
    const std::int64_t deadline = now_ns() + 10'000'000'000;
    while (st.up.acked.load() < sent && now_ns() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::printf("received=%ld\nsent=%ld\nacked=%ld\n", st.received.load(), sent,
                st.up.acked.load());
    return st.up.acked.load() >= o.count ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    const options o = parse(argc, argv);
    return o.mode == "publish" ? run_publish(o) : run_relay(o);
}
