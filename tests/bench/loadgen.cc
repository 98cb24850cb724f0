// SPDX-License-Identifier: Apache-2.0
//
// egw-loadgen: MQTT load generator and consumer for the edge-gateway benchmarks.
//
//   egw-loadgen publish [options]   send N messages of S bytes to D device topics
//   egw-loadgen consume [options]   count, de-duplicate and time messages until N or idle
//
// Results go to stdout as `key=value` lines (one per line) so that run.sh can read them with
// grep/sed; progress and errors go to stderr; exit 0 when everything was sent/received.
//
// Why not Paho: the load generator must be much faster than the systems it measures, on the
// same 2-core box. Paho C's MQTTAsync hands every message between three threads under one global
// mutex; measured on the benchmark machine it peaks near 21k QoS 1 msg/s while spending most of
// its time in futex wake-ups, which is below a plain Mosquitto bridge. The client below speaks
// the small part of MQTT 3.1.1 the benchmark needs (CONNECT, PUBLISH QoS 0/1, PUBACK, SUBSCRIBE,
// DISCONNECT) over a blocking socket, and batches many packets per write()/read(): the publisher
// costs about 1 us of CPU per message, the consumer less.
//
// Payload layout (ASCII, padded with 'x' to exactly --size bytes when it fits):
//   {"d":<device>,"c":<per-device counter>,"t":<CLOCK_REALTIME ns at send>,"p":"xxx..."}
// Device number and counter are in the payload, not only in the topic, because a gateway
// rewrites the topic; the consumer finds duplicates, losses and reordering per device from them.
// CLOCK_REALTIME rather than MONOTONIC so that times can be compared with `date +%s%N` in the
// script; publisher and consumer run on the same host, so the clocks agree.

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

std::int64_t now_ns() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

void sleep_until_ns(std::int64_t t) noexcept {
    timespec ts{};
    ts.tv_sec = t / 1'000'000'000;
    ts.tv_nsec = t % 1'000'000'000;
    while (clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
    }
}

[[noreturn]] void die(const std::string& msg) {
    std::fprintf(stderr, "egw-loadgen: %s\n", msg.c_str());
    std::fflush(stderr);
    std::_Exit(2);
}

// ---------------------------------------------------------------------------------------------
// Options

struct options {
    std::string mode;
    std::string uri = "tcp://127.0.0.1:1883";
    std::string client_id;
    int qos = 1;
    std::uint64_t count = 100'000;  // publish: messages to send; consume: stop after this many
    int keepalive_s = 60;
    // publish
    std::size_t size = 100;
    std::string topic = "devices/{d}/telemetry/bench";
    std::uint32_t devices = 100;
    std::uint32_t device_base = 0;  // first device number (several publishers, one consumer)
    double rate = 0;                // msg/s; 0 = as fast as the window allows
    int window = 1000;              // unacknowledged QoS 1 publishes
    // consume
    std::string filter = "#";
    bool clean = true;
    int idle_ms = 5000;              // stop this long after the last message ...
    int start_timeout_ms = 600'000;  // ... or this long without a first message
    bool subscribe_only = false;     // create the (persistent) session, then disconnect
    int report_ms = 0;               // progress lines on stderr every this many ms
};

void usage(FILE* f) {
    std::fputs(
        "usage: egw-loadgen publish|consume [options]\n"
        "common:  --uri tcp://HOST:PORT  --client-id ID  --qos 0|1  --count N  --keepalive S\n"
        "         --report-ms MS (progress on stderr)\n"
        "publish: --size BYTES  --topic PATTERN ({d} = device name)  --devices D\n"
        "         --device-base B  --rate MSG_PER_S (0 = max)  --window W (max unacked QoS 1)\n"
        "consume: --filter F  --clean 0|1  --idle-ms MS  --start-timeout-ms MS  --subscribe-only\n"
        "         (--count 0: run until idle)\n",
        f);
}

