// SPDX-License-Identifier: Apache-2.0
#include "gateway/sinks/s3_sink.h"

#include <unistd.h>

#include <algorithm>
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
    parse_object_key(s, path, *o, problems);
    o->part_bytes = s.value("part_bytes", o->part_bytes);
    if (o->part_bytes < s3_min_part_bytes) {
        problems.push_back(
            {path + ".part_bytes", "must be at least 5242880 (5 MiB): S3 refuses smaller parts"});
    }
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

namespace {

// The text of <tag>...</tag> in an S3 XML answer, or "".
std::string xml_value(const std::string& body, const std::string& tag) {
    const std::string open = "<" + tag + ">", close = "</" + tag + ">";
    const auto b = body.find(open);
    if (b == std::string::npos) return {};
    const auto e = body.find(close, b + open.size());
    if (e == std::string::npos) return {};
    return body.substr(b + open.size(), e - b - open.size());
}

std::string xml_escape(const std::string& s) {
    std::string out;
    for (const char c : s) {
        switch (c) {
            case '&':
                out += "&amp;";
                break;
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '"':
                out += "&quot;";
                break;
            default:
                out += c;
        }
    }
    return out;
}

}  // namespace

size_t s3_sink::parts_of(const item& i) const { return i.part_sha.size(); }

