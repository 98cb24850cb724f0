// SPDX-License-Identifier: Apache-2.0
// The `http` sink: each batch is POSTed as NDJSON (gzip unless compression is none) with
// Idempotency-Key {gateway_id}-{first_seq:020}-{last_seq:020}, so a retry of the same range is
// recognisable by the server. Transfers run on the loop through curl_loop (libcurl multi +
// libuv); header values written "@FILE" are read from FILE on a worker (at start and SIGHUP),
// trailing newline stripped, and never logged.
#pragma once

#include <curl/curl.h>

#include <map>
#include <memory>
#include <string>

#include "gateway/sinks/batch_sink.h"
#include "gateway/sinks/curl_loop.h"

namespace egw {

struct http_options : batch_options {
    std::string url;
    std::map<std::string, std::string> headers;  // as configured: a value may be "@FILE"
    long timeout_ms = 30000;
    tls_config tls;
};

void parse_http_sink(const nlohmann::json& s, const std::string& path, const config& c,
                     sink_config& out, std::vector<config_problem>& problems);
std::unique_ptr<sink> make_http_sink(const sink_context& ctx);

class http_sink final : public batch_sink {
public:
    http_sink(const sink_context& ctx, const http_options& opts);
    ~http_sink() override;

    void on_reload() override;
    // Nothing is sent before the header files were read once.
    void pump() override {
        if (resolved_ || !header_error_.empty()) batch_sink::pump();
    }

protected:
    void start_upload(const upload& u) override;
    void add_status(nlohmann::json& j) override;

private:
    void load_headers();
    void finished(CURLcode rc);

    http_options opts_;
    curl_loop curl_;
    CURL* easy_ = nullptr;
    curl_slist* header_list_ = nullptr;
    std::shared_ptr<const std::string> body_;  // of the transfer under way
    char errbuf_[CURL_ERROR_SIZE]{};
    // Resolved header lines "Name: value"; empty until loaded. Secret: never logged.
    std::shared_ptr<std::vector<std::string>> resolved_;
    std::string header_error_;
    bool headers_loading_ = false;
    bool transfer_ = false;
    long last_status_ = 0;
};

}  // namespace egw
