// SPDX-License-Identifier: Apache-2.0
// The `s3` sink: each batch is one object PUT to an S3-compatible bucket under its key, signed
// with AWS Signature V4 by libcurl itself (CURLOPT_AWS_SIGV4). Transfers run on the loop through
// curl_loop; the payload hash (SHA-256) is computed with the encoding on the worker pool.
//
// libcurl 7.88 (Debian 12) traps, each with a regression test (tests/integration/s3_sink_test):
// it does not add x-amz-content-sha256, so we set it (curl signs it); it signs the path exactly
// as sent, so keys are restricted to [A-Za-z0-9/._-] with the rest percent-encoded (ndjson.h);
// we neither remove Expect: nor set X-Amz-Date (either breaks the signature).
//
// Credentials: the INI credentials_file ([default] or `profile`), read on a worker at start, on
// SIGHUP and after a 403; else AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN.
// They never appear in a log line, in status or in an error message.
#pragma once

#include <curl/curl.h>

#include <memory>
#include <string>

#include "gateway/sinks/batch_sink.h"
#include "gateway/sinks/curl_loop.h"

namespace egw {

struct s3_options : batch_options {
    std::string endpoint, region, bucket;
    bool path_style = false;
    std::string credentials_file, profile = "default";
    std::string object_key;  // accepted; binary payloads as own objects are not implemented yet
    long timeout_ms = 60000;
    tls_config tls;
};

void parse_s3_sink(const nlohmann::json& s, const std::string& path, const config& c,
                   sink_config& out, std::vector<config_problem>& problems);
std::unique_ptr<sink> make_s3_sink(const sink_context& ctx);

class s3_sink final : public batch_sink {
public:
    s3_sink(const sink_context& ctx, const s3_options& opts);
    ~s3_sink() override;

    void on_reload() override;
    // Nothing is sent before the credentials were read once.
    void pump() override {
        if (creds_ || !creds_error_.empty()) batch_sink::pump();
    }

    struct credentials {
        std::string access_key, secret_key, session_token;
    };

protected:
    void start_upload(const upload& u) override;
    bool wants_payload_hash() const override { return true; }
    void add_status(nlohmann::json& j) override;

private:
    void load_credentials();
    void finished(CURLcode rc);
    std::string object_url(const std::string& key) const;

    s3_options opts_;
    curl_loop curl_;
    CURL* easy_ = nullptr;
    curl_slist* header_list_ = nullptr;
    std::shared_ptr<const std::string> body_;
    std::string userpwd_;  // secret; wiped when replaced
    char errbuf_[CURL_ERROR_SIZE]{};
    std::shared_ptr<const credentials> creds_;
    std::string creds_error_;
    bool creds_loading_ = false;
    bool got_etag_ = false;
    long last_status_ = 0;
};

}  // namespace egw