options parse_args(int argc, char** argv) {
    if (argc < 2) {
        usage(stderr);
        std::exit(2);
    }
    options o;
    o.mode = argv[1];
    if (o.mode == "-h" || o.mode == "--help") {
        usage(stdout);
        std::exit(0);
    }
    if (o.mode != "publish" && o.mode != "consume") die("unknown mode " + o.mode);
    for (int i = 2; i < argc; ++i) {
        std::string_view a = argv[i];
        auto val = [&]() -> std::string {
            if (i + 1 >= argc) die("missing value for " + std::string(a));
            return argv[++i];
        };
        auto num = [&]() -> double {
            std::string v = val();
            char* end = nullptr;
            double d = std::strtod(v.c_str(), &end);
            if (end == v.c_str() || *end != '\0' || d < 0) die("bad number for " + std::string(a));
            return d;
        };
        if (a == "--uri")
            o.uri = val();
        else if (a == "--client-id")
            o.client_id = val();
        else if (a == "--qos")
            o.qos = static_cast<int>(num());
        else if (a == "--count")
            o.count = static_cast<std::uint64_t>(num());
        else if (a == "--keepalive")
            o.keepalive_s = static_cast<int>(num());
        else if (a == "--size")
            o.size = static_cast<std::size_t>(num());
        else if (a == "--topic")
            o.topic = val();
        else if (a == "--devices")
            o.devices = static_cast<std::uint32_t>(num());
        else if (a == "--device-base")
            o.device_base = static_cast<std::uint32_t>(num());
        else if (a == "--rate")
            o.rate = num();
        else if (a == "--window")
            o.window = static_cast<int>(num());
        else if (a == "--filter")
            o.filter = val();
        else if (a == "--clean")
            o.clean = num() != 0;
        else if (a == "--idle-ms")
            o.idle_ms = static_cast<int>(num());
        else if (a == "--start-timeout-ms")
            o.start_timeout_ms = static_cast<int>(num());
        else if (a == "--subscribe-only")
            o.subscribe_only = true;
        else if (a == "--report-ms")
            o.report_ms = static_cast<int>(num());
        else if (a == "-h" || a == "--help") {
            usage(stdout);
            std::exit(0);
        } else
            die("unknown option " + std::string(a));
    }
    if (o.qos != 0 && o.qos != 1) die("--qos must be 0 or 1");
    if (o.devices == 0) die("--devices must be >= 1");
    // Packet ids cycle through 1..65535 and the broker acks in order, so a window below the id
    // space never reuses an id that is still in flight.
    if (o.window < 1 || o.window > 60000) die("--window must be in 1..60000");
    if (o.keepalive_s > 65535) die("--keepalive must be <= 65535");
    if (o.client_id.empty()) o.client_id = "egw-loadgen-" + o.mode + "-" + std::to_string(getpid());
    return o;
}

// ---------------------------------------------------------------------------------------------
// Minimal MQTT 3.1.1 over a blocking TCP socket.

void put16(std::string& b, unsigned v) {
    b.push_back(static_cast<char>((v >> 8) & 0xFF));
    b.push_back(static_cast<char>(v & 0xFF));
}

void put_varint(std::string& b, std::size_t v) {
    do {
        unsigned char byte = v % 128;
        v /= 128;
        if (v > 0) byte |= 0x80;
        b.push_back(static_cast<char>(byte));
    } while (v > 0);
}

void put_str(std::string& b, std::string_view s) {
    put16(b, static_cast<unsigned>(s.size()));
    b.append(s);
}

