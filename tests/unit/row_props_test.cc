// SPDX-License-Identifier: Apache-2.0
// Message properties on buffered rows (storage/row_props.h): the encoding, every append path of
// the buffer against real SQLite files, and the migration of a file written before the column
// existed.
#include "storage/row_props.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "storage/batches.h"
#include "storage/buffer.h"
#include "storage/schema.h"
#include "storage/sqlite.h"

namespace egw::storage {
namespace {

row_props frame_props() {
    row_props p;
    p.content_type = "image/jpeg";
    p.user_properties = {{"egw-episode", "cam1-42"}, {"egw-role", "start"}, {"egw-role", "x"}};
    return p;
}

// ---- the encoding ----------------------------------------------------------------------------

TEST(row_props_encoding, none_encodes_to_nothing_and_decodes_from_nothing) {
    EXPECT_TRUE(row_props{}.empty());
    EXPECT_EQ(encode_props(row_props{}), "");
    EXPECT_EQ(encoded_props_size(row_props{}), 0u);
    row_props p = frame_props();
    EXPECT_TRUE(decode_props("", p));
    EXPECT_TRUE(p.empty());
}

TEST(row_props_encoding, round_trips_exactly_with_order_repeats_and_binary_bytes) {
    row_props p = frame_props();
    p.retain = true;
    p.user_properties.emplace_back(std::string("k\0ey", 4), std::string(300, '\xff'));
    p.user_properties.emplace_back("", "");
    const std::string blob = encode_props(p);
    EXPECT_EQ(blob.size(), encoded_props_size(p));
    EXPECT_EQ(static_cast<unsigned char>(blob[0]), row_props_format);
    row_props back;
    ASSERT_TRUE(decode_props(blob, back));
    EXPECT_EQ(back, p);

    row_props retain_only;
    retain_only.retain = true;
    EXPECT_FALSE(retain_only.empty());
    // version, flags, empty content type, no properties
    EXPECT_EQ(encode_props(retain_only), std::string("\x01\x01\x00\x00", 4));
    ASSERT_TRUE(decode_props(encode_props(retain_only), back));
    EXPECT_EQ(back, retain_only);
}

TEST(row_props_encoding, malformed_blobs_are_refused_without_reading_past_them) {
    const std::string good = encode_props(frame_props());
    row_props out;
    // Every truncation, and trailing garbage.
    for (size_t n = 1; n < good.size(); ++n) {
        EXPECT_FALSE(decode_props(good.substr(0, n), out)) << n;
        EXPECT_TRUE(out.empty());
    }
    EXPECT_FALSE(decode_props(good + "x", out));
    std::string bad_version = good;
    bad_version[0] = 2;
    EXPECT_FALSE(decode_props(bad_version, out));
    std::string bad_flags = good;
    bad_flags[1] = 4;
    EXPECT_FALSE(decode_props(bad_flags, out));
    // A huge property count must not size anything.
    EXPECT_FALSE(decode_props(std::string("\x01\x00\x00\xff\xff\xff\xff\x0f", 8), out));
    // A varint longer than 5 bytes.
    EXPECT_FALSE(decode_props(std::string("\x01\x00\x80\x80\x80\x80\x80\x01", 8), out));

    // Random mutations decode or fail cleanly, and what decodes survives a round trip.
    std::mt19937 rng(7);
    for (int i = 0; i < 20000; ++i) {
        std::string m = good;
        const int edits = 1 + static_cast<int>(rng() % 4);
        for (int e = 0; e < edits; ++e) m[rng() % m.size()] = static_cast<char>(rng());
        if (decode_props(m, out)) {
            row_props again;
            ASSERT_TRUE(decode_props(encode_props(out), again));
            EXPECT_EQ(again, out);
        } else {
            EXPECT_TRUE(out.empty());
        }
    }
}

// ---- the buffer ------------------------------------------------------------------------------

class row_props_buffer_test : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/egw-props-XXXXXX";
        dir_ = ::mkdtemp(tmpl);
        opts_.path = dir_ + "/buffer.db";
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    // The props column of row `seq` as SQLite holds it: "NULL" or the blob.
    std::string raw_props(uint64_t seq) {
        db_ptr db = open_db(opts_.path, SQLITE_OPEN_READONLY);
        statement s(db.get(), "SELECT props IS NULL, props FROM messages WHERE seq = ?1");
        s.bind(1, static_cast<int64_t>(seq));
        if (!s.step()) return "missing";
        return s.int64(0) ? "NULL" : std::string(s.blob(1));
    }
    int64_t size_column(uint64_t seq) {
        db_ptr db = open_db(opts_.path, SQLITE_OPEN_READONLY);
        statement s(db.get(), "SELECT size FROM messages WHERE seq = ?1");
        s.bind(1, static_cast<int64_t>(seq));
        return s.step() ? s.int64(0) : -1;
    }

