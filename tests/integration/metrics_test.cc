// SPDX-License-Identifier: Apache-2.0
//
// Prometheus metrics (metrics.listen): the real daemon serves /metrics on a loopback port; curl
// scrapes it, the official Python client's parser (and promtool, when installed) checks the
// text, and the figures match what went through. Also: the HTTP listener's bounds (404,
// oversized and idle requests) and the same figures in the retained status topic.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>

#include "integration/gateway_test_fixture.h"

namespace egw::test {
namespace {

const std::string k_parser = std::string(EGW_SOURCE_DIR) + "/tests/integration/prometheus_parse.py";

class metrics_test : public gateway_test {
protected:
    json metrics_config() {
        metrics_port_ = free_port();
        json cfg = base_config();
        cfg["metrics"] = {{"listen", "127.0.0.1:" + std::to_string(metrics_port_)}};
        cfg["status_interval_ms"] = 200;
        return cfg;
    }

    // curl -i: status line, headers and body.
    command_result curl(const std::string& path, std::vector<std::string> extra = {}) {
        std::vector<std::string> argv{"/usr/bin/curl", "-sS", "-i", "--max-time", "10"};
        argv.insert(argv.end(), extra.begin(), extra.end());
        argv.push_back("http://127.0.0.1:" + std::to_string(metrics_port_) + path);
        return run_command(argv, tmp_.path(), "curl" + std::to_string(++calls_), 15s);
    }

    static std::string body_of(const std::string& response) {
        auto at = response.find("\r\n\r\n");
        return at == std::string::npos ? std::string() : response.substr(at + 4);
    }

    // The exposition parsed by prometheus_client; fails the test if it does not parse.
    json parse(const std::string& text) {
        write_file(tmp_ / "metrics.txt", text);
        auto r = run_command({"/bin/sh", "-c", k_parser + " < " + (tmp_ / "metrics.txt").string()},
                             tmp_.path(), "parse" + std::to_string(++calls_), 30s);
        EXPECT_EQ(r.exit_code, 0) << r.err << "\n" << text;
        return r.exit_code == 0 ? json::parse(r.out) : json::object();
    }

    // The value of one sample, by sample name and labels; NaN if absent.
    static double value(const json& parsed, const std::string& sample_name,
                        const json& labels = json::object()) {
        for (const auto& [fam, f] : parsed.items()) {
            for (const auto& s : f["samples"]) {
                if (s["name"] == sample_name && s["labels"] == labels)
                    return s["value"].get<double>();
            }
        }
        return std::nan("");
    }

