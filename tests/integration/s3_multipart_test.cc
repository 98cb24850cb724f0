// SPDX-License-Identifier: Apache-2.0
//
// Large objects through the s3 sink's multipart upload, against the SigV4-checking stand-in
// (s3rver behind tests/s3/server.js, whose front adds what s3rver lacks: AbortMultipartUpload,
// NoSuchUpload, S3's 5 MiB part minimum, and faults on demand). The bucket is read back with
// independent clients (curl --aws-sigv4 for one object, rclone for the listing):
// - kill -9 of the gateway in the middle of a multipart upload: the restarted gateway resumes it
//   from its recorded upload id and parts (the stand-in sees no part twice but the one in flight)
//   and the object is byte-identical;
// - an upload the service forgot (NoSuchUpload) starts over; an upload abandoned by a config
//   change is aborted;
// - 5 MB payloads from the local broker to the bucket, as objects of their own.

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "integration/s3_fixture.h"

namespace egw::test {
namespace {

constexpr uint64_t k_part = 5 * 1024 * 1024;  // the smallest part S3 takes

// `size` bytes of invalid UTF-8 (so it becomes an object of its own) that differ for each seed.
std::string big_binary(size_t size, uint32_t seed) {
    std::string p("\xFF\xD8\xFF\xE0", 4);
    p.reserve(size);
    uint32_t x = seed * 2654435761u + 1;
    while (p.size() < size) {
        x = x * 1664525u + 1013904223u;
        p += static_cast<char>(x >> 24);
    }
    return p;
}

// One request of the stand-in's log, parsed.
struct logged {
    std::string method, path, upload_id, note;
    int part = 0;
    bool create = false;
};

std::vector<logged> parse_log(const std::vector<std::string>& lines) {
    std::vector<logged> out;
    const std::regex re(R"((\S+) (\S+) signed \S+( (.*))?)");
    for (const auto& l : lines) {
        std::smatch m;
        if (!std::regex_match(l, m, re)) continue;
        logged r;
        r.method = m[1];
        const std::string url = m[2];
        r.path = url.substr(0, url.find('?'));
        r.note = m[4];
        std::smatch q;
        static const std::regex id(R"([?&]uploadId=([^&]+))"), part(R"([?&]partNumber=(\d+))");
        if (std::regex_search(url, q, id)) r.upload_id = q[1];
        if (std::regex_search(url, q, part)) r.part = std::stoi(q[1]);
        r.create = url.find("?uploads") != std::string::npos;
        out.push_back(r);
    }
    return out;
}

class s3_multipart_test : public s3_test {
protected:
    json big_config(const fs::path& creds, uint64_t part_bytes = k_part) {
        json c = s3_config(creds);
        c["sinks"]["bucket"]["object_key"] = "{gateway_id}/objects/{topic}/{seq}";
        c["sinks"]["bucket"]["part_bytes"] = part_bytes;
        c["local"]["max_payload_bytes"] = 32 * 1024 * 1024;
        c["buffer"]["max_bytes"] = 256 * 1024 * 1024;
        return c;
    }

    fs::path creds() {
        const fs::path p = tmp_.path() / "s3.credentials";
        write(p, "[default]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n");
        return p;
    }

    // The single object under gw-it/objects/ as the stand-in logs it (encoded path).
    std::string object_path(const std::vector<logged>& log) {
        for (const auto& r : log) {
            if (r.path.find("/gw-it/objects/") != std::string::npos) return r.path;
        }
        return {};
    }

    // Big payloads take a while to reach the buffer: wait for the rows themselves.
    bool wait_uploaded(int64_t rows, std::chrono::milliseconds timeout) {
        return gateway_
            ->wait_until(
                [&](const json& s) {
                    return json_int(s, "sinks/bucket/rows_uploaded") >= rows &&
                           json_at(s, "sinks/bucket/batch_in_flight").is_null();
                },
                timeout)
            .has_value();
    }