// Owns a connected socket. Not thread-safe except that one thread may write while another
// reads (the publisher's sender and ack reader).
class connection {
public:
    explicit connection(const std::string& uri) {
        std::string_view u = uri;
        for (std::string_view scheme : {"tcp://", "mqtt://"}) {
            if (u.substr(0, scheme.size()) == scheme) u.remove_prefix(scheme.size());
        }
        if (u.find("://") != std::string_view::npos) die("only tcp:// URIs are supported: " + uri);
        std::string host = "127.0.0.1", port = "1883";
        if (auto colon = u.rfind(':'); colon != std::string_view::npos) {
            host = std::string(u.substr(0, colon));
            port = std::string(u.substr(colon + 1));
        } else if (!u.empty()) {
            host = std::string(u);
        }
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* res = nullptr;
        if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0)
            die("cannot resolve " + host + ": " + gai_strerror(rc));
        for (addrinfo* ai = res; ai != nullptr && fd_ < 0; ai = ai->ai_next) {
            int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
            if (fd < 0) continue;
            if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
                fd_ = fd;
            else
                ::close(fd);
        }
        freeaddrinfo(res);
        if (fd_ < 0) die("cannot connect to " + uri + ": " + std::strerror(errno));
        // Packets are already batched in user space; Nagle would only delay the last one of a
        // batch (and every message at a fixed low rate, spoiling the latency figures).
        int one = 1;
        setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;
    ~connection() {
        if (fd_ >= 0) ::close(fd_);
    }
    int fd() const noexcept { return fd_; }

    void write_all(const char* p, std::size_t n) {
        while (n > 0) {
            ssize_t w = ::send(fd_, p, n, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EINTR) continue;
                die(std::string("send: ") + std::strerror(errno));
            }
            p += w;
            n -= static_cast<std::size_t>(w);
        }
    }
    void write_all(const std::string& b) { write_all(b.data(), b.size()); }

    // Reads whatever is available (at least one byte) and appends it to in_; false on EOF.
    bool read_some() {
        constexpr std::size_t chunk = 256 * 1024;
        if (in_pos_ > 0 && in_pos_ == in_.size()) {
            in_.clear();
            in_pos_ = 0;
        } else if (in_pos_ > chunk) {
            in_.erase(0, in_pos_);
            in_pos_ = 0;
        }
        std::size_t old = in_.size();
        in_.resize(old + chunk);
        ssize_t r;
        do {
            r = ::recv(fd_, in_.data() + old, chunk, 0);
        } while (r < 0 && errno == EINTR);
        in_.resize(old + static_cast<std::size_t>(std::max<ssize_t>(r, 0)));
        if (r < 0) die(std::string("recv: ") + std::strerror(errno));
        return r > 0;
    }

    // A complete packet in the read buffer: first byte, body. Body points into the buffer and is
    // valid until the next read_some().
    struct packet {
        unsigned char type_flags;
        const char* body;
        std::size_t len;
    };

    // Takes the next complete packet out of the read buffer; false if none is complete yet.
    bool next_packet(packet& p) {
        const std::size_t avail = in_.size() - in_pos_;
        const auto* b = reinterpret_cast<const unsigned char*>(in_.data() + in_pos_);
        if (avail < 2) return false;
        std::size_t len = 0, i = 1;
        for (unsigned shift = 0;; shift += 7, ++i) {
            if (i >= avail) return false;
            if (i > 4) die("malformed remaining length from broker");
            len |= static_cast<std::size_t>(b[i] & 0x7F) << shift;
            if ((b[i] & 0x80) == 0) break;
        }
        ++i;
        if (avail < i + len) return false;
        p.type_flags = b[0];
        p.body = in_.data() + in_pos_ + i;
        p.len = len;
        in_pos_ += i + len;
        return true;
    }

    // Blocks until a packet arrives; dies on EOF.
    packet wait_packet() {
        packet p{};
        while (!next_packet(p)) {
            if (!read_some()) die("broker closed the connection");
        }
        return p;
    }

    void mqtt_connect(const std::string& client_id, bool clean, int keepalive_s) {
        std::string body;
        put_str(body, "MQTT");
        body.push_back(4);  // protocol level 3.1.1
        body.push_back(clean ? 0x02 : 0x00);
        put16(body, static_cast<unsigned>(keepalive_s));
        put_str(body, client_id);
        std::string pkt(1, '\x10');
        put_varint(pkt, body.size());
        write_all(pkt + body);
        packet p = wait_packet();
        if ((p.type_flags >> 4) != 2 || p.len < 2) die("expected CONNACK");
        if (p.body[1] != 0)
            die("connection refused by broker, return code " + std::to_string(int(p.body[1])));
    }

    void mqtt_subscribe(const std::string& filter, int qos) {
        std::string body;
        put16(body, 1);
        put_str(body, filter);
        body.push_back(static_cast<char>(qos));
        std::string pkt(1, '\x82');
        put_varint(pkt, body.size());
        write_all(pkt + body);
        for (;;) {
            packet p = wait_packet();
            if ((p.type_flags >> 4) != 9) continue;  // PUBLISHes of an old session may come first
            if (p.len < 3 || static_cast<unsigned char>(p.body[2]) >= 0x80)
                die("subscription refused: " + filter);
            return;
        }
    }

    void mqtt_disconnect() { write_all("\xE0\x00", 2); }

