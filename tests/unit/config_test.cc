// SPDX-License-Identifier: Apache-2.0
#include "gateway/config.h"

#include "gateway/sinks/dir_sink.h"
#include "gateway/sinks/s3_sink.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace egw {
namespace {

// The keys of the acceptance check, exactly as written in the issue (TLS paths aside).
const char* const issue_config = R"({
  "gateway_id": "gw-01",
  "data_dir": "/var/lib/edge-gateway",
  "local": {
    "uri": "tcp://127.0.0.1:1883",
    "client_id": "edge-gateway",
    "subscribe": [ { "filter": "devices/+/telemetry/#", "qos": 1 } ]
  },
  "routes": [ { "from": "devices/+/telemetry/#", "to": ["cloud"] } ],
  "sinks": {
    "cloud": {
      "type": "mqtt",
      "uri": "ssl://cloud.example.com:8883",
      "client_id": "gw-01-uplink",
      "topic": "gateways/{gateway_id}/{topic}",
      "qos": 1,
      "tls": { "ca_file": "/etc/hostname", "cert_file": "/etc/hostname", "key_file": "/etc/hostname" }
    }
  },
  "buffer": { "max_bytes": 1073741824, "when_full": "drop-oldest" }
})";

std::vector<config_problem> problems_of(const std::string& text) {
    try {
        parse_config(text, "test.json");
    } catch (const config_error& e) {
        return e.problems();
    }
    return {};
}

bool has(const std::vector<config_problem>& ps, const std::string& path) {
    return std::any_of(ps.begin(), ps.end(),
                       [&](const config_problem& p) { return p.path == path; });
}

TEST(config, accepts_the_documented_keys) {
    config c = parse_config(issue_config, "test.json");
    EXPECT_EQ(c.gateway_id, "gw-01");
    EXPECT_EQ(c.local.subscribe.at(0).filter, "devices/+/telemetry/#");
    EXPECT_FALSE(c.local.clean_session);
    ASSERT_EQ(c.sinks.count("cloud"), 1u);
    EXPECT_EQ(c.sinks.at("cloud").uri, "ssl://cloud.example.com:8883");
    EXPECT_EQ(c.sinks.at("cloud").mqtt_version, 5);
    EXPECT_EQ(c.buffer.max_bytes, 1073741824u);
    EXPECT_EQ(c.buffer.policy, storage::when_full::drop_oldest);
    EXPECT_EQ(c.buffer.path, "/var/lib/edge-gateway/buffer.db");
    EXPECT_EQ(c.buffer.commit, storage::commit_mode::each);  // the default closes the window
}

TEST(config, buffer_commit_is_each_or_group) {
    std::string text = issue_config;
    text.replace(text.find("\"drop-oldest\""), 13, "\"drop-oldest\", \"commit\": \"group\"");
    EXPECT_EQ(parse_config(text, "test.json").buffer.commit, storage::commit_mode::group);
    text = issue_config;
    text.replace(text.find("\"drop-oldest\""), 13, "\"drop-oldest\", \"commit\": \"batched\"");
    EXPECT_TRUE(has(problems_of(text), "buffer.commit"));
}

TEST(config, unknown_keys_are_errors_with_their_path) {
    std::string text = issue_config;
    text.replace(text.find("\"qos\": 1,"), 9, "\"qos\": 1, \"colour\": 2,");
    auto ps = problems_of(text);
    EXPECT_TRUE(has(ps, "sinks.cloud.colour")) << ps.size();
}

TEST(config, wrong_types_and_ranges_name_the_key) {
    std::string text = issue_config;
    text.replace(text.find("\"qos\": 1,"), 9, "\"qos\": 7,");
    EXPECT_TRUE(has(problems_of(text), "sinks.cloud.qos"));
    text = issue_config;
    text.replace(text.find("\"drop-oldest\""), 13, "\"sometimes\"");
    EXPECT_TRUE(has(problems_of(text), "buffer.when_full"));
}

TEST(config, semantic_checks) {
    std::string text = issue_config;
    text.replace(text.find("\"to\": [\"cloud\"]"), 15, "\"to\": [\"cloud\", \"nowhere\"]");
    EXPECT_TRUE(has(problems_of(text), "routes[0].to[1]"));
    text = issue_config;
    text.replace(text.find("/etc/hostname"), 13, "/nonexistent/ca.pem");
    EXPECT_TRUE(has(problems_of(text), "sinks.cloud.tls.ca_file"));
    text = issue_config;
    text.replace(text.find("{gateway_id}/{topic}"), 20, "{gateway}/{topic}");
    EXPECT_TRUE(has(problems_of(text), "sinks.cloud.topic"));
    text = issue_config;
    text.replace(text.find("ssl://cloud.example.com:8883"), 28, "tcp://cloud.example.com:8883");
    EXPECT_TRUE(has(problems_of(text), "sinks.cloud.uri"));  // tls section on a plain scheme
}

