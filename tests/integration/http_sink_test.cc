// SPDX-License-Identifier: Apache-2.0
//
// The `http` sink end to end against a real HTTP server (tests/http/server.js on node, started
// here on 127.0.0.1): batches arrive once under their Idempotency-Key, gzip, with headers read
// from files; 500s, timeouts, 403 fixed by a reload, and a row the server rejects on its own.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "integration/gateway_test_fixture.h"
#include "support/child_process.h"

namespace egw::test {
namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void write(const fs::path& p, const std::string& text) {
    std::ofstream(p.string() + ".tmp", std::ios::binary) << text;
    fs::rename(p.string() + ".tmp", p);
}

class http_sink_test : public gateway_test {
protected:
    fs::path server_dir() const { return tmp_.path() / "http"; }

    void start_server(int port = 0) {
        fs::create_directories(server_dir());
        fs::remove(server_dir() / "port");
        server_ = child_process::spawn(
            {"/usr/bin/node", EGW_HTTP_SERVER_JS, server_dir().string(), std::to_string(port)},
            server_dir() / "stdout.log", server_dir() / "stderr.log");
        ASSERT_TRUE(poll_until([&] { return fs::exists(server_dir() / "port"); }, 10s))
            << slurp(server_dir() / "stderr.log");
        port_ = std::stoi(slurp(server_dir() / "port"));
    }

    void set_mode(const json& m) { write(server_dir() / "mode.json", m.dump()); }

    json http_config(json extra = json::object()) {
        json c = base_config();
        json sink = {{"type", "http"},
                     {"url", "http://127.0.0.1:" + std::to_string(port_) + "/v1/batches"},
                     {"batch", {{"max_rows", 100}, {"max_delay_ms", 200}}},
                     {"timeout_ms", 1000},
                     {"backoff", {{"initial_ms", 100}, {"max_ms", 500}}}};
        sink.update(extra);
        c["sinks"] = {{"api", sink}};
        c["routes"] = json::array({{{"from", k_telemetry_filter}, {"to", {"api"}}}});
        return c;
    }

    void publish_n(test_publisher& dev, const std::string& device, size_t n) {
        for (size_t i = 0; i < n; ++i) {
            dev.publish("devices/" + device + "/telemetry/t", numbered_payload(device, i));
        }
        dev.flush(30s);
    }

    bool wait_drained(std::chrono::milliseconds timeout) {
        return gateway_
            ->wait_until(
                [](const json& s) {
                    return json_at(s, "sinks/api/rows_waiting") == 0 &&
                           json_at(s, "sinks/api/batch_in_flight").is_null();
                },
                timeout)
            .has_value();
    }

    // payload -> how many stored lines carry it, over every stored batch.
    std::map<std::string, int> stored_payloads(std::vector<std::string>* problems = nullptr) {
        std::map<std::string, int> out;
        const std::regex name(R"(gw-it-(\d{20})-(\d{20})\.ndjson)");
        for (const auto& e : fs::directory_iterator(server_dir() / "batches")) {
            std::smatch m;
            const std::string file = e.path().filename().string();
            if (!std::regex_match(file, m, name)) {
                if (problems) problems->push_back("key " + file);
                continue;
            }
            std::istringstream lines(slurp(e.path()));
            std::string line;
            while (std::getline(lines, line)) {
                json j = json::parse(line);
                const uint64_t seq = j["seq"];
                if (problems && (seq < std::stoull(m[1]) || seq > std::stoull(m[2])))
                    problems->push_back("seq outside key range in " + file);
                ++out[j["payload"].get<std::string>()];
            }
        }
        return out;
    }

    void expect_each_once(const std::string& device, size_t n, size_t allowed_missing = 0) {
        std::vector<std::string> problems;
        auto got = stored_payloads(&problems);
        EXPECT_TRUE(problems.empty()) << problems.front();
        size_t missing = 0;
        for (size_t i = 0; i < n; ++i) {
            auto it = got.find(numbered_payload(device, i));
            if (it == got.end()) {
                ++missing;
            } else {
                EXPECT_EQ(it->second, 1) << numbered_payload(device, i);
            }
        }
        EXPECT_EQ(missing, allowed_missing);
    }