private:
    int fd_ = -1;
    std::string in_;
    std::size_t in_pos_ = 0;
};

// ---------------------------------------------------------------------------------------------
// publish

// The window of unacknowledged QoS 1 publishes, shared by the sender (main thread) and the
// PUBACK reader thread.
struct window_state {
    int window = 0;
    std::atomic<std::int64_t> inflight{0};
    std::atomic<std::uint64_t> acked{0};
    std::atomic<std::int64_t> last_ack_ns{0};
    std::atomic<bool> waiting{false};
    std::atomic<bool> closed{false};
    std::mutex mutex;
    std::condition_variable cv;

    void acks(std::int64_t n) noexcept {
        acked.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
        last_ack_ns.store(now_ns(), std::memory_order_relaxed);
        inflight.fetch_sub(n, std::memory_order_acq_rel);
        if (waiting.load(std::memory_order_acquire)) {
            std::lock_guard lk(mutex);
            cv.notify_one();
        }
    }
    void wake() {
        std::lock_guard lk(mutex);
        cv.notify_all();
    }
    template <class Pred>
    void wait(Pred pred) {
        if (pred()) return;
        std::unique_lock lk(mutex);
        waiting.store(true, std::memory_order_release);
        cv.wait(lk, [&] { return pred() || closed.load(); });
        waiting.store(false, std::memory_order_release);
    }
};

// Appends the payload for (device, counter, t) to buf, padded with 'x' to `size` bytes when the
// header fits.
void append_payload(std::string& buf, std::size_t size, std::uint32_t device, std::uint64_t counter,
                    std::int64_t t) {
    char head[96];
    int n = std::snprintf(head, sizeof head, "{\"d\":%u,\"c\":%llu,\"t\":%lld,\"p\":\"", device,
                          static_cast<unsigned long long>(counter), static_cast<long long>(t));
    buf.append(head, static_cast<std::size_t>(n));
    if (size > static_cast<std::size_t>(n) + 2)
        buf.append(size - static_cast<std::size_t>(n) - 2, 'x');
    buf.append("\"}");
}

