// SPDX-License-Identifier: Apache-2.0
#include "gateway/sinks/s3_request.h"

#include <openssl/sha.h>

#include <algorithm>
#include <cctype>

namespace egw::s3 {
namespace {

std::string encode(const std::string& s) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

}  // namespace

std::string query(std::vector<std::pair<std::string, std::string>> params) {
    for (auto& [k, v] : params) {
        k = encode(k);
        v = encode(v);
    }
    // SigV4 sorts by the encoded names (then values); curl 7.88 signs the order it is given.
    std::sort(params.begin(), params.end());
    std::string out;
    for (const auto& [k, v] : params) {
        if (!out.empty()) out += '&';
        out += k + "=" + v;
    }
    return out;
}

std::string sha256_hex(std::string_view data) {
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (unsigned char b : digest) {
        out += hex[b >> 4];
        out += hex[b & 15];
    }
    return out;
}

curl_slist* prepare(CURL* easy, const request& r, std::string& userpwd) {
    const std::string_view body = r.body ? std::string_view(*r.body) : r.slice;
    curl_slist* headers = nullptr;
    const std::string hash =
        "x-amz-content-sha256: " + (r.payload_sha256.empty() ? sha256_hex(body) : r.payload_sha256);
    headers = curl_slist_append(headers, hash.c_str());
    if (!r.session_token.empty()) {
        const std::string t = "x-amz-security-token: " + r.session_token;
        headers = curl_slist_append(headers, t.c_str());
    }
    for (const auto& h : r.headers) headers = curl_slist_append(headers, h.c_str());
    std::fill(userpwd.begin(), userpwd.end(), '\0');
    userpwd = r.access_key + ":" + r.secret_key;
    const std::string sigv4 = "aws:amz:" + r.region + ":s3";
    curl_easy_setopt(easy, CURLOPT_URL, r.url.c_str());
    curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, r.method.c_str());
    if (r.method == "PUT" || r.method == "POST") {
        // POSTFIELDS: curl sends the body and its length; an empty body still gets
        // Content-Length: 0, which S3 wants on PUT and POST.
        // Never a null pointer: curl would take it for "no body" and drop Content-Length.
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body.data() ? body.data() : "");
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    } else if (r.method == "HEAD") {
        curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
    }
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(easy, CURLOPT_AWS_SIGV4, sigv4.c_str());
    curl_easy_setopt(easy, CURLOPT_USERPWD, userpwd.c_str());
    return headers;
}

}  // namespace egw::s3
