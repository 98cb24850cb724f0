// SPDX-License-Identifier: Apache-2.0
#include "gateway/sinks/ndjson.h"

#include "gateway/sinks/objects.h"

#include <zlib.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace egw::ndjson {
namespace {

using nlohmann::json;

json line_of(const std::string& payload) {
    std::string out;
    append_line(out, "gw-1", {42, 1700000000123, 1, "devices/a/t", payload, {}});
    EXPECT_EQ(out.back(), '\n');
    EXPECT_EQ(out.find('\n'), out.size() - 1);
    return json::parse(out);
}

TEST(ndjson, a_line_carries_gateway_seq_ts_topic_and_the_payload) {
    json j = line_of(R"({"t": 21.5})");
    EXPECT_EQ(j["gateway"], "gw-1");
    EXPECT_EQ(j["seq"], 42);
    EXPECT_EQ(j["ts_ms"], 1700000000123);
    EXPECT_EQ(j["topic"], "devices/a/t");
    EXPECT_EQ(j["payload"], json({{"t", 21.5}}));
    EXPECT_FALSE(j.contains("payload_b64"));
}

TEST(ndjson, a_row_with_a_content_type_says_so_and_one_without_has_no_key) {
    storage::stored_row row{
        7, 1700000000123, 1, "devices/c/camera/1/thumbnail", std::string("\xff\xd8\xff", 3), {}};
    row.props.content_type = "image/jpeg";
    row.props.user_properties = {{"egw-role", "start"}};
    std::string out;
    append_line(out, "gw-1", row);
    EXPECT_NE(out.find(R"("topic":"devices/c/camera/1/thumbnail","content_type":"image/jpeg",)"),
              std::string::npos)
        << "content_type comes right after the topic: " << out;
    json j = json::parse(out);
    EXPECT_EQ(j["content_type"], "image/jpeg");
    EXPECT_EQ(j["payload_b64"], "/9j/");
    EXPECT_EQ(j.size(), 6u) << "user properties and retain are not part of a line";
    EXPECT_FALSE(line_of("{}").contains("content_type"));
}

TEST(ndjson, scalars_are_inlined_text_is_a_string_binary_is_base64) {
    EXPECT_EQ(line_of("17")["payload"], 17);
    EXPECT_EQ(line_of("\"x\"")["payload"], "x");
    EXPECT_EQ(line_of("true")["payload"], true);
    EXPECT_EQ(line_of("hello {world")["payload"], "hello {world");
    EXPECT_EQ(line_of("")["payload"], "");
    EXPECT_EQ(line_of("{\n  \"a\": [1,\n 2]\n}")["payload"], json({{"a", {1, 2}}}))
        << "a multi-line JSON payload stays on its line";
    json b = line_of(std::string("\xff\xd8\xff\x00", 4));
    EXPECT_FALSE(b.contains("payload"));
    EXPECT_EQ(b["payload_b64"], "/9j/AA==");
}

TEST(ndjson, is_json_agrees_with_nlohmann_accept) {
    const char* cases[] = {"0",
                           "-0",
                           "17",
                           "-1.5e+3",
                           "1E5",
                           "2.0",
                           "01",
                           "1.",
                           ".5",
                           "+1",
                           "-",
                           "1e",
                           "1e+",
                           "true",
                           "false",
                           "null",
                           "nul",
                           "truex",
                           "tru",
                           "\"\"",
                           "\"a\\\"b\"",
                           "\"\\u00e9\"",
                           "\"\\u12\"",
                           "\"\\x\"",
                           "\"tab\there\"",
                           "\"\\ud83d\\ude00\"",
                           "\"\\ud83d\"",
                           "\"\\ude00\"",
                           "\"\\ud83dx\"",
                           "\"unterminated",
                           "[]",
                           "{}",
                           "[1,2,[3,{}]]",
                           "[1,]",
                           "[,1]",
                           "[1 2]",
                           "{\"a\":1,\"b\":[true,null]}",
                           "{\"a\"}",
                           "{\"a\":}",
                           "{a:1}",
                           "{\"a\":1,}",
                           "{,}",
                           " [ 1 , { \"x\" : \"y\" } ] ",
                           "[1]]",
                           "[[1]",
                           "{}}",
                           "",
                           "   ",
                           "1 2",
                           "\"a\" \"b\"",
                           "[\"\xc3\xa9\"]",
                           "{\"\xe2\x82\xac\":\"\"}",
                           "[\"\x01\"]",
                           "[\"\x7f\"]",
                           "{\"t\":21.5,\"pad\":\"xxxx\"}",
                           "\t\n\r 1 \n",
                           "[1,\n2]",
                           "{\"a\":{\"b\":{\"c\":[[[[]]]]}}}",
                           "[-]",
                           "[1e5,-0.0e-0]",
                           "{\"a\" 1}",
                           "[true false]",
                           "/",
                           "\"\\/\"",
                           "[\"\\b\\f\\n\\r\\t\"]"};
    for (const char* c : cases) {
        EXPECT_EQ(is_json(c), json::accept(c)) << c;
    }
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    EXPECT_TRUE(is_json(deep)) << "nesting is not limited by the stack";
    EXPECT_FALSE(is_json(std::string(100000, '[')));
}

TEST(ndjson, topics_and_gateway_ids_are_escaped) {
    std::string out;
    append_line(out, "gw\"1", {1, 2, 1, "a\\b\x01\xc3\xa9", "1", {}});
    json j = json::parse(out);
    EXPECT_EQ(j["gateway"], "gw\"1");
    EXPECT_EQ(j["topic"], "a\\b\x01\xc3\xa9");
}

TEST(ndjson, base64_and_utf8) {
    EXPECT_EQ(base64(""), "");
    EXPECT_EQ(base64("f"), "Zg==");
    EXPECT_EQ(base64("fo"), "Zm8=");
    EXPECT_EQ(base64("foo"), "Zm9v");
    EXPECT_TRUE(is_utf8("gr\xc3\xbc\xc3\x9f"));
    EXPECT_FALSE(is_utf8("\xc0\xaf"));      // overlong
    EXPECT_FALSE(is_utf8("\xed\xa0\x80"));  // surrogate
    EXPECT_FALSE(is_utf8("\xe2\x82"));      // truncated
}

// is_utf8 skips ASCII eight bytes at a time: a bad or multi-byte sequence at any offset from an
// ASCII run, across an 8-byte boundary or cut by the end, gets the same verdict as alone.
TEST(ndjson, utf8_verdicts_do_not_depend_on_the_offset_in_ascii) {
    for (size_t pre = 0; pre < 20; ++pre) {
        for (size_t post : {size_t{0}, size_t{1}, size_t{9}}) {
            const std::string a(pre, 'a'), b(post, 'b');
            EXPECT_TRUE(is_utf8(a + b)) << pre;
            EXPECT_TRUE(is_utf8(a + "\xf0\x9f\x98\x80" + b)) << pre;  // U+1F600
            EXPECT_FALSE(is_utf8(a + "\xff" + b)) << pre;
            EXPECT_FALSE(is_utf8(a + "\xed\xa0\x80" + b)) << pre;  // surrogate
            EXPECT_FALSE(is_utf8(a + "\xc3" + b)) << pre;          // a lead byte without its tail
        }
        EXPECT_FALSE(is_utf8(std::string(pre, 'a') + "\xe2\x82")) << pre;  // cut by the end
    }
}

TEST(ndjson, gzip_is_byte_identical_across_runs_and_has_no_timestamp) {
    const std::string text(100000, 'a');
    const std::string a = gzip(text), b = gzip(text);
    EXPECT_EQ(a, b);
    ASSERT_GT(a.size(), 10u);
    EXPECT_EQ(static_cast<unsigned char>(a[0]), 0x1f);
    EXPECT_EQ(static_cast<unsigned char>(a[1]), 0x8b);
    EXPECT_EQ(a.substr(4, 4), std::string(4, '\0')) << "MTIME must be 0";
    // And it inflates back.
    z_stream z{};
    ASSERT_EQ(inflateInit2(&z, 15 + 16), Z_OK);
    std::string out(text.size() + 16, '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(a.data()));
    z.avail_in = static_cast<uInt>(a.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    EXPECT_EQ(inflate(&z, Z_FINISH), Z_STREAM_END);
    out.resize(z.total_out);
    inflateEnd(&z);
    EXPECT_EQ(out, text);
}

TEST(ndjson, keys_are_zero_padded_utc_from_the_first_row_and_encoded) {
    key_template t(default_key);
    // 2026-01-02T03:04:05Z
    const int64_t ts = 1767323045000;
    EXPECT_EQ(t.render({"gw-1", ts, 7, 1234, 0, {}}),
              "gw-1/2026/01/02/00000000000000000007-00000000000000001234.ndjson.gz");
    key_template h("{gateway_id}/{yyyy}/{mm}/{dd}/{HH}/{first_seq}-{last_seq}");
    EXPECT_EQ(h.render({"gw", ts, 1, 2, 0, {}}),
              "gw/2026/01/02/03/00000000000000000001-00000000000000000002");
    key_template o("{gateway_id}/objects/{topic}/{seq}");
    EXPECT_EQ(o.render({"gw", ts, 0, 0, 9, "devices/cam 1/ä+"}),
              "gw/objects/devices/cam%201/%C3%A4%2B/00000000000000000009");
    EXPECT_THROW(key_template("{nope}"), std::invalid_argument);
    EXPECT_THROW(key_template("{gateway_id"), std::invalid_argument);
}

TEST(objects, binary_rows_become_objects_text_and_json_stay_inline) {
    auto row = [](std::string payload) {
        return storage::stored_row{
            5, 1767323045123, 1, "devices/c/camera/front", std::move(payload), {}};
    };
    EXPECT_TRUE(objects::is_object_row(row("\xFF\xD8\xFF\xE0 jpeg")));
    EXPECT_TRUE(objects::is_object_row(row(std::string("a\0\xFE", 3))));
    EXPECT_FALSE(objects::is_object_row(row(R"({"t":1})")));
    EXPECT_FALSE(objects::is_object_row(row("plain text, ünïcode")));
    EXPECT_FALSE(objects::is_object_row(row("")));
}

TEST(objects, content_type_sniffs_jpeg_png_json_else_octet_stream) {
    auto type = [](std::string payload) {
        return objects::content_type_of({1, 0, 1, "t", std::move(payload), {}});
    };
    EXPECT_EQ(type("\xFF\xD8\xFF\xDB......"), "image/jpeg");
    EXPECT_EQ(type("\x89PNG\r\n\x1A\n\0\0\0\rIHDR"), "image/png");
    EXPECT_EQ(type(R"({"a":[1,2]})"), "application/json");
    EXPECT_EQ(type("\x89PNG\r\n"), "application/octet-stream") << "a truncated signature";
    EXPECT_EQ(type("\xFF\xD8"), "application/octet-stream");
    EXPECT_EQ(type(std::string("\0\1\2\3", 4)), "application/octet-stream");
}

TEST(objects, the_pointer_line_names_the_object_its_type_and_size) {
    std::string out;
    const storage::stored_row r{
        42, 1767323045123, 1, "devices/c/camera/front", std::string("\xFF\xD8\xFF\0\1", 5), {}};
    objects::append_pointer_line(out, "gw-1", r, "gw-1/objects/devices/c/camera/front/42",
                                 "image/jpeg");
    ASSERT_EQ(out.find('\n'), out.size() - 1);
    EXPECT_EQ(
        out, R"({"gateway":"gw-1","seq":42,"ts_ms":1767323045123,"topic":"devices/c/camera/front",)"
             R"("object":"gw-1/objects/devices/c/camera/front/42","content_type":"image/jpeg",)"
             R"("bytes":5})"
             "\n");
}

TEST(objects, decode_key_undoes_encode_key) {
    for (const std::string raw : {"a/b c/%/ä+", "plain/key-1.x_y", "%zz%", "100%"}) {
        EXPECT_EQ(objects::decode_key(encode_key(raw)), raw) << raw;
    }
    EXPECT_EQ(objects::decode_key("100%"), "100%") << "a stray % stays";
}

}  // namespace
}  // namespace egw::ndjson
