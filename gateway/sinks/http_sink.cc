// SPDX-License-Identifier: Apache-2.0
#include "gateway/sinks/http_sink.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "gateway/log.h"

namespace egw {
namespace {

// "@FILE" -> the file's content without its trailing newline; anything else as written.
// Throws with a message that names the file, never its content.
std::string header_value(const std::string& v) {
    if (v.empty() || v.front() != '@') return v;
    std::ifstream in(v.substr(1), std::ios::binary);
    if (!in) throw std::runtime_error("cannot read header file " + v.substr(1));
    std::stringstream ss;
    ss << in.rdbuf();
    std::string s = ss.str();
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    return s;
}

// How the server's answer classifies (issue 8's retry classes).
upload_outcome classify(long status) {
    if (status >= 200 && status < 300) return upload_outcome::ok;
    if (status == 401 || status == 403) return upload_outcome::refused;
    if (status == 400 || status == 413 || status == 414 || status == 422) {
        return upload_outcome::too_large;  // this request is refused: split it
    }
    if (status == 408 || status == 409 || status == 425 || status == 429 || status >= 500) {
        return upload_outcome::transient;
    }
    return upload_outcome::refused;  // 404, 405...: a configuration problem, not the link
}

}  // namespace

void parse_http_sink(const nlohmann::json& s, const std::string& path, const config&,
                     sink_config& out, std::vector<config_problem>& problems) {
    auto o = std::make_shared<http_options>();
    o->limits.max_rows = 1000;
    o->limits.max_bytes = 1 << 20;
    o->limits.max_delay = std::chrono::milliseconds(1000);
    parse_batch_options(s, path, *o, problems);
    o->url = s.at("url").get<std::string>();
    if (o->url.rfind("http://", 0) != 0 && o->url.rfind("https://", 0) != 0) {
        problems.push_back({path + ".url", "must start with http:// or https://"});
    }
    if (s.contains("headers")) {
        for (const auto& [k, v] : s["headers"].items()) {
            o->headers[k] = v.get<std::string>();
            if (!o->headers[k].empty() && o->headers[k].front() == '@' &&
                ::access(o->headers[k].c_str() + 1, R_OK) != 0) {
                problems.push_back(
                    {path + ".headers." + k, "cannot read " + o->headers[k].substr(1)});
            }
        }
    }
    o->timeout_ms = s.value("timeout_ms", o->timeout_ms);
    if (s.contains("tls")) o->tls = read_tls(s["tls"], path + ".tls", problems);
    out.options = std::move(o);
}

std::unique_ptr<sink> make_http_sink(const sink_context& ctx) {
    return std::make_unique<http_sink>(ctx, static_cast<const http_options&>(*ctx.cfg.options));
}

http_sink::http_sink(const sink_context& ctx, const http_options& opts)
    : batch_sink(ctx, opts), opts_(opts), curl_(ctx.loop), easy_(curl_easy_init()) {
    load_headers();
}

http_sink::~http_sink() {
    curl_.cancel(easy_);
    curl_easy_cleanup(easy_);
    curl_slist_free_all(header_list_);
}

void http_sink::on_reload() {
    // The retry SIGHUP triggers must carry the headers as they are now (a fixed token).
    resolved_.reset();
    header_error_.clear();
    load_headers();
    batch_sink::on_reload();
}

void http_sink::load_headers() {
    if (headers_loading_) return;
    headers_loading_ = true;
    auto lines = std::make_shared<std::vector<std::string>>();
    auto error = std::make_shared<std::string>();
    run_job(
        [lines, error, headers = opts_.headers] {
            try {
                for (const auto& [k, v] : headers) lines->push_back(k + ": " + header_value(v));
            } catch (const std::exception& e) {
                *error = e.what();
            }
        },
        [this, lines, error] {
            headers_loading_ = false;
            header_error_ = *error;
            if (!error->empty()) {
                log::get("sink")->error("{}: {}", cfg_.name, *error);
            } else {
                resolved_ = lines;
            }
            pump();
        });
}

void http_sink::start_upload(const upload& u) {
    if (!resolved_) {
        // Headers not read yet (or unreadable): nothing is sent without them.
        upload_done(upload_outcome::local,
                    header_error_.empty() ? "headers not loaded yet" : header_error_);
        return;
    }
    curl_easy_reset(easy_);
    curl_slist_free_all(header_list_);
    header_list_ = nullptr;
    char key[160];
    std::snprintf(key, sizeof key, "Idempotency-Key: %s-%020llu-%020llu", gateway_id().c_str(),
                  static_cast<unsigned long long>(u.first_seq),
                  static_cast<unsigned long long>(u.last_seq));
    header_list_ = curl_slist_append(header_list_, key);
    header_list_ = curl_slist_append(header_list_, "Content-Type: application/x-ndjson");
    if (static_cast<const batch_options&>(opts_).gzip) {
        header_list_ = curl_slist_append(header_list_, "Content-Encoding: gzip");
    }
    for (const std::string& h : *resolved_)
        header_list_ = curl_slist_append(header_list_, h.c_str());
    body_ = u.body;
    errbuf_[0] = '\0';
    curl_easy_setopt(easy_, CURLOPT_URL, opts_.url.c_str());
    curl_easy_setopt(easy_, CURLOPT_POST, 1L);
    curl_easy_setopt(easy_, CURLOPT_POSTFIELDS, body_->data());
    curl_easy_setopt(easy_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body_->size()));
    curl_easy_setopt(easy_, CURLOPT_HTTPHEADER, header_list_);
    curl_easy_setopt(easy_, CURLOPT_TIMEOUT_MS, opts_.timeout_ms);
    curl_easy_setopt(easy_, CURLOPT_CONNECTTIMEOUT_MS, std::min(opts_.timeout_ms, 10000L));
    curl_easy_setopt(easy_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy_, CURLOPT_ERRORBUFFER, errbuf_);
    curl_easy_setopt(
        easy_, CURLOPT_WRITEFUNCTION,
        +[](char*, size_t size, size_t n, void*) { return size * n; });
    if (!opts_.tls.ca_file.empty())
        curl_easy_setopt(easy_, CURLOPT_CAINFO, opts_.tls.ca_file.c_str());
    if (!opts_.tls.cert_file.empty()) {
        curl_easy_setopt(easy_, CURLOPT_SSLCERT, opts_.tls.cert_file.c_str());
        curl_easy_setopt(easy_, CURLOPT_SSLKEY, opts_.tls.key_file.c_str());
    }
    curl_easy_setopt(easy_, CURLOPT_SSL_VERIFYPEER, opts_.tls.verify ? 1L : 0L);
    curl_easy_setopt(easy_, CURLOPT_SSL_VERIFYHOST, opts_.tls.verify ? 2L : 0L);
    transfer_ = true;
    curl_.add(easy_, [this](CURLcode rc) { finished(rc); });
}

void http_sink::finished(CURLcode rc) {
    transfer_ = false;
    if (rc != CURLE_OK) {
        last_status_ = 0;
        std::string why = curl_easy_strerror(rc);
        if (errbuf_[0]) why += std::string(" (") + errbuf_ + ")";
        upload_done(upload_outcome::transient, why);
        return;
    }
    long status = 0;
    curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &status);
    last_status_ = status;
    const upload_outcome o = classify(status);
    std::string why;
    if (o != upload_outcome::ok) {
        why = "HTTP " + std::to_string(status);
        if (o == upload_outcome::refused)
            why += status == 401 || status == 403 ? " (refused: credentials)" : " (refused)";
    }
    upload_done(o, why);
}

void http_sink::add_status(nlohmann::json& j) {
    j["url"] = opts_.url;
    j["last_http_status"] = last_status_;
}

}  // namespace egw