void s3_sink::send(const std::string& method, const std::string& key, const std::string& query,
                   std::string_view body, const std::string& sha256,
                   std::vector<std::string> headers, std::function<void(const reply&)> then) {
    if (!creds_) {
        reply r;
        r.rc = CURLE_LOGIN_DENIED;
        r.error = creds_error_.empty() ? "credentials not loaded yet" : creds_error_;
        then(r);
        return;
    }
    curl_easy_reset(easy_);
    curl_slist_free_all(header_list_);
    header_list_ = nullptr;
    errbuf_[0] = '\0';
    reply_ = reply{};
    then_ = std::move(then);
    s3::request r;
    r.method = method;
    r.url = object_url(key) + (query.empty() ? "" : "?" + query);
    r.region = opts_.region;
    r.slice = body;
    r.payload_sha256 = sha256;
    r.access_key = creds_->access_key;
    r.secret_key = creds_->secret_key;
    r.session_token = creds_->session_token;
    r.headers = std::move(headers);
    header_list_ = s3::prepare(easy_, r, userpwd_);
    long timeout_ms = opts_.timeout_ms;
    if (const uint64_t rate = static_cast<const batch_options&>(opts_).max_bytes_per_s) {
        // A capped send takes body / rate by design: that is not a timeout.
        timeout_ms += static_cast<long>(std::min<uint64_t>(body.size() * 1000 / rate, 86400000));
    }
    curl_easy_setopt(easy_, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(easy_, CURLOPT_CONNECTTIMEOUT_MS, std::min(opts_.timeout_ms, 10000L));
    curl_easy_setopt(easy_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy_, CURLOPT_ERRORBUFFER, errbuf_);
    if (const uint64_t rate = static_cast<const batch_options&>(opts_).max_bytes_per_s) {
        // No burst above the limit within a large object either; batch_sink spaces the
        // uploads so that the average stays under it too.
        curl_easy_setopt(easy_, CURLOPT_MAX_SEND_SPEED_LARGE, static_cast<curl_off_t>(rate));
    }
    curl_easy_setopt(easy_, CURLOPT_WRITEDATA, this);
    curl_easy_setopt(
        easy_, CURLOPT_WRITEFUNCTION, +[](char* data, size_t size, size_t n, void* self) {
            // Only S3's XML answers are read (an upload id, an error code): 64 KiB is plenty.
            auto& out = static_cast<s3_sink*>(self)->reply_.body;
            if (out.size() < 65536) out.append(data, std::min(size * n, 65536 - out.size()));
            return size * n;
        });
    curl_easy_setopt(easy_, CURLOPT_HEADERDATA, this);
    curl_easy_setopt(
        easy_, CURLOPT_HEADERFUNCTION, +[](char* data, size_t size, size_t n, void* self) {
            std::string_view line(data, size * n);
            if (line.size() > 5 && (line[0] == 'E' || line[0] == 'e') &&
                (line[1] == 'T' || line[1] == 't') && (line[2] == 'a' || line[2] == 'A') &&
                (line[3] == 'g' || line[3] == 'G') && line[4] == ':') {
                line.remove_prefix(5);
                while (!line.empty() && (line.front() == ' ' || line.front() == '\t'))
                    line.remove_prefix(1);
                while (!line.empty() &&
                       (line.back() == '\r' || line.back() == '\n' || line.back() == ' '))
                    line.remove_suffix(1);
                static_cast<s3_sink*>(self)->reply_.etag = std::string(line);
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
    reply_.rc = rc;
    if (rc != CURLE_OK) {
        reply_.error = curl_easy_strerror(rc);
        if (errbuf_[0]) reply_.error += std::string(" (") + errbuf_ + ")";
        last_status_ = 0;
    } else {
        curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &reply_.status);
        last_status_ = reply_.status;
    }
    // A copy: `then` may start the next request, which reuses reply_.
    const reply r = std::move(reply_);
    auto then = std::move(then_);
    then_ = nullptr;
    then(r);
}

void s3_sink::fail(const std::string& what, const reply& r) {
    if (r.rc == CURLE_LOGIN_DENIED) {
        upload_done(upload_outcome::refused, r.error);
        return;
    }
    if (r.rc != CURLE_OK) {
        upload_done(upload_outcome::transient, what + ": " + r.error);
        return;
    }
    const long status = r.status;
    std::string why = what + ": HTTP " + std::to_string(status);
    if (const std::string code = xml_value(r.body, "Code"); !code.empty()) {
        why += " " + code;
    }
    if (status == 200) {
        upload_done(upload_outcome::transient, why + " (incomplete answer)");
    } else if (status == 401 || status == 403) {
        // Maybe rotated: read the credentials again before the next attempt.
        creds_.reset();
        load_credentials();
        upload_done(upload_outcome::refused, why + " (refused: credentials or signature)");
    } else if (status == 400 || status == 413 || status == 422) {
        upload_done(upload_outcome::too_large, why);
    } else if (status >= 500 || status == 408 || status == 409 || status == 429) {
        upload_done(upload_outcome::transient, why);
    } else {
        upload_done(upload_outcome::refused, why + " (refused)");
    }
}

void s3_sink::start_upload(const upload& u) {
    if (!creds_) {
        upload_done(upload_outcome::refused,
                    creds_error_.empty() ? "credentials not loaded yet" : creds_error_);
        return;
    }
    auto t = std::make_shared<transfer>();
    for (const auto& o : u.objects) t->items.push_back({o.key, o.content_type, o.body, {}, {}});
    t->items.push_back({u.key,
                        static_cast<const batch_options&>(opts_).gzip ? "application/gzip"
                                                                      : "application/x-ndjson",
                        u.body,
                        {},
                        {}});
    // Hashing (about 1 GB/s) and the records run on a worker, not on the loop.
    auto error = std::make_shared<std::string>();
    run_job(
        [t, error, store = store(), part = opts_.part_bytes] {
            try {
                for (auto& i : t->items) {
                    const std::string_view b = *i.body;
                    if (b.size() <= part) {
                        i.part_sha.push_back(s3::sha256_hex(b));
                        continue;
                    }
                    std::string all;
                    for (size_t off = 0; off < b.size(); off += part) {
                        i.part_sha.push_back(s3::sha256_hex(b.substr(off, part)));
                        all += i.part_sha.back();
                    }
                    i.digest = s3::sha256_hex(all);
                }
                for (auto& rec : store->multipart_records()) {
                    const auto it = std::find_if(t->items.begin(), t->items.end(),
                                                 [&](const item& i) { return i.key == rec.key; });
                    // Resumable only for the same bytes cut the same way.
                    if (it != t->items.end() && rec.size == it->body->size() &&
                        rec.part_size == part && rec.digest == it->digest &&
                        rec.etags.size() <= it->part_sha.size()) {
                        t->records.emplace(rec.key, std::move(rec));
                    } else {
                        t->abandoned.push_back(std::move(rec));
                    }
                }
            } catch (const std::exception& e) {
                *error = e.what();
            }
        },
        [this, t, error] {
            if (!error->empty()) {
                upload_done(upload_outcome::local, "preparing the upload: " + *error);
                return;
            }
            abort_next(t);
        });
}

void s3_sink::abort_next(const std::shared_ptr<transfer>& t) {
    if (t->abandoned.empty()) {
        next_item(t);
        return;
    }
    const auto rec = t->abandoned.back();
    t->abandoned.pop_back();
    send("DELETE", rec.key, s3::query({{"uploadId", rec.upload_id}}), {}, s3::sha256_hex(""), {},
         [this, t, rec](const reply& r) {
             // 204: aborted; 404: already gone. 405/501: the service cannot abort (a bucket
             // lifecycle rule has to clean up). Anything else: keep the record, try next time.
             const bool gone =
                 r.rc == CURLE_OK && (r.status == 200 || r.status == 204 || r.status == 404 ||
                                      r.status == 405 || r.status == 501);
             auto lg = log::get("sink");
             if (!gone) {
                 lg->warn("{}: aborting the abandoned multipart upload of {}: {}; kept for later",
                          cfg_.name, rec.key,
                          r.rc != CURLE_OK ? r.error : "HTTP " + std::to_string(r.status));
                 abort_next(t);
                 return;
             }
             if (r.status == 405 || r.status == 501) {
                 lg->warn(
                     "{}: the service cannot abort the multipart upload of {} (HTTP {}); "
                     "forgetting it",
                     cfg_.name, rec.key, r.status);
             } else {
                 ++multipart_aborted_;
                 lg->info("{}: aborted the abandoned multipart upload of {}", cfg_.name, rec.key);
             }
             run_job(
                 [store = store(), key = rec.key] {
                     try {
                         store->multipart_forget(key);
                     } catch (const std::exception&) {
                         // Aborted anyway; the next upload tries to abort it again (a 404).
                     }
                 },
                 [this, t] { abort_next(t); });
         });
}

void s3_sink::next_item(const std::shared_ptr<transfer>& t) {
    if (t->next == t->items.size()) {
        upload_done(upload_outcome::ok, {});
        return;
    }
    t->upload_id.clear();
    t->etags.clear();
    t->restarted = false;
    const item& i = t->items[t->next];
    if (parts_of(i) == 1) {
        put_single(t);
        return;
    }
    if (auto it = t->records.find(i.key); it != t->records.end()) {
        t->upload_id = it->second.upload_id;
        t->etags = it->second.etags;
        t->records.erase(it);
        parts_resumed_ += t->etags.size();
        log::get("sink")->info("{}: resuming the multipart upload of {} after part {} of {}",
                               cfg_.name, i.key, t->etags.size(), parts_of(i));
        if (t->etags.size() == parts_of(i)) {
            multipart_complete(t);
        } else {
            multipart_part(t, t->etags.size() + 1);
        }
        return;
    }
    multipart_create(t);
}

void s3_sink::put_single(const std::shared_ptr<transfer>& t) {
    const item& i = t->items[t->next];
    send("PUT", i.key, {}, *i.body, i.part_sha[0], {"Content-Type: " + i.content_type},
         [this, t](const reply& r) {
             if (r.rc != CURLE_OK || r.status != 200 || r.etag.empty()) {
                 if (r.rc == CURLE_OK && r.status == 200) {
                     upload_done(upload_outcome::transient, "HTTP 200 without an ETag");
                     return;
                 }
                 fail("PUT " + t->items[t->next].key, r);
                 return;
             }
             if (t->next + 1 < t->items.size()) ++objects_uploaded_;
             ++t->next;
             next_item(t);
         });
}

void s3_sink::multipart_create(const std::shared_ptr<transfer>& t) {
    const item& i = t->items[t->next];
    send("POST", i.key, s3::query({{"uploads", ""}}), {}, s3::sha256_hex(""),
         {"Content-Type: " + i.content_type}, [this, t](const reply& r) {
             const item& cur = t->items[t->next];
             const std::string id = xml_value(r.body, "UploadId");
             if (r.rc != CURLE_OK || r.status != 200 || id.empty()) {
                 fail("CreateMultipartUpload " + cur.key, r);
                 return;
             }
             t->upload_id = id;
             auto ok = std::make_shared<bool>(false);
             run_job(
                 [store = store(), key = cur.key, id, size = cur.body->size(),
                  part = opts_.part_bytes, digest = cur.digest, ok] {
                     try {
                         store->multipart_begin(key, id, size, part, digest);
                         *ok = true;
                     } catch (const std::exception&) {
                     }
                 },
                 [this, t, ok] {
                     if (!*ok) {
                         upload_done(upload_outcome::local, "recording a multipart upload failed");
                         return;
                     }
                     multipart_part(t, 1);
                 });
         });
}

void s3_sink::multipart_part(const std::shared_ptr<transfer>& t, size_t part) {
    const item& i = t->items[t->next];
    const std::string_view slice =
        std::string_view(*i.body).substr((part - 1) * opts_.part_bytes, opts_.part_bytes);
    send("PUT", i.key,
         s3::query({{"partNumber", std::to_string(part)}, {"uploadId", t->upload_id}}), slice,
         i.part_sha[part - 1], {}, [this, t, part](const reply& r) {
             const item& cur = t->items[t->next];
             if (r.rc == CURLE_OK && r.status == 404) {
                 multipart_lost(t, "UploadPart: HTTP 404 " + xml_value(r.body, "Code"));
                 return;
             }
             if (r.rc != CURLE_OK || r.status != 200 || r.etag.empty()) {
                 fail("UploadPart " + std::to_string(part) + "/" + std::to_string(parts_of(cur)) +
                          " of " + cur.key,
                      r);
                 return;
             }
             ++parts_uploaded_;
             auto ok = std::make_shared<bool>(false);
             run_job(
                 [store = store(), key = cur.key, part, etag = r.etag, ok] {
                     try {
                         store->multipart_part(key, static_cast<int>(part), etag);
                         *ok = true;
                     } catch (const std::exception&) {
                     }
                 },
                 [this, t, part, etag = r.etag, ok] {
                     if (!*ok) {
                         upload_done(upload_outcome::local, "recording an uploaded part failed");
                         return;
                     }
                     t->etags.push_back(etag);
                     if (part == parts_of(t->items[t->next])) {
                         multipart_complete(t);
                     } else {
                         multipart_part(t, part + 1);
                     }
                 });
         });
}

void s3_sink::multipart_complete(const std::shared_ptr<transfer>& t) {
    const item& i = t->items[t->next];
    complete_xml_ = "<CompleteMultipartUpload>";
    for (size_t k = 0; k < t->etags.size(); ++k) {
        complete_xml_ += "<Part><PartNumber>" + std::to_string(k + 1) + "</PartNumber><ETag>" +
                         xml_escape(t->etags[k]) + "</ETag></Part>";
    }
    complete_xml_ += "</CompleteMultipartUpload>";
    send("POST", i.key, s3::query({{"uploadId", t->upload_id}}), complete_xml_,
         s3::sha256_hex(complete_xml_), {"Content-Type: application/xml"},
         [this, t](const reply& r) {
             const item& cur = t->items[t->next];
             const std::string code = xml_value(r.body, "Code");
             if (r.rc == CURLE_OK &&
                 (r.status == 404 ||
                  (r.status == 400 && (code == "InvalidPart" || code == "InvalidPartOrder")))) {
                 multipart_lost(
                     t, "CompleteMultipartUpload: HTTP " + std::to_string(r.status) + " " + code);
                 return;
             }
             // S3 may answer 200 and still fail: the error is then in the body.
             if (r.rc != CURLE_OK || r.status != 200 ||
                 r.body.find("<CompleteMultipartUploadResult") == std::string::npos) {
                 fail("CompleteMultipartUpload " + cur.key, r);
                 return;
             }
             run_job(
                 [store = store(), key = cur.key] {
                     try {
                         store->multipart_forget(key);
                     } catch (const std::exception&) {
                         // A stale record: the next upload of the key finds it unknown to the
                         // service (NoSuchUpload) and starts over, or aborts it.
                     }
                 },
                 [this, t] {
                     if (t->next + 1 < t->items.size()) ++objects_uploaded_;
                     ++t->next;
                     next_item(t);
                 });
         });
}

void s3_sink::multipart_lost(const std::shared_ptr<transfer>& t, const std::string& why) {
    const item& i = t->items[t->next];
    if (t->restarted) {
        upload_done(upload_outcome::transient,
                    "multipart upload of " + i.key + " lost again: " + why);
        return;
    }
    t->restarted = true;
    ++multipart_restarted_;
    log::get("sink")->warn("{}: the multipart upload of {} cannot resume ({}); starting it over",
                           cfg_.name, i.key, why);
    t->upload_id.clear();
    t->etags.clear();
    run_job(
        [store = store(), key = i.key] {
            try {
                store->multipart_forget(key);
            } catch (const std::exception&) {
            }
        },
        [this, t] { multipart_create(t); });
}

void s3_sink::add_status(nlohmann::json& j) {
    j["endpoint"] = opts_.endpoint;
    j["bucket"] = opts_.bucket;
    j["last_http_status"] = last_status_;
    j["objects_uploaded"] = objects_uploaded_;
    j["parts_uploaded"] = parts_uploaded_;
    j["parts_resumed"] = parts_resumed_;
    j["multipart_restarted"] = multipart_restarted_;
    j["multipart_aborted"] = multipart_aborted_;
}

}  // namespace egw