    std::string dir_;
    buffer_options opts_;
};

TEST_F(row_props_buffer_test, append_stores_props_reads_them_back_and_counts_their_bytes) {
    const row_props p = frame_props();
    std::vector<stored_row> live;
    auto post = [&](uint64_t seq, const incoming& in) { live.push_back(to_stored_row(seq, in)); };
    {
        buffer b(opts_);
        EXPECT_EQ(b.append("cam/frame", "JPEG", 1, 1000, post, &p).seq, 1u);
        EXPECT_EQ(b.append("plain", "x", 1, 1001, post).seq, 2u);
        const row_props none;
        EXPECT_EQ(b.append("plain", "y", 1, 1002, post, &none).seq, 3u);
        const int64_t encoded = static_cast<int64_t>(encode_props(p).size());
        EXPECT_EQ(b.total().bytes, (9 + 4 + encoded) + (5 + 1) + (5 + 1));

        std::vector<stored_row> rows;
        b.read(0, 0, 10, SIZE_MAX, rows);
        ASSERT_EQ(rows.size(), 3u);
        EXPECT_EQ(rows[0].props, p);
        EXPECT_TRUE(rows[1].props.empty());
        EXPECT_TRUE(rows[2].props.empty());
        // Live rows (what the sinks get without reading) carry the same.
        ASSERT_EQ(live.size(), 3u);
        EXPECT_EQ(live[0].props, p);
        EXPECT_TRUE(live[1].props.empty());
    }
    // On disk: NULL for a row without props, empty props included; size counts the blob.
    EXPECT_EQ(raw_props(1), encode_props(p));
    EXPECT_EQ(raw_props(2), "NULL");
    EXPECT_EQ(raw_props(3), "NULL");
    EXPECT_EQ(size_column(1), static_cast<int64_t>(9 + 4 + encode_props(p).size()));
    EXPECT_EQ(size_column(2), 6);
    // The totals rebuilt at start-up agree.
    buffer again(opts_);
    EXPECT_EQ(again.total().bytes, static_cast<int64_t>(9 + 4 + encode_props(p).size()) + 6 + 6);
}

TEST_F(row_props_buffer_test, append_batch_keeps_each_messages_props) {
    buffer b(opts_);
    row_props retained;
    retained.retain = true;
    const row_props p = frame_props();
    std::vector<incoming> in{
        {"a", "1", 1, 10, &p}, {"b", "2", 1, 11, nullptr}, {"c", "3", 1, 12, &retained}};
    std::vector<append_result> out;
    std::vector<stored_row> live;
    auto r = b.append_batch(
        in, [&](uint64_t seq, const incoming& m) { live.push_back(to_stored_row(seq, m)); }, out);
    ASSERT_EQ(r.handled, 3u);
    std::vector<stored_row> rows;
    b.read(0, 0, 10, SIZE_MAX, rows);
    ASSERT_EQ(rows.size(), 3u);
    EXPECT_EQ(rows[0].props, p);
    EXPECT_TRUE(rows[1].props.empty());
    EXPECT_TRUE(rows[2].props.retain);
    EXPECT_EQ(rows[2].props.content_type, "");
    ASSERT_EQ(live.size(), 3u);
    for (size_t i = 0; i < 3; ++i) EXPECT_EQ(live[i].props, rows[i].props) << i;
}

TEST_F(row_props_buffer_test, stage_outputs_keep_their_props_and_batch_reads_see_them) {
    buffer b(opts_);
    const int stage = b.sink_bit("$stage");
    const int bucket = b.sink_bit("bucket");
    b.append("devices/c/camera/1", "frame", uint64_t{1} << stage, 5, nullptr);
    stage_batch sb;
    sb.bit = stage;
    sb.after = 0;
    sb.through = 1;
    stage_output thumb{"devices/c/camera/1/thumbnail", "thumb", uint64_t{1} << bucket, 5,
                       frame_props()};
    stage_output event{"devices/c/camera/1/motion", "{}", uint64_t{1} << bucket, 5, {}};
    event.props.content_type = "application/json";
    sb.outputs = {thumb, event};
    std::vector<stored_row> live;
    EXPECT_EQ(b.commit_stage(sb, [&](uint64_t seq,
                                     const incoming& m) { live.push_back(to_stored_row(seq, m)); }),
              2u);
    ASSERT_EQ(live.size(), 2u);
    EXPECT_EQ(live[0].props, thumb.props);
    EXPECT_EQ(live[1].props, event.props);
    EXPECT_EQ(b.for_sink(bucket).bytes,
              static_cast<int64_t>(thumb.topic.size() + 5 + encode_props(thumb.props).size() +
                                   event.topic.size() + 2 + encode_props(event.props).size()));

    std::vector<stored_row> rows;
    b.read(bucket, 0, 10, SIZE_MAX, rows);
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[0].props, thumb.props);
    EXPECT_EQ(rows[1].props, event.props);

