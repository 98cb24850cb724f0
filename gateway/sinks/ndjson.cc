// SPDX-License-Identifier: Apache-2.0
#include "gateway/sinks/ndjson.h"

#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <ctime>

#include <nlohmann/json.hpp>

namespace egw::ndjson {

bool is_utf8(std::string_view s) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const size_t n = s.size();
    size_t i = 0;
    while (i < n) {
        // Readings are ASCII: eight bytes at a time while no byte has its high bit set.
        uint64_t w;
        while (i + 8 <= n && (std::memcpy(&w, p + i, 8), (w & 0x8080808080808080ull) == 0)) i += 8;
        if (i == n) break;
        const unsigned char c = p[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        size_t len;
        uint32_t cp;
        if ((c & 0xE0) == 0xC0) {
            len = 2;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n) return false;
        for (size_t k = 1; k < len; ++k) {
            if ((p[i + k] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        // Overlong forms, surrogates and code points past U+10FFFF are not UTF-8.
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
            return false;
        }
        i += len;
    }
    return true;
}

std::string base64(std::string_view in) {
    static constexpr char table[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    const auto* p = reinterpret_cast<const unsigned char*>(in.data());
    size_t i = 0;
    for (; i + 3 <= in.size(); i += 3) {
        const uint32_t v = (p[i] << 16) | (p[i + 1] << 8) | p[i + 2];
        out += table[v >> 18];
        out += table[(v >> 12) & 63];
        out += table[(v >> 6) & 63];
        out += table[v & 63];
    }
    if (const size_t rest = in.size() - i; rest > 0) {
        const uint32_t v = (p[i] << 16) | (rest == 2 ? p[i + 1] << 8 : 0);
        out += table[v >> 18];
        out += table[(v >> 12) & 63];
        out += rest == 2 ? table[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

namespace {

// A JSON validator for RFC 8259 text, without building a document or allocating (but for the
// nesting stack past 64 levels): nlohmann::json::accept's lexer costs about as much as the
// rest of a batch's encoding together. Same verdicts as json::accept (tests/unit/ndjson_test),
// surrogate pairs in \u escapes included. The input is valid UTF-8 (checked before).
class json_validator {
public:
    explicit json_validator(std::string_view s)
        : p_(reinterpret_cast<const unsigned char*>(s.data())), end_(p_ + s.size()) {}

    bool valid() {
        ws();
        if (!value()) return false;
        ws();
        return p_ == end_;
    }

private:
    void ws() {
        while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
    }
    bool lit(const char* word, size_t n) {
        if (static_cast<size_t>(end_ - p_) < n || std::memcmp(p_, word, n) != 0) return false;
        p_ += n;
        return true;
    }
    bool digits() {
        const unsigned char* start = p_;
        while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
        return p_ > start;
    }
    bool number() {
        if (p_ < end_ && *p_ == '-') ++p_;
        if (p_ < end_ && *p_ == '0') {
            ++p_;
        } else if (!(p_ < end_ && *p_ >= '1' && *p_ <= '9') || !digits()) {
            return false;
        }
        if (p_ < end_ && *p_ == '.') {
            ++p_;
            if (!digits()) return false;
        }
        if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
            ++p_;
            if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
            if (!digits()) return false;
        }
        return true;
    }
    int hex4() {
        if (end_ - p_ < 4) return -1;
        int v = 0;
        for (int i = 0; i < 4; ++i) {
            const unsigned char c = *p_++;
            v <<= 4;
            if (c >= '0' && c <= '9') {
                v |= c - '0';
            } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
                v |= (c | 0x20) - 'a' + 10;
            } else {
                return -1;
            }
        }
        return v;
    }
    bool string() {
        ++p_;  // the opening quote
        while (p_ < end_) {
            const unsigned char c = *p_++;
            if (c == '"') return true;
            if (c < 0x20) return false;
            if (c != '\\') continue;
            if (p_ == end_) return false;
            switch (*p_++) {
                case '"':
                case '\\':
                case '/':
                case 'b':
                case 'f':
                case 'n':
                case 'r':
                case 't':
                    break;
                case 'u': {
                    const int u = hex4();
                    if (u < 0 || (u >= 0xDC00 && u <= 0xDFFF)) return false;
                    if (u >= 0xD800 && u <= 0xDBFF) {
                        // A high surrogate must be followed by an escaped low one.
                        if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') return false;
                        p_ += 2;
                        const int low = hex4();
                        if (low < 0xDC00 || low > 0xDFFF) return false;
                    }
                    break;
                }
                default:
                    return false;
            }
        }
        return false;
    }
    // Iterative over containers: a deeply nested payload cannot exhaust the worker's stack.
    bool value() {
        std::string stack;  // '{' or '[' per open container; SSO holds the first 15 levels
        for (;;) {
            ws();
            if (p_ == end_) return false;
            const unsigned char c = *p_;
            if (c == '{' || c == '[') {
                ++p_;
                ws();
                if (p_ < end_ && *p_ == (c == '{' ? '}' : ']')) {
                    ++p_;  // empty: a complete value
                } else {
                    stack += static_cast<char>(c);
                    if (c == '{') {
                        if (p_ == end_ || *p_ != '"' || !string()) return false;
                        ws();
                        if (p_ == end_ || *p_++ != ':') return false;
                    }
                    continue;  // the first member's value
                }
            } else if (c == '"') {
                if (!string()) return false;
            } else if (c == 't') {
                if (!lit("true", 4)) return false;
            } else if (c == 'f') {
                if (!lit("false", 5)) return false;
            } else if (c == 'n') {
                if (!lit("null", 4)) return false;
            } else if (!number()) {
                return false;
            }
            // A value ended: close containers or go on to the next member.
            for (;;) {
                if (stack.empty()) return true;
                ws();
                if (p_ == end_) return false;
                const char open = stack.back();
                const unsigned char d = *p_++;
                if (d == ',') {
                    if (open == '{') {
                        ws();
                        if (p_ == end_ || *p_ != '"' || !string()) return false;
                        ws();
                        if (p_ == end_ || *p_++ != ':') return false;
                    }
                    break;
                }
                if (d != (open == '{' ? '}' : ']')) return false;
                stack.pop_back();
            }
        }
    }

    const unsigned char* p_;
    const unsigned char* end_;
};

// Appends `s` as a JSON string. Plain text (printable ASCII but '"' and '\\') goes in as it
// is; anything else through nlohmann, which escapes and replaces invalid UTF-8.
void append_quoted(std::string& out, std::string_view s) {
    bool plain = true;
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c >= 0x7F || c == '"' || c == '\\') {
            plain = false;
            break;
        }
    }
    if (plain) {
        out += '"';
        out += s;
        out += '"';
        return;
    }
    out += nlohmann::json(std::string(s))
               .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

bool is_json(std::string_view s) { return json_validator(s).valid(); }

void append_line(std::string& out, std::string_view gateway_id, const storage::stored_row& row) {
    using nlohmann::json;
    // Built by hand in a fixed key order, the strings escaped as nlohmann's dump would.
    out += "{\"gateway\":";
    append_quoted(out, gateway_id);
    out += ",\"seq\":";
    out += std::to_string(row.seq);
    out += ",\"ts_ms\":";
    out += std::to_string(row.ts_ms);
    out += ",\"topic\":";
    append_quoted(out, row.topic);
    if (!row.props.content_type.empty()) {
        out += ",\"content_type\":";
        append_quoted(out, row.props.content_type);
    }
    const std::string& p = row.payload;
    if (is_utf8(p)) {
        out += ",\"payload\":";
        // Valid JSON on one line goes in as it is: validating without building a document is
        // several times cheaper than parsing and re-serialising. A newline can only be
        // whitespace in valid JSON, but it would end the NDJSON line, so such a payload is
        // re-serialised compactly.
        // (Two memchr scans: find_first_of("\r\n") calls memchr on its set for every byte.)
        const bool one_line =
            std::memchr(p.data(), '\n', p.size()) == nullptr && p.find('\r') == std::string::npos;
        if (one_line && is_json(p)) {
            out += p;
        } else if (json parsed = json::parse(p, nullptr, false); !parsed.is_discarded()) {
            out += parsed.dump();
        } else {
            out += json(p).dump();
        }
    } else {
        out += ",\"payload_b64\":\"";
        out += base64(p);
        out += '"';
    }
    out += "}\n";
}

std::string gzip(std::string_view data, int level) {
    z_stream z{};
    // 15 + 16: a gzip wrapper. Without deflateSetHeader zlib writes mtime 0, no name and OS
    // "unix": the header is the same on every run.
    if (deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        throw std::runtime_error("zlib: deflateInit2 failed");
    }
    // NDJSON compresses about tenfold: start at a quarter of the input and grow if needed,
    // rather than allocate deflateBound (more than the input) for every batch.
    std::string out;
    out.resize(data.size() / 4 + 64);
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    z.avail_in = static_cast<uInt>(data.size());
    int rc = Z_OK;
    size_t produced = 0;
    while (rc == Z_OK || rc == Z_BUF_ERROR) {
        if (produced == out.size()) out.resize(out.size() * 2);
        z.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
        z.avail_out = static_cast<uInt>(out.size() - produced);
        rc = deflate(&z, Z_FINISH);
        produced = out.size() - z.avail_out;
        if (rc == Z_BUF_ERROR && z.avail_out > 0) break;  // no progress possible: a bug
    }
    deflateEnd(&z);
    if (rc != Z_STREAM_END) throw std::runtime_error("zlib: deflate did not finish");
    out.resize(produced);
    // A batch waiting for its upload keeps only what it needs.
    out.shrink_to_fit();
    return out;
}

std::string encode_key(std::string_view raw) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(raw.size());
    for (const char ch : raw) {
        const auto c = static_cast<unsigned char>(ch);
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '/' || c == '.' || c == '_' || c == '-') {
            out += ch;
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

key_template::key_template(std::string text) : text_(std::move(text)) {
    static const std::pair<const char*, kind> names[] = {{"gateway_id", gateway_id},
                                                         {"yyyy", yyyy},
                                                         {"mm", mm},
                                                         {"dd", dd},
                                                         {"HH", hh},
                                                         {"first_seq", first_seq},
                                                         {"last_seq", last_seq},
                                                         {"topic", topic},
                                                         {"seq", seq}};
    size_t i = 0;
    while (i < text_.size()) {
        const size_t open = text_.find('{', i);
        if (open == std::string::npos) {
            parts_.push_back({literal, text_.substr(i)});
            break;
        }
        if (open > i) parts_.push_back({literal, text_.substr(i, open - i)});
        const size_t close = text_.find('}', open);
        if (close == std::string::npos) throw std::invalid_argument("unclosed '{' in key");
        const std::string name = text_.substr(open + 1, close - open - 1);
        bool found = false;
        for (const auto& [n, k] : names) {
            if (name == n) {
                parts_.push_back({k, {}});
                found = true;
            }
        }
        if (!found) throw std::invalid_argument("unknown placeholder {" + name + "} in key");
        i = close + 1;
    }
}

std::string key_template::render(const fields& f) const {
    const std::time_t secs = static_cast<std::time_t>(f.ts_ms / 1000);
    std::tm utc{};
    gmtime_r(&secs, &utc);
    char buf[32];
    auto num = [&](int width, uint64_t v) {
        std::snprintf(buf, sizeof buf, "%0*llu", width, static_cast<unsigned long long>(v));
        return std::string(buf);
    };
    std::string raw;
    for (const part& p : parts_) {
        switch (p.what) {
            case literal:
                raw += p.text;
                break;
            case gateway_id:
                raw += f.gateway_id;
                break;
            case yyyy:
                raw += num(4, static_cast<uint64_t>(utc.tm_year + 1900));
                break;
            case mm:
                raw += num(2, static_cast<uint64_t>(utc.tm_mon + 1));
                break;
            case dd:
                raw += num(2, static_cast<uint64_t>(utc.tm_mday));
                break;
            case hh:
                raw += num(2, static_cast<uint64_t>(utc.tm_hour));
                break;
            case first_seq:
                raw += num(20, f.first_seq);
                break;
            case last_seq:
                raw += num(20, f.last_seq);
                break;
            case topic:
                raw += f.topic;
                break;
            case seq:
                raw += num(20, f.seq);
                break;
        }
    }
    return encode_key(raw);
}

}  // namespace egw::ndjson
