// SPDX-License-Identifier: Apache-2.0
//
// What the s3 tests share: the S3 stand-in (s3rver 4.0.4 behind tests/s3/server.js, which
// checks SigV4 signatures, refuses unsigned requests, and injects faults on demand), a config
// with an s3 sink named "bucket", and independent clients to look into the bucket: rclone for
// listings and copies, curl --aws-sigv4 for single objects and their headers. A test is skipped
// with a message when tests/s3/node_modules is not installed.

#pragma once

#include <zlib.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>

#include "integration/gateway_test_fixture.h"
#include "support/child_process.h"

namespace egw::test {

namespace fs = std::filesystem;

inline std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

inline void write(const fs::path& p, const std::string& text) {
    std::ofstream(p.string() + ".tmp", std::ios::binary) << text;
    fs::rename(p.string() + ".tmp", p);
}

inline std::string gunzip(const std::string& data) {
    z_stream z{};
    inflateInit2(&z, 15 + 16);
    std::string out;
    char buf[65536];
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    z.avail_in = static_cast<uInt>(data.size());
    int rc;
    do {
        z.next_out = reinterpret_cast<Bytef*>(buf);
        z.avail_out = sizeof buf;
        rc = inflate(&z, Z_NO_FLUSH);
        out.append(buf, sizeof buf - z.avail_out);
    } while (rc == Z_OK);
    inflateEnd(&z);
    if (rc != Z_STREAM_END) throw std::runtime_error("not a complete gzip stream");
    return out;
}

inline constexpr const char* k_bucket = "site-data";

class s3_test : public gateway_test {
protected:
    void SetUp() override {
        if (!fs::exists(fs::path(EGW_S3_DIR) / "node_modules/@20minutes/s3rver")) {
            GTEST_SKIP() << "the S3 stand-in is not installed: npm install --prefix tests/s3";
        }
    }

    fs::path s3_dir() const { return tmp_.path() / "s3"; }

    void start_s3(int port = 0) {
        fs::create_directories(s3_dir());
        fs::remove(s3_dir() / "port");
        server_ = child_process::spawn({"/usr/bin/node", "--openssl-legacy-provider",
                                        (fs::path(EGW_S3_DIR) / "server.js").string(),
                                        s3_dir().string(), k_bucket, std::to_string(port)},
                                       s3_dir() / "stdout.log", s3_dir() / "stderr.log");
        ASSERT_TRUE(poll_until([&] { return fs::exists(s3_dir() / "port"); }, 20s))
            << slurp(s3_dir() / "stderr.log");
        port_ = std::stoi(slurp(s3_dir() / "port"));
    }

    std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }

    json s3_config(const fs::path& creds) {
        json c = base_config();
        c["sinks"] = {{"bucket",
                       {{"type", "s3"},
                        {"endpoint", endpoint()},
                        {"region", "us-east-1"},
                        {"bucket", k_bucket},
                        {"path_style", true},
                        {"credentials_file", creds.string()},
                        {"batch", {{"max_rows", 100}, {"max_delay_ms", 200}}},
                        {"backoff", {{"initial_ms", 100}, {"max_ms", 500}}}}}};
        c["routes"] = json::array({{{"from", k_telemetry_filter}, {"to", {"bucket"}}}});
        return c;
    }

    bool wait_drained(std::chrono::milliseconds timeout) {
        return gateway_
            ->wait_until(
                [](const json& s) {
                    return json_at(s, "sinks/bucket/rows_waiting") == 0 &&
                           json_at(s, "sinks/bucket/batch_in_flight").is_null();
                },
                timeout)
            .has_value();
    }