    batch_store bs(b, bucket);
    std::vector<stored_row> batch;
    bs.read(0, 0, 10, batch);
    ASSERT_EQ(batch.size(), 2u);
    EXPECT_EQ(batch[0].props, thumb.props);
    EXPECT_EQ(batch[1].props.content_type, "application/json");
}

TEST_F(row_props_buffer_test, a_damaged_props_blob_reads_as_none_and_the_row_still_goes) {
    {
        buffer b(opts_);
        const row_props p = frame_props();
        b.append("t", "payload", 1, 1, nullptr, &p);
    }
    {
        db_ptr db = open_db(opts_.path, SQLITE_OPEN_READWRITE);
        exec(db.get(), "UPDATE messages SET props = x'01ff' WHERE seq = 1");
    }
    buffer b(opts_);
    std::vector<stored_row> rows;
    b.read(0, 0, 10, SIZE_MAX, rows);
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0].payload, "payload");
    EXPECT_TRUE(rows[0].props.empty());
}

// A file as the previous release (schema 4) left it: rows waiting for two sinks, one half
// acknowledged. Made by this build and then taken back to version 4 exactly: the props column
// is the only change migration 4 -> 5 makes.
TEST_F(row_props_buffer_test, a_version_4_file_migrates_and_keeps_its_rows) {
    {
        buffer b(opts_);
        ASSERT_EQ(b.sink_bit("cloud"), 0);
        ASSERT_EQ(b.sink_bit("bucket"), 1);
        for (int i = 0; i < 10; ++i) b.append("old/" + std::to_string(i), "p", 3, 100 + i, nullptr);
        b.ack(0, 0, 5);
    }
    {
        db_ptr db = open_db(opts_.path, SQLITE_OPEN_READWRITE);
        // Back to schema 4: no props column (4 -> 5) and no multipart records (5 -> 6).
        ASSERT_EQ(schema_version, 6);
        exec(db.get(), "DROP TABLE multipart_parts");
        exec(db.get(), "DROP TABLE multipart_uploads");
        exec(db.get(), "ALTER TABLE messages DROP COLUMN props");
        exec(db.get(), "PRAGMA user_version = 4");
    }
    {
        buffer b(opts_);
        {
            db_ptr db = open_db(opts_.path, SQLITE_OPEN_READONLY);
            statement v(db.get(), "PRAGMA user_version");
            ASSERT_TRUE(v.step());
            EXPECT_EQ(v.int64(0), schema_version);
        }
        EXPECT_EQ(b.total().rows, 10);
        EXPECT_EQ(b.for_sink(0).rows, 5);
        EXPECT_EQ(b.for_sink(1).rows, 10);
        std::vector<stored_row> cloud, bucket;
        b.read(0, 0, 100, SIZE_MAX, cloud);
        b.read(1, 0, 100, SIZE_MAX, bucket);
        ASSERT_EQ(cloud.size(), 5u);
        ASSERT_EQ(bucket.size(), 10u);
        EXPECT_EQ(cloud.front().seq, 6u);
        EXPECT_EQ(cloud.front().topic, "old/5");
        for (const auto& r : bucket) EXPECT_TRUE(r.props.empty());
        // New rows carry props; old rows drain as before.
        const row_props p = frame_props();
        EXPECT_EQ(b.append("new", "q", 1, 200, nullptr, &p).seq, 11u);
        b.ack(0, 5, 11);
        EXPECT_EQ(b.for_sink(0).rows, 0);
        std::vector<stored_row> rest;
        b.read(1, 0, 100, SIZE_MAX, rest);
        ASSERT_EQ(rest.size(), 10u);
        b.ack(1, 0, 10);
        EXPECT_EQ(b.total().rows, 0);
    }
    EXPECT_EQ(raw_props(11), "missing");  // acknowledged by both: deleted
}

}  // namespace
}  // namespace egw::storage
