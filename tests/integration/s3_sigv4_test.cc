// SPDX-License-Identifier: Apache-2.0
//
// Regression tests for libcurl 7.88's SigV4 traps (Debian 12), one per trap, against the real
// signature-checking S3 stand-in (s3rver 4.0.4 behind tests/s3/server.js): each builds requests
// with the s3 sink's own setup (gateway/sinks/s3_request.h) and, where the trap can be shown,
// the naive setup too, so a wrong signature or a missing header fails here and not in a bucket.
// Skipped with a message when tests/s3/node_modules is not installed.

#include <curl/curl.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "gateway/sinks/ndjson.h"
#include "gateway/sinks/s3_request.h"
#include "integration/gateway_test_fixture.h"
#include "support/child_process.h"

namespace egw::test {
namespace {

namespace fs = std::filesystem;

constexpr const char* k_bucket = "site-data";

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

struct reply {
    long status = 0;
    std::string body;
};

class s3_sigv4_test : public gateway_test {
protected:
    void SetUp() override {
        if (!fs::exists(fs::path(EGW_S3_DIR) / "node_modules/@20minutes/s3rver")) {
            GTEST_SKIP() << "the S3 stand-in is not installed: npm install --prefix tests/s3";
        }
        const fs::path dir = tmp_.path() / "s3";
        fs::create_directories(dir);
        server_ = child_process::spawn(
            {"/usr/bin/node", "--openssl-legacy-provider",
             (fs::path(EGW_S3_DIR) / "server.js").string(), dir.string(), k_bucket},
            dir / "stdout.log", dir / "stderr.log");
        ASSERT_TRUE(poll_until([&] { return fs::exists(dir / "port"); }, 20s))
            << slurp(dir / "stderr.log");
        endpoint_ = "http://127.0.0.1:" + slurp(dir / "port");
    }

    std::string url(const std::string& encoded_key, const std::string& query = {}) const {
        return endpoint_ + "/" + k_bucket + "/" + encoded_key + (query.empty() ? "" : "?" + query);
    }

    s3::request req(const std::string& method, const std::string& u,
                    const std::string* body = nullptr) const {
        s3::request r;
        r.method = method;
        r.url = u;
        r.region = "us-east-1";
        r.body = body;
        r.access_key = "S3RVER";
        r.secret_key = "S3RVER";
        return r;
    }

    // The sink's own setup, plus `tamper` to undo one of its precautions.
    reply perform(const s3::request& r,
                  const std::function<curl_slist*(CURL*, curl_slist*)>& tamper = nullptr) {
        CURL* easy = curl_easy_init();
        std::string userpwd;
        curl_slist* headers = s3::prepare(easy, r, userpwd);
        if (tamper) {
            // A tamper may build a new list instead of appending to the sink's one.
            curl_slist* tampered = tamper(easy, headers);
            if (tampered != headers) curl_slist_free_all(headers);
            headers = tampered;
            curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
        }
        reply out;
        curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 20000L);
        curl_easy_setopt(easy, CURLOPT_WRITEDATA, &out.body);
        curl_easy_setopt(
            easy, CURLOPT_WRITEFUNCTION, +[](char* d, size_t s, size_t n, void* p) {
                static_cast<std::string*>(p)->append(d, s * n);
                return s * n;
            });
        const CURLcode rc = curl_easy_perform(easy);
        EXPECT_EQ(rc, CURLE_OK) << curl_easy_strerror(rc);
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &out.status);
        curl_easy_cleanup(easy);
        curl_slist_free_all(headers);
        return out;
    }

    child_process server_;
    std::string endpoint_;
};

// Trap 1: 7.88 does not add x-amz-content-sha256. Without it S3 refuses the request.
TEST_F(s3_sigv4_test, ARequestWithoutContentSha256IsRefusedAndTheSinksSetupAddsIt) {
    const std::string body = "{\"a\":1}\n";
    const auto naive = perform(req("PUT", url("naive.ndjson"), &body), [](CURL*, curl_slist* h) {
        curl_slist* out = nullptr;
        for (; h; h = h->next) {
            if (std::string(h->data).rfind("x-amz-content-sha256:", 0) != 0)
                out = curl_slist_append(out, h->data);
        }
        return out;
    });
    EXPECT_EQ(naive.status, 400) << naive.body;
    EXPECT_NE(naive.body.find("x-amz-content-sha256"), std::string::npos) << naive.body;
    const auto ok = perform(req("PUT", url("signed.ndjson"), &body));
    EXPECT_EQ(ok.status, 200) << ok.body;
    const auto back = perform(req("GET", url("signed.ndjson")));
    EXPECT_EQ(back.status, 200);
    EXPECT_EQ(back.body, body);
}

