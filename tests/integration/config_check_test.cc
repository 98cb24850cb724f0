// SPDX-License-Identifier: Apache-2.0
//
// Config validation: `--check-config` names the key path of each problem and exits 2, or prints
// `FILE: ok` and exits 0; running the daemon with a bad config exits 2 with a clear message.
// No brokers needed: a config is judged before anything connects.

#include <gtest/gtest.h>

#include <functional>

#include "integration/gateway_test_fixture.h"

namespace egw::test {
namespace {

// A valid config with addresses that are never contacted.
json good_config(const temp_dir& tmp) {
    return {
        {"gateway_id", "gw-cfg"},
        {"data_dir", (tmp / "data").string()},
        {"log_level", "info"},
        {"local",
         {{"uri", "tcp://127.0.0.1:1"},
          {"client_id", "egw-cfg-local"},
          {"subscribe", json::array({{{"filter", "devices/+/telemetry/#"}, {"qos", 1}}})}}},
        {"routes", json::array({{{"from", "devices/+/telemetry/#"}, {"to", {"cloud"}}}})},
        {"sinks",
         {{"cloud",
           {{"type", "mqtt"},
            {"uri", "tcp://127.0.0.1:2"},
            {"client_id", "egw-cfg-uplink"},
            {"topic", "gateways/{gateway_id}/{topic}"},
            {"qos", 1}}}}},
        {"buffer", {{"max_bytes", 1048576}, {"when_full", "drop-oldest"}}},
    };
}

struct bad_config_case {
    std::string name;
    std::function<void(json&)> mutate;
    std::string expected_key_path;  // must appear in the error output
};

std::ostream& operator<<(std::ostream& os, const bad_config_case& c) { return os << c.name; }

class config_check_test : public ::testing::TestWithParam<bad_config_case> {
protected:
    std::filesystem::path write_config(const json& cfg) {
        const auto file = tmp_ / "gateway.json";
        write_file(file, cfg.dump(2));
        return file;
    }