    child_process server_;
    int port_ = 0;
};

TEST_F(http_sink_test, BatchesArriveOnceGzippedWithTheIdempotencyKeyAndAHeaderFromAFile) {
    start_server();
    set_mode({{"token", "s3cret-t0ken"}});
    write(tmp_.path() / "api.token", "Bearer s3cret-t0ken\n");
    start_brokers();
    auto& gw = start_gateway(http_config(
        {{"headers", {{"Authorization", "@" + (tmp_.path() / "api.token").string()}}}}));
    auto& dev = connect_device();
    publish_n(dev, "h1", 1000);
    ASSERT_TRUE(wait_drained(30s)) << gw.last_status();
    expect_each_once("h1", 1000);
    const std::string requests = slurp(server_dir() / "requests.log");
    EXPECT_EQ(requests.find(" 403 "), std::string::npos);
    EXPECT_NE(requests.find(" 200 gzip"), std::string::npos);
    auto s = gw.status_json();
    ASSERT_TRUE(s);
    EXPECT_EQ(json_at(*s, "sinks/api/state"), "online");
    EXPECT_EQ(s->dump().find("s3cret"), std::string::npos) << "a secret in status";
    EXPECT_EQ(gw.full_log().find("s3cret"), std::string::npos) << "a secret in the log";
}

TEST_F(http_sink_test, FiveHundredsAndTimeoutsAreRetriedWithoutDuplicates) {
    start_server();
    set_mode({{"status", 500}});
    start_brokers();
    auto& gw = start_gateway(http_config());
    auto& dev = connect_device();
    publish_n(dev, "h2", 500);
    ASSERT_TRUE(wait_sink_state("offline", 20s, "api")) << gw.last_status();
    EXPECT_NE(json_at(*gw.status_json(), "sinks/api/last_error").get<std::string>().find("500"),
              std::string::npos);
    set_mode({{"delay_ms", 3000}});  // slower than timeout_ms
    ASSERT_TRUE(gw.wait_until(
        [](const json& s) {
            return json_at(s, "sinks/api/last_error").get<std::string>().find("imeout") !=
                   std::string::npos;
        },
        20s))
        << gw.last_status();
    set_mode(json::object());
    ASSERT_TRUE(wait_drained(60s)) << gw.last_status();
    // The slow server may have stored a batch whose answer came too late: the retry rewrote it
    // under the same key, so no row is doubled.
    expect_each_once("h2", 500);
}

TEST_F(http_sink_test, ServerDownDuringABacklogThenBack) {
    start_server();
    const int port = port_;
    start_brokers();
    auto& gw = start_gateway(http_config());
    server_.kill_and_reap();
    auto& dev = connect_device();
    publish_n(dev, "h3", 800);
    ASSERT_TRUE(wait_sink_state("offline", 20s, "api")) << gw.last_status();
    start_server(port);
    ASSERT_TRUE(wait_drained(60s)) << gw.last_status();
    expect_each_once("h3", 800);
}

TEST_F(http_sink_test, A403IsAnErrorUntilTheCredentialsAreFixedAndReloaded) {
    start_server();
    set_mode({{"token", "right"}});
    const fs::path token = tmp_.path() / "api.token";
    write(token, "Bearer wrong\n");
    start_brokers();
    auto& gw = start_gateway(http_config({{"headers", {{"Authorization", "@" + token.string()}}}}));
    auto& dev = connect_device();
    publish_n(dev, "h4", 300);
    ASSERT_TRUE(wait_sink_state("error", 20s, "api")) << gw.last_status();
    const std::string err = json_at(*gw.status_json(), "sinks/api/last_error");
    EXPECT_NE(err.find("403"), std::string::npos) << err;
    // No hot loop: one attempt per 10 s at most.
    const auto refused = [&] {
        const std::string log = slurp(server_dir() / "requests.log");
        size_t n = 0;
        for (size_t at = log.find(" 403 "); at != std::string::npos; at = log.find(" 403 ", at + 1))
            ++n;
        return n;
    };
    EXPECT_LE(refused(), 2u);
    write(token, "Bearer right\n");
    ASSERT_TRUE(gw.reload());
    ASSERT_TRUE(wait_drained(30s)) << gw.last_status();
    expect_each_once("h4", 300);
    EXPECT_EQ(gw.full_log().find("Bearer"), std::string::npos);
}

TEST_F(http_sink_test, ARowRejectedAloneGoesToTheDeadLettersTheRestArrive) {
    start_server();
    start_brokers();
    auto& gw = start_gateway(http_config({{"compression", "none"}}));
    auto& dev = connect_device();
    // The 37th row of the stream (seq numbers start at 1 in a fresh buffer).
    set_mode({{"reject_seq", 37}});
    publish_n(dev, "h5", 300);
    ASSERT_TRUE(wait_drained(60s)) << gw.last_status();
    auto s = gw.status_json();
    ASSERT_TRUE(s);
    EXPECT_EQ(json_at(*s, "sinks/api/dropped"), 1);
    expect_each_once("h5", 300, 1);
    EXPECT_EQ(stored_payloads().count(numbered_payload("h5", 36)), 0u);
    EXPECT_NE(slurp(server_dir() / "requests.log").find(" 200 identity"), std::string::npos);
    // Not lost: the refused row waits in the dead letters, named by the sink.
    const std::string sock = (tmp_ / "data" / "control.sock").string();
    auto listed = run_gateway_cli({"dead-letters", "list", "--json", "-s", sock}, tmp_.path());
    ASSERT_EQ(listed.exit_code, 0) << listed.err;
    const json list = json::parse(listed.out);
    ASSERT_EQ(list["count"], 1) << listed.out;
    EXPECT_EQ(list["dead_letters"][0]["seq"], 37);
    EXPECT_EQ(list["dead_letters"][0]["instance"], "api");
    EXPECT_EQ(list["dead_letters"][0]["kind"], "rejected");
    EXPECT_EQ(list["dead_letters"][0]["payload"], numbered_payload("h5", 36));
    EXPECT_NE(gw.full_log().find("moved to the dead letters"), std::string::npos);
}

}  // namespace
}  // namespace egw::test
