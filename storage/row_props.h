// SPDX-License-Identifier: Apache-2.0
// The message properties a buffered row carries beside its topic and payload: the MQTT 5
// Content Type, the retain flag and the MQTT 5 user properties, in the order they were set.
// A plugin output's content type and properties, and a registry record's retain flag, travel
// with the row through the buffer to the sinks (the mqtt sink publishes them, the NDJSON
// encoder writes the content type).
//
// On disk they are one nullable BLOB column, messages.props (schema migration 4 -> 5): NULL
// when a row has none, which is every plain ingested message, so plain ingest pays nothing. The
// encoding is compact and self-delimiting, little more than the strings themselves:
//
//   byte 0       format version, 1
//   byte 1       flags: bit 0 retain; the other bits are 0
//   varint n     content type length, then n bytes
//   varint k     number of user properties, then k times:
//                varint n, n bytes of key; varint m, m bytes of value
//
// varint: unsigned LEB128 (7 bits per byte, low first), at most 5 bytes (lengths < 2^32).
// Pure functions and plain values: any thread.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace egw::storage {

struct row_props {
    std::string content_type;  // empty: none
    bool retain = false;
    // MQTT 5 user properties, in order; a key may repeat (MQTT 5 allows it).
    std::vector<std::pair<std::string, std::string>> user_properties;

    // Nothing set: the row stores NULL.
    bool empty() const { return content_type.empty() && !retain && user_properties.empty(); }
    bool operator==(const row_props&) const = default;
};

inline constexpr unsigned char row_props_format = 1;

// The encoding of `p`; empty when p.empty() (the row stores NULL).
std::string encode_props(const row_props& p);
// Bytes encode_props(p) returns, without building them.
size_t encoded_props_size(const row_props& p);

// Decodes a blob written by encode_props into `out` (replacing what it held). An empty blob
// (NULL) gives empty props. False, with `out` empty, when the blob is not a well-formed
// encoding of a known format: truncated, trailing bytes, unknown version or flag bits.
bool decode_props(std::string_view blob, row_props& out);

}  // namespace egw::storage