    temp_dir tmp_{"egw-cfg"};
};

TEST_P(config_check_test, CheckConfigNamesKeyPathAndExits2) {
    json cfg = good_config(tmp_);
    GetParam().mutate(cfg);
    const auto file = write_config(cfg);
    const auto r = run_gateway_cli({"--check-config", file.string()}, tmp_.path());
    EXPECT_EQ(r.exit_code, 2) << "stdout: " << r.out << "\nstderr: " << r.err;
    EXPECT_NE(r.err.find(GetParam().expected_key_path), std::string::npos)
        << "expected key path '" << GetParam().expected_key_path << "' in stderr; got:\n"
        << r.err;
}

TEST_P(config_check_test, DaemonRefusesToStartWithExit2) {
    json cfg = good_config(tmp_);
    GetParam().mutate(cfg);
    const auto file = write_config(cfg);
    const auto r = run_gateway_cli({"--config", file.string()}, tmp_.path(), 10s);
    EXPECT_EQ(r.exit_code, 2) << "stdout: " << r.out << "\nstderr: " << r.err;
    EXPECT_NE(r.err.find(GetParam().expected_key_path), std::string::npos)
        << "expected a clear message naming '" << GetParam().expected_key_path << "'; got:\n"
        << r.err;
}

INSTANTIATE_TEST_SUITE_P(
    BadConfigs, config_check_test,
    ::testing::Values(
        bad_config_case{"UnknownTopLevelKey", [](json& c) { c["bogus_key"] = 1; }, "bogus_key"},
        bad_config_case{"UnknownSinkKey", [](json& c) { c["sinks"]["cloud"]["qoss"] = 1; },
                        "sinks.cloud.qoss"},
        bad_config_case{"QosWrongType", [](json& c) { c["sinks"]["cloud"]["qos"] = "one"; },
                        "sinks.cloud.qos"},
        bad_config_case{"QosOutOfRange", [](json& c) { c["sinks"]["cloud"]["qos"] = 2; },
                        "sinks.cloud.qos"},
        bad_config_case{"KeepaliveWrongType", [](json& c) { c["local"]["keepalive_s"] = "thirty"; },
                        "local.keepalive_s"},
        bad_config_case{"RouteToMissingSink",
                        [](json& c) {
                            c["routes"][0]["to"] = {"cloud", "nowhere"};
                        },
                        "routes[0].to[1]"},
        bad_config_case{"SinkUriBadScheme",
                        [](json& c) { c["sinks"]["cloud"]["uri"] = "http://127.0.0.1:2"; },
                        "sinks.cloud.uri"},
        bad_config_case{"LocalUriBadScheme",
                        [](json& c) { c["local"]["uri"] = "ftp://127.0.0.1:1"; }, "local.uri"},
        bad_config_case{"MissingGatewayId", [](json& c) { c.erase("gateway_id"); }, "gateway_id"},
        bad_config_case{"InvalidGatewayId", [](json& c) { c["gateway_id"] = "bad id/#"; },
                        "gateway_id"},
        bad_config_case{"EmptySubscribe", [](json& c) { c["local"]["subscribe"] = json::array(); },
                        "local.subscribe"},
        bad_config_case{"BadWhenFull", [](json& c) { c["buffer"]["when_full"] = "drop-random"; },
                        "buffer.when_full"},
        bad_config_case{"BadMqttVersion", [](json& c) { c["sinks"]["cloud"]["mqtt_version"] = 4; },
                        "sinks.cloud.mqtt_version"}),
    [](const ::testing::TestParamInfo<bad_config_case>& param_info) {
        return param_info.param.name;
    });

class config_file_test : public ::testing::Test {
protected:
    temp_dir tmp_{"egw-cfg"};
};

TEST_F(config_file_test, GoodConfigPrintsOkAndExits0) {
    const auto file = tmp_ / "gateway.json";
    write_file(file, good_config(tmp_).dump(2));
    const auto r = run_gateway_cli({"--check-config", file.string()}, tmp_.path());
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE((r.out + r.err).find(file.string() + ": ok"), std::string::npos)
        << "stdout: " << r.out << "\nstderr: " << r.err;
}

TEST_F(config_file_test, FullSpecExampleShapeIsAccepted) {
    json cfg = good_config(tmp_);
    cfg["status_interval_ms"] = 1000;
    cfg["local"]["username"] = "";
    cfg["local"]["password"] = "";
    cfg["local"]["keepalive_s"] = 30;
    cfg["local"]["clean_session"] = false;
    cfg["local"]["max_payload_bytes"] = 1048576;
    cfg["sinks"]["cloud"]["mqtt_version"] = 5;
    cfg["sinks"]["cloud"]["inflight"] = 256;
    cfg["sinks"]["cloud"]["batch"] = 512;
    cfg["sinks"]["cloud"]["keepalive_s"] = 30;
    cfg["sinks"]["cloud"]["backoff"] = {{"initial_ms", 500}, {"max_ms", 30000}};
    cfg["buffer"]["synchronous"] = "full";
    const auto file = tmp_ / "gateway.json";
    write_file(file, cfg.dump(2));
    const auto r = run_gateway_cli({"--check-config", file.string()}, tmp_.path());
    EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(config_file_test, MalformedJsonExits2WithMessage) {
    const auto file = tmp_ / "gateway.json";
    write_file(file, R"({"gateway_id": "gw", "data_dir": )");
    const auto r = run_gateway_cli({"--check-config", file.string()}, tmp_.path());
    EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
    EXPECT_FALSE(r.err.empty()) << "malformed JSON must be explained on stderr";

    const auto run = run_gateway_cli({"--config", file.string()}, tmp_.path());
    EXPECT_EQ(run.exit_code, 2) << run.out << run.err;
    EXPECT_FALSE(run.err.empty());
}

TEST_F(config_file_test, MissingConfigFileExits2) {
    const auto file = tmp_ / "does-not-exist.json";
    const auto r = run_gateway_cli({"--check-config", file.string()}, tmp_.path());
    EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
    const auto run = run_gateway_cli({"--config", file.string()}, tmp_.path());
    EXPECT_EQ(run.exit_code, 2) << run.out << run.err;
    EXPECT_NE(run.err.find("does-not-exist.json"), std::string::npos) << run.err;
}

TEST_F(config_file_test, StatusExits1WhenGatewayNotRunning) {
    const auto file = tmp_ / "gateway.json";
    write_file(file, good_config(tmp_).dump(2));
    std::filesystem::create_directories(tmp_ / "data");
    const auto r = run_gateway_cli({"status", "--config", file.string(), "--json"}, tmp_.path());
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
}

TEST_F(config_file_test, VersionAndHelpExit0) {
    const auto v = run_gateway_cli({"--version"}, tmp_.path());
    EXPECT_EQ(v.exit_code, 0) << v.err;
    EXPECT_FALSE((v.out + v.err).empty());
    const auto h = run_gateway_cli({"--help"}, tmp_.path());
    EXPECT_EQ(h.exit_code, 0) << h.err;
    EXPECT_NE((h.out + h.err).find("--check-config"), std::string::npos) << h.out;
}

}  // namespace
}  // namespace egw::test
