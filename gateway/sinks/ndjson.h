// SPDX-License-Identifier: Apache-2.0
// What batch sinks write: one NDJSON line per row, gzip without a timestamp (a retry is byte
// for byte the same), and object keys from templates. Pure functions, any thread; the sinks
// call them on the worker pool, never on the loop.
//
// A line: {"gateway":ID,"seq":N,"ts_ms":N,"topic":T,"payload":P} where P is the payload inlined
// when it is valid JSON, else a string when it is UTF-8 text, else the line carries
// "payload_b64" (base64) instead of "payload". A row with a content type (a plugin output's,
// storage/row_props.h) adds "content_type":C after the topic. docs/sinks.md has its JSON Schema.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "storage/buffer.h"

namespace egw::ndjson {

// Appends the row's line, newline included.
void append_line(std::string& out, std::string_view gateway_id, const storage::stored_row& row);

bool is_utf8(std::string_view s);
// Whether UTF-8 text `s` is one JSON value (RFC 8259), with json::accept's verdicts, faster.
bool is_json(std::string_view s);
std::string base64(std::string_view bytes);

// gzip (RFC 1952) with mtime 0 and no file name: the same input gives the same bytes.
std::string gzip(std::string_view data, int level = 6);

// A key template: {gateway_id}, {yyyy}, {mm}, {dd}, {HH} (UTC, from the first row's ingest
// time), {first_seq} and {last_seq} (20 digits, zero-padded), and for object keys {topic} and
// {seq}. Any other {name} is an error (std::invalid_argument on construction). The result keeps
// [A-Za-z0-9/._-] and percent-encodes every other byte, so a key is signed exactly as sent.
class key_template {
public:
    explicit key_template(std::string text);
    struct fields {
        std::string_view gateway_id;
        int64_t ts_ms = 0;
        uint64_t first_seq = 0, last_seq = 0, seq = 0;
        std::string_view topic;
    };
    std::string render(const fields& f) const;
    const std::string& text() const { return text_; }

private:
    enum kind { literal, gateway_id, yyyy, mm, dd, hh, first_seq, last_seq, topic, seq };
    struct part {
        kind what;
        std::string text;
    };
    std::string text_;
    std::vector<part> parts_;
};

inline constexpr const char* default_key =
    "{gateway_id}/{yyyy}/{mm}/{dd}/{first_seq}-{last_seq}.ndjson.gz";

// Percent-encodes every byte outside [A-Za-z0-9/._-].
std::string encode_key(std::string_view raw);

}  // namespace egw::ndjson
