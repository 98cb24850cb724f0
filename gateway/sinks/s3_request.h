// SPDX-License-Identifier: Apache-2.0
// One signed S3 request on a curl easy handle, set up the way libcurl 7.88 (Debian 12) signs
// correctly with its own CURLOPT_AWS_SIGV4. Pure setup, any thread; the caller performs the
// transfer (the s3 sink through curl_loop, the tests with curl_easy_perform) and owns the easy
// handle, the returned header list and the body until the transfer ended.
//
// The 7.88 traps, each with a regression test against the signature-checking stand-in
// (tests/integration/s3_sigv4_test.cc):
// - it does not add x-amz-content-sha256: prepare() sets it (the payload's SHA-256) and curl
//   signs it; S3 refuses a signed request without it;
// - it signs the query string as given: s3_query() sorts and percent-encodes the parameters
//   (`uploads=`, `partNumber=1&uploadId=...`);
// - it signs the path exactly as sent: keys keep [A-Za-z0-9/._-] and encode the rest
//   (ndjson::encode_key);
// - removing `Expect:` or setting `X-Amz-Date` ourselves breaks the signature: prepare() does
//   neither.
#pragma once

#include <curl/curl.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace egw::s3 {

// The canonical query string: parameters sorted by name, names and values percent-encoded
// (RFC 3986 unreserved kept), `name=` for an empty value. Empty input gives "".
std::string query(std::vector<std::pair<std::string, std::string>> params);

std::string sha256_hex(std::string_view data);

struct request {
    std::string method = "PUT";
    std::string url;  // already encoded: endpoint, bucket, key, "?" + query(...)
    std::string region;
    const std::string* body = nullptr;  // null: `slice` (a multipart part), else empty
    std::string_view slice;
    std::string payload_sha256;  // hex; computed from body when empty
    std::string access_key, secret_key, session_token;
    std::vector<std::string> headers;  // extra "Name: value" lines (Content-Type, ...)
};

// Sets method, URL, body, headers and the SigV4 options on `easy` (after curl_easy_reset by the
// caller, who adds timeouts, TLS and callbacks). `userpwd` receives "key:secret" and must
// outlive the transfer; the returned list is the caller's to free.
curl_slist* prepare(CURL* easy, const request& r, std::string& userpwd);

}  // namespace egw::s3