    bool wait_log(const std::function<bool(const std::vector<logged>&)>& pred,
                  std::chrono::milliseconds timeout) {
        return poll_until([&] { return pred(parse_log(requests())); }, timeout, 50ms);
    }

    // The object through curl --aws-sigv4, and through rclone's listing, equal `expected`.
    void expect_object(const std::string& path, const std::string& expected) {
        const std::string prefix = std::string("/") + k_bucket + "/";
        ASSERT_EQ(path.rfind(prefix, 0), 0u) << path;
        const auto f = curl_get(path.substr(prefix.size()));
        EXPECT_EQ(f.status, 200) << f.headers;
        EXPECT_EQ(f.body.size(), expected.size());
        EXPECT_TRUE(f.body == expected) << "curl --aws-sigv4: the object differs";
        EXPECT_NE(f.headers.find("Content-Type: image/jpeg"), std::string::npos) << f.headers;
        size_t matches = 0;
        for (const auto& [key, bytes] : list_bucket()) {
            if (key.find("/objects/") != std::string::npos && bytes == expected) ++matches;
        }
        EXPECT_EQ(matches, 1u) << "rclone: the object once";
    }
};

TEST_F(s3_multipart_test, Kill9InTheMiddleOfAMultipartUploadResumesWithoutResendingParts) {
    start_s3();
    const auto c = creds();
    // Part 3 of 4 is never answered: the gateway has recorded parts 1 and 2 when it is killed.
    set_faults(json::array(
        {{{"method", "PUT"}, {"match", "partNumber=3&"}, {"hold", true}, {"count", 1}}}));
    start_brokers();
    const json cfg = big_config(c);
    auto& gw = start_gateway(cfg);
    auto& dev = connect_device();
    const std::string frame = big_binary(3 * k_part + 1234567, 1);
    dev.publish("devices/cam1/telemetry/frame", frame);
    dev.flush(30s);
    ASSERT_TRUE(wait_log(
        [](const std::vector<logged>& log) {
            for (const auto& r : log)
                if (r.part == 3 && r.note == "held") return true;
            return false;
        },
        60s))
        << gw.last_status();
    gw.kill9();
    set_faults(json::array());
    auto& again = start_gateway(cfg);
    ASSERT_TRUE(wait_uploaded(1, 60s)) << again.last_status();

    const auto log = parse_log(requests());
    std::map<int, int> part_puts;
    std::set<std::string> ids;
    int creates = 0, completes = 0;
    for (const auto& r : log) {
        if (r.path.find("/objects/") == std::string::npos) continue;
        if (r.create) ++creates;
        if (r.part > 0) {
            ++part_puts[r.part];
            ids.insert(r.upload_id);
        }
        if (r.method == "POST" && !r.upload_id.empty()) ++completes;
    }
    EXPECT_EQ(creates, 1) << "the upload resumed; it did not start over";
    EXPECT_EQ(ids.size(), 1u) << "one upload id throughout";
    EXPECT_EQ(part_puts[1], 1) << "part 1 not sent again";
    EXPECT_EQ(part_puts[2], 1) << "part 2 not sent again";
    EXPECT_EQ(part_puts[3], 2) << "part 3: the held request, then once more";
    EXPECT_EQ(part_puts[4], 1);
    EXPECT_EQ(completes, 1);
    auto s = again.status_json();
    ASSERT_TRUE(s);
    EXPECT_EQ(json_at(*s, "sinks/bucket/parts_resumed"), 2);
    EXPECT_EQ(json_at(*s, "sinks/bucket/parts_uploaded"), 2);
    EXPECT_TRUE(again.log_since_start().find("resuming the multipart upload") != std::string::npos);
    expect_object(object_path(log), frame);
}

TEST_F(s3_multipart_test, AnUploadTheServiceForgotStartsOver) {
    start_s3();
    const auto c = creds();
    set_faults(json::array({{{"method", "PUT"},
                             {"match", "partNumber=2&"},
                             {"status", 404},
                             {"code", "NoSuchUpload"},
                             {"count", 1}}}));
    start_brokers();
    auto& gw = start_gateway(big_config(c));
    auto& dev = connect_device();
    const std::string frame = big_binary(2 * k_part + 100, 2);
    dev.publish("devices/cam1/telemetry/frame", frame);
    dev.flush(30s);
    ASSERT_TRUE(wait_uploaded(1, 60s)) << gw.last_status();
    const auto log = parse_log(requests());
    int creates = 0;
    for (const auto& r : log) creates += r.create ? 1 : 0;
    EXPECT_EQ(creates, 2) << "a fresh upload after NoSuchUpload";
    auto s = gw.status_json();
    ASSERT_TRUE(s);
    EXPECT_EQ(json_at(*s, "sinks/bucket/multipart_restarted"), 1);
    expect_object(object_path(log), frame);
}

TEST_F(s3_multipart_test, AnAbandonedUploadIsAbortedBeforeTheNextOne) {
    start_s3();
    const auto c = creds();
    set_faults(json::array(
        {{{"method", "PUT"}, {"match", "partNumber=2&"}, {"hold", true}, {"count", 1}}}));
    start_brokers();
    auto& gw = start_gateway(big_config(c));
    auto& dev = connect_device();
    const std::string frame = big_binary(2 * k_part + 100, 3);
    dev.publish("devices/cam1/telemetry/frame", frame);
    dev.flush(30s);
    ASSERT_TRUE(wait_log(
        [](const std::vector<logged>& log) {
            for (const auto& r : log)
                if (r.part == 2 && r.note == "held") return true;
            return false;
        },
        60s))
        << gw.last_status();
    gw.kill9();
    std::string first_id;
    for (const auto& r : parse_log(requests()))
        if (r.part == 1) first_id = r.upload_id;
    ASSERT_FALSE(first_id.empty());
    set_faults(json::array());
    // Other parts now: the recorded upload cannot resume and is abandoned.
    auto& again = start_gateway(big_config(c, k_part + 4096));
    ASSERT_TRUE(wait_uploaded(1, 60s)) << again.last_status();
    const auto log = parse_log(requests());
    bool aborted = false;
    size_t abort_at = 0, second_create_at = 0;
    int creates = 0;
    for (size_t n = 0; n < log.size(); ++n) {
        if (log[n].method == "DELETE" && log[n].upload_id == first_id) {
            aborted = true;
            abort_at = n;
        }
        if (log[n].create && ++creates == 2) second_create_at = n;
    }
    EXPECT_TRUE(aborted) << "AbortMultipartUpload of " << first_id;
    EXPECT_EQ(creates, 2);
    EXPECT_LT(abort_at, second_create_at);
    auto s = again.status_json();
    ASSERT_TRUE(s);
    EXPECT_EQ(json_at(*s, "sinks/bucket/multipart_aborted"), 1);
    expect_object(object_path(log), frame);
}

TEST_F(s3_multipart_test, FiveMegabytePayloadsFromTheLocalBrokerToTheBucket) {
    start_s3();
    const auto c = creds();
    start_brokers();
    auto& gw = start_gateway(big_config(c));
    auto& dev = connect_device();
    // 5 MB: one PUT (below the 5 MiB part size); 5 MiB + 1: a multipart upload of two parts.
    const std::string a = big_binary(5'000'000, 4), b = big_binary(k_part + 1, 5);
    dev.publish("devices/cam1/telemetry/frame", a);
    dev.publish("devices/cam1/telemetry/frame", b);
    dev.publish("devices/s1/telemetry/t", R"({"after":"frames"})");
    dev.flush(30s);
    ASSERT_TRUE(wait_uploaded(3, 60s)) << gw.last_status();
    const auto log = parse_log(requests());
    std::vector<std::string> paths;
    int parts = 0;
    for (const auto& r : log) {
        if (r.path.find("/objects/") == std::string::npos) continue;
        if (paths.empty() || paths.back() != r.path) paths.push_back(r.path);
        if (r.part > 0) ++parts;
    }
    ASSERT_EQ(paths.size(), 2u);
    EXPECT_EQ(parts, 2);
    expect_object(paths[0], a);
    expect_object(paths[1], b);
    auto s = gw.status_json();
    ASSERT_TRUE(s);
    EXPECT_EQ(json_at(*s, "sinks/bucket/rows_uploaded"), 3);
    EXPECT_EQ(json_at(*s, "sinks/bucket/objects_uploaded"), 2);
    // For the record, not a bound (tests/bench/ holds those): the gateway's peak RSS.
    std::ifstream proc("/proc/" + std::to_string(json_int(*s, "pid")) + "/status");
    for (std::string line; std::getline(proc, line);) {
        if (line.rfind("VmHWM:", 0) == 0) std::cout << "gateway peak RSS " << line << "\n";
    }
}

TEST_F(s3_multipart_test, ABatchObjectLargerThanAPartGoesUpInParts) {
    start_s3();
    const auto c = creds();
    start_brokers();
    json cfg = big_config(c);
    cfg["sinks"]["bucket"]["compression"] = "none";
    cfg["sinks"]["bucket"]["batch"] = {
        {"max_rows", 100}, {"max_bytes", 16 << 20}, {"max_delay_ms", 1000}};
    auto& gw = start_gateway(cfg);
    auto& dev = connect_device();
    // 60 text rows of 100 kB: one batch of about 6 MB of NDJSON, two parts.
    for (size_t i = 0; i < 60; ++i) {
        dev.publish("devices/s1/telemetry/t", numbered_payload("s1", i, 100'000));
    }
    dev.flush(30s);
    ASSERT_TRUE(wait_uploaded(60, 60s)) << gw.last_status();
    int parts = 0;
    for (const auto& r : parse_log(requests())) {
        if (r.part > 0 && r.path.find(".ndjson") != std::string::npos) ++parts;
    }
    EXPECT_GE(parts, 2);
    std::set<std::string> seen;
    for (const auto& [key, bytes] : list_bucket()) {
        std::istringstream lines(bytes);
        for (std::string line; std::getline(lines, line);) {
            seen.insert(json::parse(line)["payload"].get<std::string>());
        }
    }
    EXPECT_EQ(seen.size(), 60u);
    for (size_t i = 0; i < 60; ++i) EXPECT_EQ(seen.count(numbered_payload("s1", i, 100'000)), 1u);
}

TEST_F(s3_multipart_test, MaxBytesPerSecondCapsTheTransferOfALargeObject) {
    start_s3();
    const auto c = creds();
    start_brokers();
    constexpr double rate = 4 * 1024 * 1024;  // bytes per second
    json cfg = big_config(c);
    cfg["sinks"]["bucket"]["max_bytes_per_s"] = static_cast<int64_t>(rate);
    auto& gw = start_gateway(cfg);
    auto& dev = connect_device();
    const std::string frame = big_binary(3 * k_part, 6);  // 15 MiB: about 3.75 s at the cap
    dev.publish("devices/cam1/telemetry/frame", frame);
    dev.flush(30s);
    // From the first request the stand-in sees to the row's acknowledgement.
    ASSERT_TRUE(wait_log([](const std::vector<logged>& log) { return !log.empty(); }, 30s));
    const auto first = std::chrono::steady_clock::now();
    ASSERT_TRUE(wait_uploaded(1, 60s)) << gw.last_status();
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - first).count();
    const double expected = static_cast<double>(frame.size()) / rate;
    std::cout << "15 MiB object at max_bytes_per_s " << rate << ": " << secs << " s (expected "
              << expected << " s)\n";
    // Without the cap it takes well under a second here; status polling adds up to ~0.5 s.
    EXPECT_GT(secs, 0.85 * expected);
    EXPECT_LT(secs, 1.5 * expected);
    expect_object(object_path(parse_log(requests())), frame);
}

}  // namespace
}  // namespace egw::test