// Found by tests/fuzz/config_fuzz: a number beyond double made nlohmann throw out_of_range,
// which escaped parse_config and aborted --check-config.
TEST(config, number_overflow_is_a_problem_not_a_crash) {
    auto ps = problems_of("{\"gateway_id\": 1e400}");
    ASSERT_EQ(ps.size(), 1u);
    EXPECT_NE(ps[0].message.find("not valid JSON"), std::string::npos);
    EXPECT_NE(ps[0].message.find("number overflow"), std::string::npos);
    EXPECT_EQ(ps[0].message.find("1e400"), std::string::npos);  // the text is not quoted
}

TEST(config, malformed_json_is_one_clear_problem) {
    auto ps = problems_of("{ \"gateway_id\": ");
    ASSERT_EQ(ps.size(), 1u);
    EXPECT_NE(ps[0].message.find("not valid JSON"), std::string::npos);
}

// The issue's s3 and dir sinks with object_key (files that exist for the paths it checks).
std::string with_object_sinks(const std::string& object_key, const std::string& extra = "") {
    std::string text = issue_config;
    const std::string sinks = R"(
    "bucket": {
      "type": "s3", "endpoint": "https://s3.eu-central-1.amazonaws.com", "region": "eu-central-1",
      "bucket": "site-data", "path_style": false,
      "key": "{gateway_id}/{yyyy}/{mm}/{dd}/{first_seq}-{last_seq}.ndjson.gz",
      "object_key": ")" + object_key +
                              R"(",
      "credentials_file": "/etc/hostname",
      "batch": { "max_rows": 10000, "max_bytes": 8388608, "max_delay_ms": 5000 },
      "compression": "gzip", "tls": { "ca_file": "/etc/hostname", "verify": true })" +
                              extra + R"(
    },
    "archive": { "type": "dir", "path": "/var/lib/edge-gateway/archive",
                 "object_key": ")" +
                              object_key + R"(" },)";
    text.insert(text.find("\"cloud\": {"), sinks);
    return text;
}

TEST(config, object_key_as_in_the_contract_on_s3_and_dir) {
    const config c =
        parse_config(with_object_sinks("{gateway_id}/objects/{topic}/{seq}"), "test.json");
    const auto& s3 = static_cast<const s3_options&>(*c.sinks.at("bucket").options);
    EXPECT_EQ(s3.object_key, "{gateway_id}/objects/{topic}/{seq}");
    EXPECT_EQ(s3.part_bytes, 8u << 20);
    const auto& dir = static_cast<const dir_options&>(*c.sinks.at("archive").options);
    EXPECT_EQ(dir.object_key, "{gateway_id}/objects/{topic}/{seq}");
    // A batch's range is no name for an object (a split changes it); {seq} is required.
    EXPECT_TRUE(has(problems_of(with_object_sinks("{gateway_id}/{first_seq}/{seq}")),
                    "sinks.bucket.object_key"));
    EXPECT_TRUE(has(problems_of(with_object_sinks("{gateway_id}/objects/{topic}")),
                    "sinks.archive.object_key"));
    EXPECT_TRUE(has(problems_of(with_object_sinks("{gateway_id}/{what}/{seq}")),
                    "sinks.bucket.object_key"));
    // S3 refuses parts under 5 MiB (but the last).
    EXPECT_TRUE(
        has(problems_of(with_object_sinks("{gateway_id}/o/{seq}", R"(, "part_bytes": 1048576)")),
            "sinks.bucket.part_bytes"));
    const config big = parse_config(
        with_object_sinks("{gateway_id}/o/{seq}", R"(, "part_bytes": 5242880)"), "test.json");
    EXPECT_EQ(static_cast<const s3_options&>(*big.sinks.at("bucket").options).part_bytes, 5242880u);
}