    std::uint16_t metrics_port_ = 0;
    int calls_ = 0;
};

TEST_F(metrics_test, ScrapeParsesAndCountsWhatWentThrough) {
    start_brokers();
    start_gateway(metrics_config());
    ASSERT_TRUE(wait_sink_state("online", 10s)) << gateway_->last_status();
    auto& cloud = connect_cloud_subscriber({"gateways/+/devices/#"});
    auto& dev = connect_device();
    constexpr int n = 50;
    for (int i = 0; i < n; ++i) dev.publish("devices/d1/telemetry/t", numbered_payload("d1", i));
    dev.flush();
    ASSERT_TRUE(cloud.wait_for_count(n, 10s));
    ASSERT_TRUE(gateway_->wait_until(
        [&](const json& s) { return json_at(s, "sinks/cloud/acked") == n; }, 10s));

    auto r = curl("/metrics");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("HTTP/1.1 200 OK"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("Content-Type: text/plain; version=0.0.4"), std::string::npos);
    const std::string text = body_of(r.out);
    std::cout << "[ info ] /metrics is " << text.size() << " bytes\n";

    const json m = parse(text);
    EXPECT_EQ(value(m, "edge_gateway_received_total"), n);
    EXPECT_EQ(value(m, "edge_gateway_buffered_total"), n);
    EXPECT_EQ(value(m, "edge_gateway_acked_total"), n);
    EXPECT_EQ(value(m, "edge_gateway_sink_acked_total", {{"sink", "cloud"}}), n);
    EXPECT_EQ(value(m, "edge_gateway_sink_connected", {{"sink", "cloud"}}), 1);
    EXPECT_EQ(value(m, "edge_gateway_sink_state", {{"sink", "cloud"}, {"state", "online"}}), 1);
    EXPECT_EQ(value(m, "edge_gateway_sink_reconnects_total", {{"sink", "cloud"}}), 0);
    EXPECT_EQ(value(m, "edge_gateway_dropped_total", {{"reason", "no_route"}}), 0);
    EXPECT_EQ(value(m, "edge_gateway_dropped_total", {{"reason", "buffer_full"}}), 0);
    EXPECT_EQ(value(m, "edge_gateway_local_connected"), 1);
    EXPECT_FALSE(std::isnan(value(m, "edge_gateway_buffer_rows")));
    EXPECT_FALSE(std::isnan(value(m, "edge_gateway_buffer_bytes")));
    EXPECT_FALSE(std::isnan(value(m, "edge_gateway_buffer_oldest_age_seconds")));
    EXPECT_FALSE(std::isnan(value(m, "edge_gateway_sink_oldest_age_seconds", {{"sink", "cloud"}})));
    EXPECT_GT(value(m, "edge_gateway_uptime_seconds"), 0);
    ASSERT_TRUE(m.contains("edge_gateway_loop_lag_seconds"));
    EXPECT_EQ(m["edge_gateway_loop_lag_seconds"]["type"], "histogram");
    EXPECT_EQ(m["edge_gateway_sink_acked"]["type"], "counter");
    EXPECT_EQ(m["edge_gateway_buffer_rows"]["type"], "gauge");
    // The probe runs every 250 ms from start: a few observations by now.
    EXPECT_GE(value(m, "edge_gateway_loop_lag_seconds_count"), 1);
    EXPECT_EQ(value(m, "edge_gateway_loop_lag_seconds_bucket", {{"le", "+Inf"}}),
              value(m, "edge_gateway_loop_lag_seconds_count"));
    // Strings that could carry credentials or internals are not exported.
    EXPECT_EQ(text.find(cloud_->uri()), std::string::npos);

    if (std::filesystem::exists("/usr/bin/promtool")) {
        auto p =
            run_command({"/bin/sh", "-c",
                         "/usr/bin/promtool check metrics < " + (tmp_ / "metrics.txt").string()},
                        tmp_.path(), "promtool", 30s);
        EXPECT_EQ(p.exit_code, 0) << p.out << p.err;
        EXPECT_EQ(p.out + p.err, "") << "promtool has remarks";
    } else {
        std::cout << "[ info ] promtool not installed: checked with prometheus_client only\n";
    }
}

TEST_F(metrics_test, OnlyGetMetricsAndBoundedRequests) {
    start_brokers();
    start_gateway(metrics_config());

    auto r = curl("/");
    EXPECT_NE(r.out.find("HTTP/1.1 404"), std::string::npos) << r.out << r.err;
    r = curl("/metrics", {"-X", "POST", "-d", "x=1"});
    EXPECT_NE(r.out.find("HTTP/1.1 404"), std::string::npos) << r.out << r.err;
    r = curl("/metrics?name=x");
    EXPECT_NE(r.out.find("HTTP/1.1 200"), std::string::npos) << r.out << r.err;

    // A raw socket for what curl will not send: an endless head, garbage, a silent client.
    auto connect_raw = [&] {
        int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(metrics_port_);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
        timeval tv{15, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        return fd;
    };
    auto read_all = [](int fd) {
        std::string out;
        char buf[4096];
        ssize_t n;
        while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
        return out;
    };

    int fd = connect_raw();
    const std::string big = "GET /metrics HTTP/1.1\r\nX-Pad: " + std::string(20000, 'a');
    ::send(fd, big.data(), big.size(), MSG_NOSIGNAL);
    EXPECT_NE(read_all(fd).find("HTTP/1.1 431"), std::string::npos);
    ::close(fd);

    fd = connect_raw();
    // A TLS ClientHello-like start with an embedded NUL: sizeof counts every byte of it.
    constexpr char raw[] = "\x16\x03\x01\x00\xff garbage\r\n\r\n";
    const std::string junk(raw, sizeof(raw) - 1);
    ::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
    EXPECT_NE(read_all(fd).find("HTTP/1.1 400"), std::string::npos);
    ::close(fd);

    // A client that sends nothing is closed after the idle timeout (10 s), not kept forever.
    fd = connect_raw();
    const auto t0 = clock_type::now();
    EXPECT_EQ(read_all(fd), "");
    const auto waited = clock_type::now() - t0;
    EXPECT_GE(waited, 9s);
    EXPECT_LT(waited, 14s);
    ::close(fd);

    // And the gateway kept serving through all of it.
    r = curl("/metrics");
    EXPECT_NE(r.out.find("HTTP/1.1 200"), std::string::npos) << r.out << r.err;
}

TEST_F(metrics_test, StatusTopicCarriesTheSameFigures) {
    start_brokers();
    start_gateway(metrics_config());
    ASSERT_TRUE(wait_sink_state("online", 10s)) << gateway_->last_status();
    auto& sub = connect_cloud_subscriber({std::string("gateways/") + k_gateway_id + "/status"});
    auto msg = sub.wait_for(
        [](const received_message& m) {
            auto j = json::parse(m.payload, nullptr, false);
            return !j.is_discarded() && j.value("state", "") == "online";
        },
        10s);
    ASSERT_TRUE(msg);
    const json s = json::parse(msg->payload);
    for (const char* key : {"counters", "buffer", "sinks", "loop", "local", "uptime_s"})
        EXPECT_TRUE(s.contains(key)) << key << " missing in " << msg->payload;
    EXPECT_TRUE(s["buffer"].contains("oldest_age_s"));
    EXPECT_TRUE(s["loop"].contains("lag_max_s"));
    EXPECT_TRUE(s["sinks"]["cloud"].contains("reconnects"));
    EXPECT_TRUE(s["counters"]["dropped"].contains("buffer_full"));
}

TEST_F(metrics_test, OffByDefaultAndBadListenRefused) {
    start_brokers();
    json cfg = base_config();
    cfg["metrics"] = {{"listen", "127.0.0.1"}};
    write_file(tmp_ / "bad.json", cfg.dump());
    auto r = run_gateway_cli({"--check-config", (tmp_ / "bad.json").string()}, tmp_.path());
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE((r.out + r.err).find("metrics.listen"), std::string::npos) << r.out << r.err;

    start_gateway(base_config());
    EXPECT_EQ(gateway_->log_since_start().find("/metrics"), std::string::npos);
}

}  // namespace
}  // namespace egw::test
