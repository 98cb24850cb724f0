// SPDX-License-Identifier: Apache-2.0
//
// Secrets never leave the config file: the gateway runs with a local and a cloud password
// (brokers that check them), a wrong cloud password after a reload (the refusal is logged),
// --check-config on good and bad configs holding them; then everything the gateway wrote is
// searched for them: its log, `status --json`, /metrics, the retained status topic, and the
// --check-config output.

#include <gtest/gtest.h>

#include <filesystem>

#include "integration/gateway_test_fixture.h"

namespace egw::test {
namespace {

// Distinctive, so a hit cannot be a coincidence; each also checked by a fragment, in case
// something prints part of a secret (a prefix, a truncation).
const std::string k_local_secret = "L0cal-S3cret-7f3a9c";
const std::string k_cloud_secret = "Cl0ud-S3cret-b81e44";
const std::string k_wrong_secret = "Wr0ng-S3cret-5d20e1";

class secrets_test : public gateway_test {
protected:
    void make_password_file(const std::filesystem::path& file, const std::string& user,
                            const std::string& password) {
        auto r =
            run_command({"/usr/bin/mosquitto_passwd", "-c", "-b", file.string(), user, password},
                        tmp_.path(), "passwd", 10s);
        ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    }

    static std::vector<std::string> leaks(const std::string& where, const std::string& text) {
        std::vector<std::string> found;
        for (const auto& s : {k_local_secret, k_cloud_secret, k_wrong_secret}) {
            for (const auto& needle : {s, s.substr(0, 12), s.substr(s.size() - 10)}) {
                if (text.find(needle) != std::string::npos) {
                    found.push_back(where + " contains '" + needle + "'");
                    break;
                }
            }
        }
        return found;
    }
};

TEST_F(secrets_test, PasswordsAppearNowhereTheGatewayWrites) {
    make_password_file(tmp_ / "local.passwd", "gw-local", k_local_secret);
    make_password_file(tmp_ / "cloud.passwd", "gw-cloud", k_cloud_secret);
    mosquitto_options local_opts, cloud_opts;
    local_opts.password_file = tmp_ / "local.passwd";
    cloud_opts.password_file = tmp_ / "cloud.passwd";
    make_brokers(local_opts, cloud_opts);
    start_brokers();

    json cfg = base_config();
    cfg["log_level"] = "trace";  // the most the gateway ever logs
    cfg["local"]["username"] = "gw-local";
    cfg["local"]["password"] = k_local_secret;
    cfg["sinks"]["cloud"]["username"] = "gw-cloud";
    cfg["sinks"]["cloud"]["password"] = k_cloud_secret;
    const std::uint16_t metrics_port = free_port();
    cfg["metrics"] = {{"listen", "127.0.0.1:" + std::to_string(metrics_port)}};
    cfg["status_interval_ms"] = 200;

    std::string everything;  // all output, labelled, for the search at the end
    std::vector<std::string> found;
    auto collect = [&](const std::string& where, const std::string& text) {
        auto f = leaks(where, text);
        found.insert(found.end(), f.begin(), f.end());
        everything += text;
    };

    // --check-config on the good config, and on bad ones that hold the secrets next to errors
    // (and in the wrong place: as the value that is wrong).
    write_file(tmp_ / "good.json", cfg.dump(2));
    auto r = run_gateway_cli({"--check-config", (tmp_ / "good.json").string()}, tmp_.path());
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    collect("--check-config (good)", r.out + r.err);
    json bad = cfg;
    bad["sinks"]["cloud"]["qos"] = 9;
    bad["local"]["password"] = json::array({k_local_secret});
    bad["sinks"]["cloud"]["client_id"] = k_cloud_secret + std::string(300, 'x');
    bad["sinks"]["cloud"]["uri"] = "mqtt://gw-cloud:" + k_wrong_secret + "@127.0.0.1:1";
    write_file(tmp_ / "bad.json", bad.dump(2));
    r = run_gateway_cli({"--check-config", (tmp_ / "bad.json").string()}, tmp_.path());
    EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
    collect("--check-config (bad)", r.out + r.err);
    write_file(tmp_ / "broken.json", "{\"local\": {\"password\": \"" + k_local_secret + "\" ");
    r = run_gateway_cli({"--check-config", (tmp_ / "broken.json").string()}, tmp_.path());
    EXPECT_EQ(r.exit_code, 2);
    collect("--check-config (not JSON)", r.out + r.err);
    write_file(tmp_ / "unterminated.json", "{\"local\": {\"password\": \"" + k_local_secret);
    r = run_gateway_cli({"--check-config", (tmp_ / "unterminated.json").string()}, tmp_.path());
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE((r.out + r.err).find("not valid JSON"), std::string::npos) << r.out << r.err;
    collect("--check-config (unterminated string)", r.out + r.err);

    // Running with the right passwords: data flows (so the brokers did check them).
    start_gateway(cfg);
    ASSERT_TRUE(wait_sink_state("online", 10s)) << gateway_->last_status();
    auto& cloud = connect_cloud_subscriber({"gateways/#"});
    auto& dev = connect_device();
    for (int i = 0; i < 5; ++i) dev.publish("devices/d1/telemetry/t", numbered_payload("d1", i));
    dev.flush();
    ASSERT_TRUE(wait_for_data_count(5, 10s));
    collect("status --json", gateway_->status_json().value_or(json()).dump());
    auto scrape = run_command({"/usr/bin/curl", "-sS", "--max-time", "10",
                               "http://127.0.0.1:" + std::to_string(metrics_port) + "/metrics"},
                              tmp_.path(), "curl", 15s);
    EXPECT_EQ(scrape.exit_code, 0) << scrape.err;
    collect("/metrics", scrape.out);

    // A wrong cloud password: the broker refuses, the gateway logs and shows why.
    cfg["sinks"]["cloud"]["password"] = k_wrong_secret;
    gateway_->set_config(cfg);
    ASSERT_TRUE(gateway_->reload());
    ASSERT_TRUE(gateway_->wait_until(
        [](const json& s) {
            return json_at(s, "sinks/cloud/connected") == false &&
                   json_at(s, "sinks/cloud/last_error").is_string() &&
                   !json_at(s, "sinks/cloud/last_error").get<std::string>().empty();
        },
        15s))
        << gateway_->last_status();
    collect("status --json (refused)", gateway_->status_json().value_or(json()).dump());
    scrape = run_command({"/usr/bin/curl", "-sS", "--max-time", "10",
                          "http://127.0.0.1:" + std::to_string(metrics_port) + "/metrics"},
                         tmp_.path(), "curl2", 15s);
    collect("/metrics (refused)", scrape.out);
    ASSERT_EQ(gateway_->terminate().exit_code, 0);

    for (const auto& m : cloud.messages())
        collect("cloud topic " + m.topic, m.topic + " " + m.payload);
    collect("gateway log", gateway_->full_log());
    // Whatever else the gateway left in its data dir besides the buffer (which holds payloads).
    for (const auto& e : std::filesystem::directory_iterator(gateway_->data_dir())) {
        const auto name = e.path().filename().string();
        if (e.is_regular_file() && name.rfind("buffer.db", 0) != 0)
            collect("data_dir/" + name, read_file(e.path()));
    }

    EXPECT_TRUE(found.empty()) << ::testing::PrintToString(found);
    // The search looked at real output: the log names the refusal.
    EXPECT_NE(everything.find("sinks.cloud.qos"), std::string::npos) << "no --check-config output";
    EXPECT_NE(gateway_->full_log().find("cloud"), std::string::npos);
}

}  // namespace
}  // namespace egw::test