    // The bucket as an independent client (rclone) sees it: key -> object bytes.
    std::map<std::string, std::string> list_bucket() {
        const fs::path out = tmp_.path() / "rclone-copy";
        fs::remove_all(out);
        const std::string cmd =
            "env -u AWS_CA_BUNDLE RCLONE_CONFIG_EGW_TYPE=s3 RCLONE_CONFIG_EGW_PROVIDER=Other "
            "RCLONE_CONFIG_EGW_ACCESS_KEY_ID=S3RVER RCLONE_CONFIG_EGW_SECRET_ACCESS_KEY=S3RVER "
            "RCLONE_CONFIG_EGW_ENDPOINT=" +
            endpoint() +
            " RCLONE_CONFIG_EGW_FORCE_PATH_STYLE=true rclone copy --fast-list egw:" + k_bucket +
            " " + out.string() + " >" + (tmp_.path() / "rclone.log").string() + " 2>&1";
        EXPECT_EQ(std::system(cmd.c_str()), 0) << slurp(tmp_.path() / "rclone.log");
        std::map<std::string, std::string> objects;
        if (!fs::exists(out)) return objects;
        for (const auto& e : fs::recursive_directory_iterator(out)) {
            if (e.is_regular_file())
                objects[fs::relative(e.path(), out).string()] = slurp(e.path());
        }
        return objects;
    }

    void expect_each_once(const std::string& device, size_t n) {
        const std::regex name(R"(gw-it/\d{4}/\d{2}/\d{2}/(\d{20})-(\d{20})\.ndjson\.gz)");
        std::map<std::string, int> seen;
        for (const auto& [key, bytes] : list_bucket()) {
            std::smatch m;
            ASSERT_TRUE(std::regex_match(key, m, name)) << key;
            std::istringstream lines(gunzip(bytes));
            std::string line;
            while (std::getline(lines, line)) {
                json j = json::parse(line);
                EXPECT_GE(j["seq"].get<uint64_t>(), std::stoull(m[1]));
                EXPECT_LE(j["seq"].get<uint64_t>(), std::stoull(m[2]));
                ++seen[j["payload"].get<std::string>()];
            }
        }
        size_t missing = 0, doubled = 0;
        for (size_t i = 0; i < n; ++i) {
            auto it = seen.find(numbered_payload(device, i));
            if (it == seen.end()) {
                ++missing;
            } else if (it->second != 1) {
                ++doubled;
            }
        }
        EXPECT_EQ(missing, 0u);
        EXPECT_EQ(doubled, 0u);
    }

    void publish_n(test_publisher& dev, const std::string& device, size_t n) {
        for (size_t i = 0; i < n; ++i) {
            dev.publish("devices/" + device + "/telemetry/t", numbered_payload(device, i));
        }
        dev.flush(30s);
    }

    // Replaces the stand-in's fault rules (see tests/s3/server.js).
    void set_faults(const json& rules) {
        const fs::path body = tmp_.path() / "faults.json";
        write(body, rules.dump());
        const std::string cmd = "curl -sf -o /dev/null -X POST --data-binary @" + body.string() +
                                " " + endpoint() + "/__faults";
        ASSERT_EQ(std::system(cmd.c_str()), 0);
    }

    // One object through curl --aws-sigv4, an independent signer: {HTTP status, body, headers}.
    struct fetched {
        int status = 0;
        std::string body, headers;
    };
    fetched curl_get(const std::string& encoded_key) {
        const fs::path out = tmp_.path() / "curl-body", hdr = tmp_.path() / "curl-headers",
                       code = tmp_.path() / "curl-code";
        // The SHA-256 of an empty body: curl 7.88 does not send x-amz-content-sha256 itself.
        const std::string cmd =
            "curl -s --aws-sigv4 aws:amz:us-east-1:s3 --user S3RVER:S3RVER -H "
            "'x-amz-content-sha256: "
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' -D " +
            hdr.string() + " -o " + out.string() + " -w '%{http_code}' '" + endpoint() + "/" +
            k_bucket + "/" + encoded_key + "' > " + code.string();
        fetched f;
        if (std::system(cmd.c_str()) != 0) return f;
        f.status = std::stoi(slurp(code));
        f.body = slurp(out);
        f.headers = slurp(hdr);
        return f;
    }

    // The stand-in's request log, one line per request (see tests/s3/server.js).
    std::vector<std::string> requests() {
        std::vector<std::string> out;
        std::istringstream in(slurp(s3_dir() / "requests.log"));
        for (std::string line; std::getline(in, line);) out.push_back(line);
        return out;
    }

    child_process server_;
    int port_ = 0;
};

}  // namespace egw::test
