// SPDX-License-Identifier: Apache-2.0
// The `s3` sink: each batch is one object PUT to an S3-compatible bucket under its key, signed
// with AWS Signature V4 by libcurl itself (CURLOPT_AWS_SIGV4). Transfers run on the loop through
// curl_loop; the payload hashes (SHA-256, per part) are computed on the worker pool.
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

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/sinks/batch_sink.h"
#include "gateway/sinks/curl_loop.h"

namespace egw {

struct s3_options : batch_options {
    std::string endpoint, region, bucket;
    bool path_style = false;
    std::string credentials_file, profile = "default";
    // Objects larger than this go up in parts of this size (S3: at least 5 MiB but the last).
    uint64_t part_bytes = uint64_t{8} << 20;
    long timeout_ms = 60000;
    tls_config tls;
};

inline constexpr uint64_t s3_min_part_bytes = uint64_t{5} << 20;

void parse_s3_sink(const nlohmann::json& s, const std::string& path, const config& c,
                   sink_config& out, std::vector<config_problem>& problems);
std::unique_ptr<sink> make_s3_sink(const sink_context& ctx);

// An upload (one batch) stores its binary rows' objects first, in seq order, then the batch
// object, one request at a time. An object larger than part_bytes is a multipart upload
// (CreateMultipartUpload, UploadPart, CompleteMultipartUpload) whose upload id and part ETags
// are recorded in the buffer's database (storage/batches.h) as they are obtained, each before
// the next request: after a crash or a failure the upload resumes after the last recorded part,
// with the same upload id. An upload the service no longer knows (NoSuchUpload) starts over
// once. A recorded upload that the current batch no longer needs (its key or its bytes changed)
// is abandoned: it is aborted (AbortMultipartUpload) and forgotten before the batch goes up.
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
    void add_status(nlohmann::json& j) override;
    bool decoded_object_names() const override { return true; }

private:
    struct reply {
        CURLcode rc = CURLE_OK;
        long status = 0;
        std::string etag;
        std::string body;  // the first 64 KiB
        std::string error;
    };
    // One object to store: a binary row's object, or the batch itself (the last).
    struct item {
        std::string key, content_type;
        std::shared_ptr<const std::string> body;
        std::vector<std::string> part_sha;  // SHA-256 (hex) of each part; one: a single PUT
        std::string digest;                 // multipart: SHA-256 over the part hashes
    };
    // The upload in progress, kept alive by the requests and jobs that work on it.
    struct transfer {
        std::vector<item> items;
        size_t next = 0;
        std::vector<storage::batch_store::multipart_record> abandoned;
        std::map<std::string, storage::batch_store::multipart_record> records;
        // The multipart upload of items[next].
        std::string upload_id;
        std::vector<std::string> etags;
        bool restarted = false;
    };

    void load_credentials();
    std::string object_url(const std::string& key) const;
    // Starts one signed request on easy_; `then` runs on the loop once it ended.
    void send(const std::string& method, const std::string& key, const std::string& query,
              std::string_view body, const std::string& sha256, std::vector<std::string> headers,
              std::function<void(const reply&)> then);
    void finished(CURLcode rc);
    // A failed request: classifies it and ends the upload.
    void fail(const std::string& what, const reply& r);
    void abort_next(const std::shared_ptr<transfer>& t);
    void next_item(const std::shared_ptr<transfer>& t);
    void put_single(const std::shared_ptr<transfer>& t);
    void multipart_create(const std::shared_ptr<transfer>& t);
    void multipart_part(const std::shared_ptr<transfer>& t, size_t part);
    void multipart_complete(const std::shared_ptr<transfer>& t);
    void multipart_lost(const std::shared_ptr<transfer>& t, const std::string& why);
    size_t parts_of(const item& i) const;

    s3_options opts_;
    curl_loop curl_;
    CURL* easy_ = nullptr;
    curl_slist* header_list_ = nullptr;
    std::string userpwd_;  // secret; wiped when replaced
    char errbuf_[CURL_ERROR_SIZE]{};
    reply reply_;  // of the request under way
    std::function<void(const reply&)> then_;
    std::string complete_xml_;  // body of CompleteMultipartUpload under way
    std::shared_ptr<const credentials> creds_;
    std::string creds_error_;
    bool creds_loading_ = false;
    long last_status_ = 0;
    uint64_t objects_uploaded_ = 0, parts_uploaded_ = 0, parts_resumed_ = 0;
    uint64_t multipart_restarted_ = 0, multipart_aborted_ = 0;
};

}  // namespace egw