// Trap 2: 7.88 signs the query as given, so it must already be sorted and encoded.
TEST_F(s3_sigv4_test, QueryParametersAreSortedAndEncodedForMultipart) {
    EXPECT_EQ(s3::query({{"uploads", ""}}), "uploads=");
    EXPECT_EQ(s3::query({{"uploadId", "a/b+c="}, {"partNumber", "1"}}),
              "partNumber=1&uploadId=a%2Fb%2Bc%3D");
    const auto init = perform(req("POST", url("big.bin", s3::query({{"uploads", ""}}))));
    ASSERT_EQ(init.status, 200) << init.body;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(init.body, m, std::regex("<UploadId>([^<]+)</UploadId>")))
        << init.body;
    const std::string upload_id = m[1];
    const std::string part(5 * 1024 * 1024, 'x');
    // Unsorted: curl signs uploadId before partNumber, the server sorts: the signature differs.
    const auto unsorted =
        perform(req("PUT", url("big.bin", "uploadId=" + upload_id + "&partNumber=1"), &part));
    EXPECT_EQ(unsorted.status, 403) << unsorted.body;
    const auto sorted = perform(req(
        "PUT", url("big.bin", s3::query({{"uploadId", upload_id}, {"partNumber", "1"}})), &part));
    EXPECT_EQ(sorted.status, 200) << sorted.body;
}

// Trap 3: the path is signed exactly as sent: a key with bytes outside [A-Za-z0-9/._-] is
// percent-encoded by the key templates and still verifies, and reads back under its real name.
TEST_F(s3_sigv4_test, AKeyWithUnsafeCharactersIsEncodedAndStillVerifies) {
    ndjson::key_template t("{gateway_id}/objects/{topic}/{seq}");
    const std::string key = t.render({.gateway_id = "gw 1", .seq = 7, .topic = "cam/ä+x:y (1)"});
    EXPECT_EQ(key.find_first_not_of(
                  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/._-%"),
              std::string::npos)
        << key;
    const std::string body = "frame";
    const auto put = perform(req("PUT", url(key), &body));
    EXPECT_EQ(put.status, 200) << put.body;
    const auto back = perform(req("GET", url(key)));
    EXPECT_EQ(back.status, 200) << back.body;
    EXPECT_EQ(back.body, body);
    const auto list =
        perform(req("GET", endpoint_ + "/" + k_bucket + "?" + s3::query({{"prefix", "gw 1/"}})));
    EXPECT_EQ(list.status, 200) << list.body;
    EXPECT_NE(list.body.find("<Key>gw 1/objects/cam/ä+x:y (1)/" + std::string(19, '0') + "7</Key>"),
              std::string::npos)
        << list.body;
}

// Trap 4: removing Expect: or setting X-Amz-Date ourselves breaks 7.88's signature; the
// sink's setup does neither, so a body large enough for Expect: 100-continue verifies.
TEST_F(s3_sigv4_test, ExpectAndXAmzDateAreLeftToCurl) {
    const std::string body(2 * 1024 * 1024, 'y');
    const auto ok = perform(req("PUT", url("large.ndjson"), &body));
    EXPECT_EQ(ok.status, 200) << ok.body;
    const auto no_expect =
        perform(req("PUT", url("no-expect.ndjson"), &body),
                [](CURL*, curl_slist* h) { return curl_slist_append(h, "Expect:"); });
    EXPECT_EQ(no_expect.status, 403) << no_expect.body;
    const auto own_date = perform(
        req("PUT", url("own-date.ndjson"), &body),
        [](CURL*, curl_slist* h) { return curl_slist_append(h, "X-Amz-Date: 20260101T000000Z"); });
    EXPECT_EQ(own_date.status, 403) << own_date.body;
}

}  // namespace
}  // namespace egw::test
