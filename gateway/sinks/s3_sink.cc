// SPDX-License-Identifier: Apache-2.0
#include "gateway/sinks/s3_sink.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "gateway/log.h"
#include "gateway/sinks/s3_request.h"

namespace egw {
namespace {

std::string trim(std::string s) {
    const auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return {};
    const auto e = s.find_last_not_of(" \t\r\n");
    return s.substr(b, e - b + 1);
}

// The AWS shared-credentials INI file, section `profile`. Errors name the file and the section,
// never a value.
s3_sink::credentials read_credentials(const std::string& file, const std::string& profile) {
    std::ifstream in(file);
    if (!in) throw std::runtime_error("cannot read credentials_file " + file);
    s3_sink::credentials c;
    std::string line, section;
    bool found = false;
    while (std::getline(in, line)) {
        line = trim(line);
        if (line.empty() || line[0] == '#' || line[0] == ';') continue;
        if (line.front() == '[' && line.back() == ']') {
            section = trim(line.substr(1, line.size() - 2));
            if (section == profile) found = true;
            continue;
        }
        if (section != profile) continue;
        const auto eq = line.find('=');
        if (eq == std::string::npos) continue;
        const std::string k = trim(line.substr(0, eq)), v = trim(line.substr(eq + 1));
        if (k == "aws_access_key_id") c.access_key = v;
        if (k == "aws_secret_access_key") c.secret_key = v;
        if (k == "aws_session_token") c.session_token = v;
    }
    if (!found) throw std::runtime_error("no [" + profile + "] section in " + file);
    if (c.access_key.empty() || c.secret_key.empty()) {
        throw std::runtime_error("[" + profile + "] in " + file +
                                 " lacks aws_access_key_id or aws_secret_access_key");
    }
    return c;
}

s3_sink::credentials env_credentials() {
    s3_sink::credentials c;
    if (const char* v = std::getenv("AWS_ACCESS_KEY_ID")) c.access_key = v;
    if (const char* v = std::getenv("AWS_SECRET_ACCESS_KEY")) c.secret_key = v;
    if (const char* v = std::getenv("AWS_SESSION_TOKEN")) c.session_token = v;
    if (c.access_key.empty() || c.secret_key.empty()) {
        throw std::runtime_error(
            "no credentials: set credentials_file or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
    }
    return c;
}

}  // namespace

void parse_s3_sink(const nlohmann::json& s, const std::string& path, const config&,
                   sink_config& out, std::vector<config_problem>& problems) {
    auto o = std::make_shared<s3_options>();
    parse_batch_options(s, path, *o, problems);
    o->endpoint = s.at("endpoint").get<std::string>();
    while (!o->endpoint.empty() && o->endpoint.back() == '/') o->endpoint.pop_back();
    if (o->endpoint.rfind("http://", 0) != 0 && o->endpoint.rfind("https://", 0) != 0) {
        problems.push_back({path + ".endpoint", "must start with http:// or https://"});
    }
    o->region = s.at("region").get<std::string>();
    o->bucket = s.at("bucket").get<std::string>();
    o->path_style = s.value("path_style", false);
    o->credentials_file = s.value("credentials_file", "");
    o->profile = s.value("profile", o->profile);
    o->object_key = s.value("object_key", "");
    o->timeout_ms = s.value("timeout_ms", o->timeout_ms);
    if (!o->credentials_file.empty() && ::access(o->credentials_file.c_str(), R_OK) != 0) {
        problems.push_back({path + ".credentials_file", "cannot read " + o->credentials_file});
    }
    if (s.contains("tls")) o->tls = read_tls(s["tls"], path + ".tls", problems);
    out.options = std::move(o);
}

std::unique_ptr<sink> make_s3_sink(const sink_context& ctx) {
    return std::make_unique<s3_sink>(ctx, static_cast<const s3_options&>(*ctx.cfg.options));
}

s3_sink::s3_sink(const sink_context& ctx, const s3_options& opts)
    : batch_sink(ctx, opts), opts_(opts), curl_(ctx.loop), easy_(curl_easy_init()) {
    load_credentials();
}

s3_sink::~s3_sink() {
    curl_.cancel(easy_);
    curl_easy_cleanup(easy_);
    curl_slist_free_all(header_list_);
}

void s3_sink::on_reload() {
    creds_.reset();
    creds_error_.clear();
    load_credentials();
    batch_sink::on_reload();
}

void s3_sink::load_credentials() {
    if (creds_loading_) return;
    creds_loading_ = true;
    auto got = std::make_shared<std::shared_ptr<const credentials>>();
    auto error = std::make_shared<std::string>();
    run_job(
        [got, error, file = opts_.credentials_file, profile = opts_.profile] {
            try {
                *got = std::make_shared<const credentials>(
                    file.empty() ? env_credentials() : read_credentials(file, profile));
            } catch (const std::exception& e) {
                *error = e.what();
            }
        },
        [this, got, error] {
            creds_loading_ = false;
            creds_error_ = *error;
            if (!error->empty()) {
                log::get("sink")->error("{}: {}", cfg_.name, *error);
            } else {
                creds_ = *got;
            }
            pump();
        });
}

std::string s3_sink::object_url(const std::string& key) const {
    if (opts_.path_style) return opts_.endpoint + "/" + opts_.bucket + "/" + key;
    const auto scheme_end = opts_.endpoint.find("://") + 3;
    return opts_.endpoint.substr(0, scheme_end) + opts_.bucket + "." +
           opts_.endpoint.substr(scheme_end) + "/" + key;
}

void s3_sink::start_upload(const upload& u) {
    if (!creds_) {
        upload_done(upload_outcome::refused,
                    creds_error_.empty() ? "credentials not loaded yet" : creds_error_);
        return;
    }
    curl_easy_reset(easy_);
    curl_slist_free_all(header_list_);
    header_list_ = nullptr;
    body_ = u.body;
    errbuf_[0] = '\0';
    got_etag_ = false;
    s3::request r;
    r.url = object_url(u.key);
    r.region = opts_.region;
    r.body = body_.get();
    r.payload_sha256 = u.sha256;  // computed with the encoding, on the pool
    r.access_key = creds_->access_key;
    r.secret_key = creds_->secret_key;
    r.session_token = creds_->session_token;
    r.headers.push_back(static_cast<const batch_options&>(opts_).gzip
                            ? "Content-Type: application/gzip"
                            : "Content-Type: application/x-ndjson");
    header_list_ = s3::prepare(easy_, r, userpwd_);
    curl_easy_setopt(easy_, CURLOPT_TIMEOUT_MS, opts_.timeout_ms);
    curl_easy_setopt(easy_, CURLOPT_CONNECTTIMEOUT_MS, std::min(opts_.timeout_ms, 10000L));
    curl_easy_setopt(easy_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy_, CURLOPT_ERRORBUFFER, errbuf_);
    curl_easy_setopt(
        easy_, CURLOPT_WRITEFUNCTION,
        +[](char*, size_t size, size_t n, void*) { return size * n; });
    curl_easy_setopt(easy_, CURLOPT_HEADERDATA, this);
    curl_easy_setopt(
        easy_, CURLOPT_HEADERFUNCTION, +[](char* data, size_t size, size_t n, void* self) {
            const std::string_view line(data, size * n);
            if (line.size() > 5 && (line.substr(0, 5) == "ETag:" || line.substr(0, 5) == "etag:" ||
                                    line.substr(0, 5) == "Etag:")) {
                static_cast<s3_sink*>(self)->got_etag_ = true;
            }
            return size * n;
        });
    if (!opts_.tls.ca_file.empty())
        curl_easy_setopt(easy_, CURLOPT_CAINFO, opts_.tls.ca_file.c_str());
    curl_easy_setopt(easy_, CURLOPT_SSL_VERIFYPEER, opts_.tls.verify ? 1L : 0L);
    curl_easy_setopt(easy_, CURLOPT_SSL_VERIFYHOST, opts_.tls.verify ? 2L : 0L);
    curl_.add(easy_, [this](CURLcode rc) { finished(rc); });
}

void s3_sink::finished(CURLcode rc) {
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
    if (status == 200 && got_etag_) {
        upload_done(upload_outcome::ok, {});
    } else if (status == 200) {
        upload_done(upload_outcome::transient, "HTTP 200 without an ETag");
    } else if (status == 401 || status == 403) {
        // Maybe rotated: read the credentials again before the next attempt.
        creds_.reset();
        load_credentials();
        upload_done(upload_outcome::refused,
                    "HTTP " + std::to_string(status) + " (refused: credentials or signature)");
    } else if (status == 400 || status == 413 || status == 422) {
        upload_done(upload_outcome::too_large, "HTTP " + std::to_string(status));
    } else if (status >= 500 || status == 408 || status == 409 || status == 429) {
        upload_done(upload_outcome::transient, "HTTP " + std::to_string(status));
    } else {
        upload_done(upload_outcome::refused, "HTTP " + std::to_string(status) + " (refused)");
    }
}

void s3_sink::add_status(nlohmann::json& j) {
    j["endpoint"] = opts_.endpoint;
    j["bucket"] = opts_.bucket;
    j["last_http_status"] = last_status_;
}

}  // namespace egw