int run_publish(const options& o) {
    connection conn(o.uri);
    conn.mqtt_connect(o.client_id, true, o.keepalive_s);

    std::vector<std::string> topics(o.devices);
    for (std::uint32_t d = 0; d < o.devices; ++d) {
        std::string t = o.topic;
        std::string dev = "dev" + std::to_string(o.device_base + d);
        for (std::size_t p; (p = t.find("{d}")) != std::string::npos;) t.replace(p, 3, dev);
        topics[d] = std::move(t);
    }

    window_state win;
    win.window = o.window;
    std::thread reader([&] {
        connection::packet p{};
        for (;;) {
            std::int64_t n = 0;
            while (conn.next_packet(p)) {
                if ((p.type_flags >> 4) == 4) ++n;  // PUBACK
            }
            if (n > 0) win.acks(n);
            if (!conn.read_some()) break;
        }
        win.closed.store(true);
        win.wake();
    });

    // Packets are collected here and written in one send() when the buffer is large, when the
    // window is full, or (paced mode) after every message, so that latency is not inflated.
    constexpr std::size_t flush_bytes = 64 * 1024;
    std::string out;
    out.reserve(flush_bytes + 4096);
    unsigned pid = 0;
    const std::int64_t t0 = now_ns();
    std::int64_t next_report = t0 + std::int64_t{o.report_ms} * 1'000'000;
    const double ns_per_msg = o.rate > 0 ? 1e9 / o.rate : 0;
    std::uint64_t sent = 0;
    std::string payload;
    for (std::uint64_t i = 0; i < o.count && !win.closed.load(); ++i) {
        if (ns_per_msg > 0) {
            std::int64_t due = t0 + static_cast<std::int64_t>(static_cast<double>(i) * ns_per_msg);
            if (now_ns() < due) {
                if (!out.empty()) conn.write_all(out), out.clear();
                sleep_until_ns(due);
            }
        }
        if (o.qos == 1 && win.inflight.load(std::memory_order_acquire) >= o.window) {
            if (!out.empty()) conn.write_all(out), out.clear();
            // Resume when a quarter of the window is free: one wake-up per many acks.
            const std::int64_t resume = o.window - std::max(1, o.window / 4);
            win.wait([&] { return win.inflight.load(std::memory_order_acquire) <= resume; });
            if (win.closed.load()) break;
        }
        const std::uint32_t d = static_cast<std::uint32_t>(i % o.devices);
        const std::uint64_t counter = i / o.devices;
        const std::int64_t t = now_ns();
        const std::string& topic = topics[d];
        payload.clear();
        append_payload(payload, o.size, o.device_base + d, counter, t);
        out.push_back(o.qos == 1 ? '\x32' : '\x30');
        put_varint(out, 2 + topic.size() + (o.qos == 1 ? 2 : 0) + payload.size());
        put_str(out, topic);
        if (o.qos == 1) {
            pid = pid % 65535 + 1;
            put16(out, pid);
            win.inflight.fetch_add(1, std::memory_order_acq_rel);
        }
        out.append(payload);
        ++sent;
        if (out.size() >= flush_bytes || ns_per_msg > 0) conn.write_all(out), out.clear();
        if (o.report_ms > 0 && (i & 1023) == 0 && t >= next_report) {
            std::fprintf(stderr, "publish: sent=%llu acked=%llu\n",
                         static_cast<unsigned long long>(sent),
                         static_cast<unsigned long long>(win.acked.load()));
            next_report += std::int64_t{o.report_ms} * 1'000'000;
        }
    }
    if (!out.empty()) conn.write_all(out);
    std::int64_t t_end = now_ns();
    if (o.qos == 1) {
        win.wait([&] { return win.inflight.load(std::memory_order_acquire) == 0; });
        t_end = std::max(t_end, win.last_ack_ns.load());
    }
    const std::uint64_t acked = o.qos == 1 ? win.acked.load() : sent;
    conn.mqtt_disconnect();
    ::shutdown(conn.fd(), SHUT_WR);
    reader.join();
    const double secs = static_cast<double>(t_end - t0) / 1e9;
    std::printf("sent=%llu\nacked=%llu\n", static_cast<unsigned long long>(sent),
                static_cast<unsigned long long>(acked));
    std::printf("start_ns=%lld\nend_ns=%lld\nelapsed_s=%.3f\nrate=%.0f\n",
                static_cast<long long>(t0), static_cast<long long>(t_end), secs,
                secs > 0 ? static_cast<double>(acked) / secs : 0.0);
    std::fflush(stdout);
    return acked == o.count ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------
// consume

// Which counters of one device were seen.
struct device_seen {
    std::vector<std::uint64_t> bits;
    std::int64_t max_counter = -1;
};

struct consumer_stats {
    std::vector<device_seen> devices;
    std::vector<std::int64_t> latencies_ns;
    std::uint64_t received = 0, unique = 0, duplicates = 0, reordered = 0;
    std::uint64_t other = 0;  // payloads that are not loadgen payloads (e.g. retained status)
    std::int64_t first_ns = 0, last_ns = 0;
};

// Parses `"<key>":<digits>` at p (then skips one ','); false if the payload does not match.
bool parse_field(const char*& p, const char* end, char key, std::int64_t& out) {
    if (end - p < 5 || p[0] != '"' || p[1] != key || p[2] != '"' || p[3] != ':') return false;
    p += 4;
    std::int64_t v = 0;
    const char* start = p;
    while (p < end && *p >= '0' && *p <= '9' && p - start < 19) v = v * 10 + (*p++ - '0');
    if (p == start) return false;
    out = v;
    if (p < end && *p == ',') ++p;
    return true;
}

void record(consumer_stats& s, const char* p, std::size_t len, std::int64_t t) {
    const char* end = p + len;
    std::int64_t d = 0, c = 0, ts = 0;
    bool ok = len > 0 && *p == '{';
    if (ok) {
        ++p;
        // Bounds keep a foreign payload from making the per-device bitmaps huge.
        ok = parse_field(p, end, 'd', d) && parse_field(p, end, 'c', c) &&
             parse_field(p, end, 't', ts) && d < (1 << 22) && c < (std::int64_t{1} << 34);
    }
    if (s.received++ == 0) s.first_ns = t;
    s.last_ns = t;
    if (!ok) {
        ++s.other;
        return;
    }
    if (static_cast<std::size_t>(d) >= s.devices.size())
        s.devices.resize(static_cast<std::size_t>(d) + 1);
    device_seen& dev = s.devices[static_cast<std::size_t>(d)];
    const auto word = static_cast<std::size_t>(c / 64);
    const std::uint64_t bit = std::uint64_t{1} << (c % 64);
    if (word >= dev.bits.size()) dev.bits.resize(std::max(word + 1, dev.bits.size() * 2));
    if (dev.bits[word] & bit) {
        ++s.duplicates;
    } else {
        dev.bits[word] |= bit;
        if (c < dev.max_counter) ++s.reordered;
        ++s.unique;
    }
    dev.max_counter = std::max(dev.max_counter, c);
    s.latencies_ns.push_back(t - ts);
}

std::int64_t percentile(std::vector<std::int64_t>& v, double q) {
    if (v.empty()) return 0;
    auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1));
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    return v[k];
}