// compression_level: dir defaults to zlib's fastest level (local disk), s3 and http to 6 (a
// link); 1..9 are taken, anything else is one clear problem.
TEST(config, compression_level_defaults_per_type_and_takes_1_to_9) {
    const config c = parse_config(with_object_sinks("{gateway_id}/o/{seq}"), "test.json");
    EXPECT_EQ(static_cast<const batch_options&>(*c.sinks.at("bucket").options).compression_level,
              6);
    EXPECT_EQ(static_cast<const batch_options&>(*c.sinks.at("archive").options).compression_level,
              1);
    const config nine = parse_config(
        with_object_sinks("{gateway_id}/o/{seq}", R"(, "compression_level": 9)"), "test.json");
    EXPECT_EQ(static_cast<const batch_options&>(*nine.sinks.at("bucket").options).compression_level,
              9);
    for (const char* bad : {R"(, "compression_level": 0)", R"(, "compression_level": 10)",
                            R"(, "compression_level": "fast")", R"(, "compression_level": 1.5)"}) {
        EXPECT_TRUE(has(problems_of(with_object_sinks("{gateway_id}/o/{seq}", bad)),
                        "sinks.bucket.compression_level"))
            << bad;
    }
}

// The downlink key exactly as the issue writes it (docs/devices.md, Downlink).
std::string with_downlink(const std::string& downlink, const std::string& extra_route = "") {
    std::string text = issue_config;
    text.insert(text.rfind('}'), ", \"downlink\": " + downlink);
    if (!extra_route.empty()) text.insert(text.find("] } ],") + 4, ", " + extra_route);
    return text;
}

TEST(config, downlink_as_written_in_the_issue) {
    const std::string dl = R"({ "sink": "cloud", "allow": [ { "filter": "devices/+/cmd/#",
        "qos": 1, "max_payload_bytes": 65536 } ] })";
    config c = parse_config(with_downlink(dl), "test.json");
    ASSERT_TRUE(c.downlink);
    EXPECT_EQ(c.downlink->sink, "cloud");
    ASSERT_EQ(c.downlink->allow.size(), 1u);
    EXPECT_EQ(c.downlink->allow[0].filter, "devices/+/cmd/#");
    EXPECT_EQ(c.downlink->allow[0].qos, 1);
    EXPECT_EQ(c.downlink->allow[0].max_payload_bytes, 65536u);
    EXPECT_FALSE(c.downlink->allow[0].retain);
    // The internal local delivery sink, with the local broker's address.
    ASSERT_TRUE(c.sinks.count("!downlink"));
    EXPECT_EQ(c.sinks.at("!downlink").uri, "tcp://127.0.0.1:1883");

    // sink left out: the only mqtt sink.
    c = parse_config(with_downlink(R"({"allow": []})"), "test.json");
    EXPECT_EQ(c.downlink->sink, "cloud");
    // Without downlink: nothing.
    c = parse_config(issue_config, "test.json");
    EXPECT_FALSE(c.downlink);
    EXPECT_FALSE(c.sinks.count("!downlink"));
}

TEST(config, downlink_problems_name_the_key) {
    EXPECT_TRUE(has(problems_of(with_downlink(R"({"sink": "nowhere"})")), "downlink.sink"));
    EXPECT_TRUE(has(problems_of(with_downlink(R"({"allow": [{"filter": "a/#/b"}]})")),
                    "downlink.allow[0].filter"));
    EXPECT_TRUE(has(problems_of(with_downlink(R"({"allow": [{"filter": "a", "qos": 3}]})")),
                    "downlink.allow[0].qos"));
    EXPECT_TRUE(has(problems_of(with_downlink(R"({"allow": [{"filter": "a", "bogus": 1}]})")),
                    "downlink.allow[0].bogus"));
    // A route whose uplink lands in down/ or the task topics is refused, with downlink only.
    const std::string loop = R"({ "from": "down/#", "to": ["cloud"] })";
    EXPECT_TRUE(has(problems_of(with_downlink("{}", loop)), "routes[1].from"));
    const std::string tasks = R"({ "from": "tasks/+", "to": ["cloud"] })";
    EXPECT_TRUE(has(problems_of(with_downlink("{}", tasks)), "routes[1].from"));
    const std::string state = R"({ "from": "tasks/+/state", "to": ["cloud"] })";
    EXPECT_TRUE(problems_of(with_downlink("{}", state)).empty());
    std::string no_downlink = issue_config;
    no_downlink.insert(no_downlink.find("] } ],") + 4, ", " + loop);
    EXPECT_TRUE(problems_of(no_downlink).empty());
}

}  // namespace
}  // namespace egw
