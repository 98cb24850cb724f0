// SPDX-License-Identifier: Apache-2.0
#include "gateway/sinks/objects.h"

#include <nlohmann/json.hpp>

#include "gateway/sinks/ndjson.h"

namespace egw::objects {

bool is_object_row(const storage::stored_row& row) { return !ndjson::is_utf8(row.payload); }

std::string content_type_of(const storage::stored_row& row) {
    // What the message said of itself (MQTT 5 Content Type, a plugin's output) comes first.
    if (!row.props.content_type.empty()) return row.props.content_type;
    const std::string_view p = row.payload;
    // Magic numbers: JPEG SOI + the first marker's 0xFF; the 8-byte PNG signature.
    if (p.size() >= 3 && p.substr(0, 3) == "\xFF\xD8\xFF") return "image/jpeg";
    if (p.size() >= 8 && p.substr(0, 8) == "\x89PNG\r\n\x1A\n") return "image/png";
    if (ndjson::is_utf8(p) && nlohmann::json::accept(p)) return "application/json";
    return "application/octet-stream";
}

void append_pointer_line(std::string& out, std::string_view gateway_id,
                         const storage::stored_row& row, std::string_view object,
                         std::string_view content_type) {
    using nlohmann::json;
    const auto str = [](std::string_view s) {
        return json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
    };
    // The same fixed key order as ndjson::append_line.
    out += "{\"gateway\":";
    out += str(gateway_id);
    out += ",\"seq\":";
    out += std::to_string(row.seq);
    out += ",\"ts_ms\":";
    out += std::to_string(row.ts_ms);
    out += ",\"topic\":";
    out += str(row.topic);
    out += ",\"object\":";
    out += str(object);
    out += ",\"content_type\":";
    out += str(content_type);
    out += ",\"bytes\":";
    out += std::to_string(row.payload.size());
    out += "}\n";
}

std::string decode_key(std::string_view in) {
    const auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
    };
    std::string out;
    out.reserve(in.size());
    for (size_t i = 0; i < in.size(); ++i) {
        if (in[i] == '%' && i + 2 < in.size()) {
            const int hi = hex(in[i + 1]), lo = hex(in[i + 2]);
            if (hi >= 0 && lo >= 0) {
                out += static_cast<char>(hi * 16 + lo);
                i += 2;
                continue;
            }
        }
        out += in[i];
    }
    return out;
}

}  // namespace egw::objects