int run_consume(const options& o) {
    connection conn(o.uri);
    conn.mqtt_connect(o.client_id, o.clean, o.keepalive_s);
    conn.mqtt_subscribe(o.filter, o.qos);
    std::printf("ready=1\n");
    std::fflush(stdout);
    if (o.subscribe_only) {
        conn.mqtt_disconnect();
        return 0;
    }
    consumer_stats s;
    if (o.count > 0) s.latencies_ns.reserve(std::min<std::uint64_t>(o.count + 4096, 50'000'000));
    const std::int64_t t_start = now_ns();
    std::int64_t next_report = t_start + std::int64_t{o.report_ms} * 1'000'000;
    std::int64_t last_send = t_start;
    std::uint64_t last_reported = 0;
    std::string acks;
    bool eof = false;
    for (;;) {
        pollfd pfd{conn.fd(), POLLIN, 0};
        int pr = ::poll(&pfd, 1, 20);
        std::int64_t t = now_ns();
        if (pr > 0) {
            if (!conn.read_some()) {
                std::fprintf(stderr, "consume: broker closed the connection\n");
                eof = true;
            }
            t = now_ns();
            connection::packet p{};
            while (conn.next_packet(p)) {
                if ((p.type_flags >> 4) != 3 || p.len < 2) continue;  // only PUBLISH matters
                const int qos = (p.type_flags >> 1) & 3;
                const auto* b = reinterpret_cast<const unsigned char*>(p.body);
                std::size_t off = 2 + ((std::size_t{b[0]} << 8) | b[1]);
                if (qos > 0) {  // we subscribe with QoS <= 1, so qos is 1 here
                    if (off + 2 > p.len) die("malformed PUBLISH");
                    acks.append("\x40\x02", 2);  // PUBACK
                    acks.append(p.body + off, 2);
                    off += 2;
                }
                if (off > p.len) die("malformed PUBLISH");
                record(s, p.body + off, p.len - off, t);
            }
            if (!acks.empty()) {
                conn.write_all(acks);
                acks.clear();
                last_send = t;
            }
        }
        if (eof) break;
        if (o.count > 0 && s.unique >= o.count) break;
        if (s.received == 0 && t - t_start > std::int64_t{o.start_timeout_ms} * 1'000'000) break;
        if (s.received > 0 && t - s.last_ns > std::int64_t{o.idle_ms} * 1'000'000) break;
        if (o.keepalive_s > 0 && t - last_send > std::int64_t{o.keepalive_s} * 500'000'000) {
            conn.write_all("\xC0\x00", 2);  // PINGREQ at half the keepalive
            last_send = t;
        }
        if (o.report_ms > 0 && t >= next_report) {
            std::fprintf(stderr, "consume: received=%llu (+%llu)\n",
                         static_cast<unsigned long long>(s.received),
                         static_cast<unsigned long long>(s.received - last_reported));
            last_reported = s.received;
            next_report += std::int64_t{o.report_ms} * 1'000'000;
        }
    }
    if (!eof) conn.mqtt_disconnect();

    std::uint64_t expected_by_counters = 0;
    for (auto& d : s.devices) expected_by_counters += static_cast<std::uint64_t>(d.max_counter + 1);
    const double secs = static_cast<double>(s.last_ns - s.first_ns) / 1e9;
    auto u = [](std::uint64_t v) { return static_cast<unsigned long long>(v); };
    std::printf("received=%llu\nunique=%llu\nduplicates=%llu\nreordered=%llu\nother=%llu\n",
                u(s.received), u(s.unique), u(s.duplicates), u(s.reordered), u(s.other));
    // missing: against --count; gaps: holes below the highest counter seen per device.
    std::printf("missing=%llu\ngaps=%llu\n", u(o.count > s.unique ? o.count - s.unique : 0),
                u(expected_by_counters - s.unique));
    std::printf("first_ns=%lld\nlast_ns=%lld\nelapsed_s=%.3f\nrate=%.0f\n",
                static_cast<long long>(s.first_ns), static_cast<long long>(s.last_ns), secs,
                secs > 0 ? static_cast<double>(s.received) / secs : 0.0);
    const double max_us =
        s.latencies_ns.empty()
            ? 0.0
            : static_cast<double>(*std::max_element(s.latencies_ns.begin(), s.latencies_ns.end())) /
                  1e3;
    for (const auto& [name, q] :
         {std::pair{"p50", 0.50}, {"p90", 0.90}, {"p95", 0.95}, {"p99", 0.99}, {"p999", 0.999}}) {
        std::printf("lat_%s_us=%.0f\n", name,
                    static_cast<double>(percentile(s.latencies_ns, q)) / 1e3);
    }
    std::printf("lat_max_us=%.0f\n", max_us);
    std::fflush(stdout);
    return (o.count == 0 || s.unique >= o.count) ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    options o = parse_args(argc, argv);
    return o.mode == "publish" ? run_publish(o) : run_consume(o);
}
