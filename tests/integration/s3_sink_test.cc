// SPDX-License-Identifier: Apache-2.0
//
// The `s3` sink against a real S3 stand-in that checks SigV4 signatures (s3rver 4.0.4 behind a
// front that refuses unsigned requests, tests/s3/server.js), verified with an independent client
// (rclone): every row in exactly one object, under keys named by the range; a wrong secret is a
// 403 and state "error" until the credentials file is fixed and reloaded; secrets never appear in
// the log or in status. Skipped with a message when tests/s3/node_modules is not installed.

#include <zlib.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "integration/s3_fixture.h"

namespace egw::test {
namespace {

class s3_sink_test : public s3_test {};

// Binary payloads that carry their index after a magic number, so that a stored object can be
// matched to what was published: JPEG (FF D8 FF), PNG (its 8-byte signature) or neither. Each is
// invalid UTF-8 (0xFF / 0xFE bytes), so it goes to an object of its own.
std::string binary_payload(int kind, size_t i, size_t size = 3000) {
    std::string p = kind == 0   ? std::string("\xFF\xD8\xFF\xE0", 4)
                    : kind == 1 ? std::string("\x89PNG\r\n\x1A\n", 8)
                                : std::string("\0\xFE\x01", 3);
    p += "#" + std::to_string(i) + "#";
    uint32_t x = static_cast<uint32_t>(i) * 2654435761u + 1;
    while (p.size() < size) {
        x = x * 1664525u + 1013904223u;
        p += static_cast<char>(x >> 24);
    }
    return p;
}

const char* content_type_of_kind(int kind) {
    return kind == 0 ? "image/jpeg" : kind == 1 ? "image/png" : "application/octet-stream";
}

TEST_F(s3_sink_test, BatchesLandAsSignedObjectsEachRowOnceAsRcloneSeesIt) {
    start_s3();
    const fs::path creds = tmp_.path() / "s3.credentials";
    write(creds, "[default]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n");
    start_brokers();
    auto& gw = start_gateway(s3_config(creds));
    auto& dev = connect_device();
    publish_n(dev, "s1", 1000);
    ASSERT_TRUE(wait_drained(60s)) << gw.last_status();
    expect_each_once("s1", 1000);
    const std::string requests = slurp(s3_dir() / "requests.log");
    // Trap: libcurl 7.88 does not add x-amz-content-sha256; every PUT must carry it.
    std::istringstream lines(requests);
    std::string line;
    size_t puts = 0;
    while (std::getline(lines, line)) {
        if (line.rfind("PUT ", 0) != 0) continue;
        ++puts;
        EXPECT_NE(line.find(" signed "), std::string::npos) << line;
        EXPECT_EQ(line.find(" - "), std::string::npos) << "no x-amz-content-sha256: " << line;
        EXPECT_EQ(line.substr(line.size() - 64).find_first_not_of("0123456789abcdef"),
                  std::string::npos)
            << line;
    }
    EXPECT_GE(puts, 10u);
    auto s = gw.status_json();
    ASSERT_TRUE(s);
    EXPECT_EQ(json_at(*s, "sinks/bucket/state"), "online");
    EXPECT_EQ(s->dump().find("S3RVER"), std::string::npos) << "a secret in status";
    EXPECT_EQ(gw.full_log().find("S3RVER"), std::string::npos) << "a secret in the log";
}

TEST_F(s3_sink_test, UnsignedRequestsAreRefusedByTheStandIn) {
    start_s3();
    const std::string cmd = "curl -s -o /dev/null -w '%{http_code}' -X PUT --data x " + endpoint() +
                            "/" + k_bucket + "/anonymous > " + (tmp_.path() / "code").string();
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    EXPECT_EQ(slurp(tmp_.path() / "code"), "403");
}

TEST_F(s3_sink_test, AWrongSecretIsA403ErrorUntilTheFileIsFixedAndReloaded) {
    start_s3();
    const fs::path creds = tmp_.path() / "s3.credentials";
    write(creds, "[default]\naws_access_key_id = S3RVER\naws_secret_access_key = n0t-the-secret\n");
    start_brokers();
    auto& gw = start_gateway(s3_config(creds));
    auto& dev = connect_device();
    publish_n(dev, "s2", 300);
    ASSERT_TRUE(wait_sink_state("error", 30s, "bucket")) << gw.last_status();
    const std::string err = json_at(*gw.status_json(), "sinks/bucket/last_error");
    EXPECT_NE(err.find("403"), std::string::npos) << err;
    EXPECT_TRUE(list_bucket().empty());
    write(creds, "[default]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n");
    ASSERT_TRUE(gw.reload());
    ASSERT_TRUE(wait_drained(30s)) << gw.last_status();
    expect_each_once("s2", 300);
    EXPECT_EQ(gw.full_log().find("n0t-the-secret"), std::string::npos);
}

TEST_F(s3_sink_test, TheS3StandInDownDuringABacklogThenBack) {
    start_s3();
    const int port = port_;
    const fs::path creds = tmp_.path() / "s3.credentials";
    write(creds, "[default]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n");
    start_brokers();
    auto& gw = start_gateway(s3_config(creds));
    server_.kill_and_reap();
    auto& dev = connect_device();
    publish_n(dev, "s3", 800);
    ASSERT_TRUE(wait_sink_state("offline", 20s, "bucket")) << gw.last_status();
    start_s3(port);
    ASSERT_TRUE(wait_drained(60s)) << gw.last_status();
    expect_each_once("s3", 800);
}

TEST_F(s3_sink_test, BinaryRowsBecomeObjectsStoredBeforeTheirBatchAndARetryKeepsTheirKeys) {
    start_s3();
    const fs::path creds = tmp_.path() / "s3.credentials";
    write(creds, "[default]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n");
    // The first two batch PUTs fail: the retries store the objects again, under the same keys.
    set_faults(json::array(
        {{{"method", "PUT"}, {"match", R"(\.ndjson\.gz$)"}, {"status", 500}, {"count", 2}}}));
    start_brokers();
    json c = s3_config(creds);
    c["sinks"]["bucket"]["object_key"] = "{gateway_id}/objects/{topic}/{seq}";
    auto& gw = start_gateway(c);
    auto& dev = connect_device();
    // Topics with a space and a colon: keys outside [A-Za-z0-9/._-] are percent-encoded.
    const std::string topics[3] = {"devices/cam 1/telemetry/frame", "devices/cam2/telemetry/img:x",
                                   "devices/raw/telemetry/blob"};
    std::map<std::string, int> binaries;  // payload -> kind
    std::set<std::string> texts;
    for (size_t i = 0; i < 60; ++i) {
        if (i % 4 == 3) {
            const std::string text = json({{"n", i}}).dump();
            texts.insert(text);
            dev.publish("devices/s1/telemetry/t", text);
            continue;
        }
        const int kind = static_cast<int>(i % 4);
        const std::string p = binary_payload(kind, i);
        binaries[p] = kind;
        dev.publish(topics[kind], p);
    }
    dev.flush(30s);
    ASSERT_TRUE(wait_drained(60s)) << gw.last_status();

    const auto bucket = list_bucket();  // rclone: decoded key -> bytes
    const std::regex batch_name(R"(gw-it/\d{4}/\d{2}/\d{2}/(\d{20})-(\d{20})\.ndjson\.gz)");
    std::map<std::string, int> object_lines;  // object key -> pointer lines naming it
    std::map<std::string, int> payload_seen;
    size_t inline_rows = 0, batches = 0;
    for (const auto& [key, bytes] : bucket) {
        if (!std::regex_match(key, batch_name)) continue;
        ++batches;
        std::istringstream lines(gunzip(bytes));
        for (std::string line; std::getline(lines, line);) {
            const json j = json::parse(line);
            if (j.contains("payload")) {
                ++inline_rows;
                EXPECT_EQ(texts.count(j["payload"].dump()), 1u) << line;
                continue;
            }
            ASSERT_TRUE(j.contains("object")) << line;
            EXPECT_FALSE(j.contains("payload_b64")) << line;
            const std::string object = j["object"];
            const std::string expected_key =
                std::string("gw-it/objects/") + j["topic"].get<std::string>() + "/" +
                std::string(20 - std::to_string(j["seq"].get<uint64_t>()).size(), '0') +
                std::to_string(j["seq"].get<uint64_t>());
            EXPECT_EQ(object, expected_key);
            ++object_lines[object];
            ASSERT_EQ(bucket.count(object), 1u) << "no object " << object;
            const std::string& body = bucket.at(object);
            ASSERT_EQ(binaries.count(body), 1u) << object << " holds other bytes";
            ++payload_seen[body];
            EXPECT_EQ(j["content_type"], content_type_of_kind(binaries.at(body))) << line;
            EXPECT_EQ(j["bytes"], body.size());
        }
    }
    EXPECT_GE(batches, 1u);
    EXPECT_EQ(inline_rows, texts.size());
    EXPECT_EQ(payload_seen.size(), binaries.size()) << "every binary row once";
    for (const auto& [p, n] : payload_seen) EXPECT_EQ(n, 1);
    // Nothing but the batches and one object per binary row.
    EXPECT_EQ(bucket.size(), batches + binaries.size());

    // An independent signer (curl --aws-sigv4) sees each kind's content type and bytes.
    for (const auto& [object, n] : object_lines) EXPECT_EQ(n, 1) << object;
    const std::string encoded[3] = {"devices/cam%201/telemetry/frame",
                                    "devices/cam2/telemetry/img%3Ax", "devices/raw/telemetry/blob"};
    for (int kind = 0; kind < 3; ++kind) {
        const auto it = std::find_if(object_lines.begin(), object_lines.end(), [&](const auto& o) {
            return o.first.find(topics[kind]) != std::string::npos;
        });
        ASSERT_NE(it, object_lines.end());
        const std::string seq = it->first.substr(it->first.size() - 20);
        const auto f = curl_get("gw-it/objects/" + encoded[kind] + "/" + seq);
        EXPECT_EQ(f.status, 200) << f.body;
        EXPECT_EQ(f.body, bucket.at(it->first));
        EXPECT_NE(f.headers.find(std::string("Content-Type: ") + content_type_of_kind(kind)),
                  std::string::npos)
            << f.headers;
    }

    // Each object went up before the batch naming it, and every attempt used the same key.
    const std::regex object_put(R"(PUT /site-data/gw-it/objects/\S+/(\d{20}) signed .*)");
    const std::regex batch_put(
        R"(PUT /site-data/gw-it/\S+/(\d{20})-(\d{20})\.ndjson\.gz signed \S+( .*)?)");
    std::map<uint64_t, std::set<std::string>> keys_of_seq;
    std::map<uint64_t, size_t> first_put_of_seq;
    size_t failed_batches = 0;
    const auto log = requests();
    for (size_t n = 0; n < log.size(); ++n) {
        std::smatch m;
        if (std::regex_match(log[n], m, object_put)) {
            const uint64_t seq = std::stoull(m[1]);
            keys_of_seq[seq].insert(log[n].substr(0, log[n].find(" signed")));
            first_put_of_seq.emplace(seq, n);
        } else if (std::regex_match(log[n], m, batch_put)) {
            if (m[3].matched) ++failed_batches;
            for (uint64_t seq = std::stoull(m[1]); seq <= std::stoull(m[2]); ++seq) {
                if (first_put_of_seq.count(seq)) {
                    EXPECT_LT(first_put_of_seq[seq], n) << "seq " << seq;
                }
            }
        }
    }
    EXPECT_EQ(failed_batches, 2u);
    EXPECT_EQ(keys_of_seq.size(), binaries.size());
    size_t retried = 0;
    for (const auto& [seq, keys] : keys_of_seq) EXPECT_EQ(keys.size(), 1u) << "seq " << seq;
    for (const auto& l : log) {
        if (std::regex_match(l, object_put)) ++retried;
    }
    EXPECT_GT(retried, binaries.size()) << "the failed batches' objects went up again";
    auto st = gw.status_json();
    ASSERT_TRUE(st);
    EXPECT_EQ(json_at(*st, "sinks/bucket/rows_uploaded"), 60);
}

}  // namespace
}  // namespace egw::test
