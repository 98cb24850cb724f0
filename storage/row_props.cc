// SPDX-License-Identifier: Apache-2.0
#include "storage/row_props.h"

#include <cstdint>

namespace egw::storage {
namespace {

constexpr unsigned char flag_retain = 1;

size_t varint_size(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        ++n;
    }
    return n;
}

void put_varint(std::string& out, uint64_t v) {
    while (v >= 0x80) {
        out += static_cast<char>((v & 0x7f) | 0x80);
        v >>= 7;
    }
    out += static_cast<char>(v);
}

void put_string(std::string& out, std::string_view s) {
    put_varint(out, s.size());
    out += s;
}

// Reads from the front of `in`, consuming what it read. False on truncation or on a value of
// 2^32 or more (no length the encoder writes comes near it; bigger is garbage).
bool get_varint(std::string_view& in, uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 35; shift += 7) {
        if (in.empty()) return false;
        const auto b = static_cast<unsigned char>(in.front());
        in.remove_prefix(1);
        v |= uint64_t{b & 0x7fu} << shift;
        if (!(b & 0x80)) return v < (uint64_t{1} << 32);
    }
    return false;
}

bool get_string(std::string_view& in, std::string& s) {
    uint64_t n = 0;
    if (!get_varint(in, n) || n > in.size()) return false;
    s.assign(in.data(), static_cast<size_t>(n));
    in.remove_prefix(static_cast<size_t>(n));
    return true;
}

}  // namespace

size_t encoded_props_size(const row_props& p) {
    if (p.empty()) return 0;
    size_t n = 2 + varint_size(p.content_type.size()) + p.content_type.size() +
               varint_size(p.user_properties.size());
    for (const auto& [k, v] : p.user_properties)
        n += varint_size(k.size()) + k.size() + varint_size(v.size()) + v.size();
    return n;
}

std::string encode_props(const row_props& p) {
    std::string out;
    if (p.empty()) return out;
    out.reserve(encoded_props_size(p));
    out += static_cast<char>(row_props_format);
    out += static_cast<char>(p.retain ? flag_retain : 0);
    put_string(out, p.content_type);
    put_varint(out, p.user_properties.size());
    for (const auto& [k, v] : p.user_properties) {
        put_string(out, k);
        put_string(out, v);
    }
    return out;
}

bool decode_props(std::string_view in, row_props& out) {
    out = row_props{};
    if (in.empty()) return true;
    auto fail = [&] {
        out = row_props{};
        return false;
    };
    if (in.size() < 2 || static_cast<unsigned char>(in[0]) != row_props_format) return fail();
    const auto flags = static_cast<unsigned char>(in[1]);
    if (flags & ~flag_retain) return fail();
    out.retain = (flags & flag_retain) != 0;
    in.remove_prefix(2);
    if (!get_string(in, out.content_type)) return fail();
    uint64_t count = 0;
    // Each property takes at least two bytes: a count above that is garbage, and must not
    // size a vector.
    if (!get_varint(in, count) || count > in.size() / 2) return fail();
    out.user_properties.resize(static_cast<size_t>(count));
    for (auto& [k, v] : out.user_properties) {
        if (!get_string(in, k) || !get_string(in, v)) return fail();
    }
    if (!in.empty()) return fail();
    return true;
}

}  // namespace egw::storage
