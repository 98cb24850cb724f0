// SPDX-License-Identifier: Apache-2.0
// batch_machine without I/O: the tests play the adapter (reads, encodes, uploads).
#include "gateway/sinks/batch_machine.h"

#include <gtest/gtest.h>

namespace egw {
namespace {

using clock = batch_machine::clock;
using action = batch_machine::action;
using namespace std::chrono_literals;

storage::stored_row row(uint64_t seq, int64_t ts = 1000) {
    return {seq, ts, 1, "t", "{\"v\":" + std::to_string(seq) + "}", {}};
}

std::vector<storage::stored_row> rows(uint64_t from, uint64_t to) {
    std::vector<storage::stored_row> out;
    for (uint64_t s = from; s <= to; ++s) out.push_back(row(s));
    return out;
}

batch_limits limits(size_t max_rows = 10) {
    batch_limits l;
    l.max_rows = max_rows;
    l.max_delay = 1000ms;
    l.backoff_initial = 100ms;
    l.backoff_max = 1000ms;
    return l;
}

// Plays recovery with nothing recorded.
void start(batch_machine& m, clock::time_point now) {
    ASSERT_EQ(m.next(now, 0).what, action::recover);
    m.on_recovered({}, 0);
}

// Encodes and records every row it is given, as the adapter would.
void encode_all(batch_machine& m, action& a, clock::time_point now) {
    ASSERT_EQ(a.what, action::encode);
    m.on_encoded(std::move(a.rows), {}, now);
}

TEST(batch_machine, a_backlog_drains_in_full_batches_oldest_first) {
    batch_machine m(limits(10), 1);
    auto now = clock::now();
    start(m, now);
    auto a = m.next(now, 0);
    ASSERT_EQ(a.what, action::read);
    EXPECT_EQ(a.after, 0u);
    EXPECT_EQ(a.limit, 10u);
    m.on_read(rows(1, 10), false);
    a = m.next(now, 0);
    encode_all(m, a, now);
    EXPECT_EQ(*m.current(), (batch_range{1, 10}));
    EXPECT_EQ(m.next(now, 0).what, action::upload);
    EXPECT_EQ(m.next(now, 0).what, action::none) << "one job at a time";
    m.on_uploaded(upload_outcome::ok, now);
    EXPECT_EQ(m.acked_through(), 10u);
    a = m.next(now, 0);
    ASSERT_EQ(a.what, action::read);
    EXPECT_EQ(a.after, 10u);
}

TEST(batch_machine, a_partial_batch_waits_for_max_delay_from_its_first_rows_ingest_time) {
    batch_machine m(limits(10), 1);
    auto now = clock::now();
    start(m, now);
    m.next(now, 0);
    m.on_read({row(1, 5000), row(2, 5100)}, true);
    EXPECT_EQ(m.next(now, 5500).what, action::none);
    auto a = m.next(now, 6000);
    ASSERT_EQ(a.what, action::encode);
    EXPECT_EQ(a.rows.size(), 2u);
}

TEST(batch_machine, a_new_row_during_a_read_is_not_missed) {
    batch_machine m(limits(10), 1);
    auto now = clock::now();
    start(m, now);
    ASSERT_EQ(m.next(now, 0).what, action::read);
    m.on_new_row();  // committed after the read's snapshot, maybe
    m.on_read({row(1, 5000)}, true);
    auto a = m.next(now, 5001);
    EXPECT_EQ(a.what, action::read) << "the read is repeated instead of waiting for max_delay";
    EXPECT_EQ(a.after, 1u);
}

TEST(batch_machine, a_failed_upload_retries_the_same_range_after_a_backoff) {
    batch_machine m(limits(5), 1);
    auto now = clock::now();
    start(m, now);
    m.next(now, 0);
    m.on_read(rows(1, 5), false);
    auto a = m.next(now, 0);
    encode_all(m, a, now);
    ASSERT_EQ(m.next(now, 0).what, action::upload);
    m.on_uploaded(upload_outcome::transient, now);
    EXPECT_EQ(m.state(), batch_state::offline);
    EXPECT_EQ(m.next(now, 0).what, action::none);
    EXPECT_LE(m.retry_at() - now, 100ms);
    EXPECT_GE(m.retry_at() - now, 50ms);
    ASSERT_EQ(m.next(m.retry_at(), 0).what, action::upload);
    EXPECT_EQ(*m.current(), (batch_range{1, 5}));
    m.on_uploaded(upload_outcome::ok, now);
    EXPECT_NE(m.state(), batch_state::offline);
}

TEST(batch_machine, a_refusal_is_an_error_retried_every_10_s_or_on_reload) {
    batch_machine m(limits(5), 1);
    auto now = clock::now();
    start(m, now);
    m.next(now, 0);
    m.on_read(rows(1, 5), false);
    auto a = m.next(now, 0);
    encode_all(m, a, now);
    m.next(now, 0);
    m.on_uploaded(upload_outcome::refused, now);
    EXPECT_EQ(m.state(), batch_state::error);
    EXPECT_EQ(m.retry_at() - now, 10s);
    EXPECT_EQ(m.next(now + 9s, 0).what, action::none);
    m.on_reload();
    EXPECT_EQ(m.next(now + 1s, 0).what, action::upload);
}

TEST(batch_machine, a_batch_too_large_is_split_in_recorded_halves_down_to_one_row) {
    batch_machine m(limits(4), 1);
    auto now = clock::now();
    start(m, now);
    m.next(now, 0);
    m.on_read(rows(1, 4), false);
    auto a = m.next(now, 0);
    encode_all(m, a, now);
    m.next(now, 0);
    m.on_uploaded(upload_outcome::too_large, now);
    a = m.next(now, 0);
    ASSERT_EQ(a.what, action::split);
    EXPECT_EQ(a.range, (batch_range{1, 4}));
    EXPECT_EQ(a.halves[0], (batch_range{1, 2}));
    EXPECT_EQ(a.halves[1], (batch_range{3, 4}));
    m.on_split_recorded(true, now);
    // The first half, as recorded: encoded without a new record.
    a = m.next(now, 0);
    ASSERT_EQ(a.what, action::encode);
    EXPECT_TRUE(a.recorded);
    EXPECT_EQ(a.rows.size(), 2u);
    encode_all(m, a, now);
    EXPECT_EQ(*m.current(), (batch_range{1, 2}));
    m.next(now, 0);
    m.on_uploaded(upload_outcome::too_large, now);
    a = m.next(now, 0);
    ASSERT_EQ(a.what, action::split);
    m.on_split_recorded(true, now);
    a = m.next(now, 0);
    encode_all(m, a, now);
    m.next(now, 0);
    m.on_uploaded(upload_outcome::ok, now);  // row 1 alone is fine
    EXPECT_EQ(m.acked_through(), 1u);
    a = m.next(now, 0);
    encode_all(m, a, now);
    EXPECT_EQ(*m.current(), (batch_range{2, 2}));
    m.next(now, 0);
    m.on_uploaded(upload_outcome::too_large, now);  // row 2 is refused on its own
    a = m.next(now, 0);
    ASSERT_EQ(a.what, action::drop);
    m.on_dropped(true, now);
    EXPECT_EQ(m.dropped(), 1u);
    EXPECT_EQ(m.acked_through(), 2u);
    a = m.next(now, 0);
    encode_all(m, a, now);
    EXPECT_EQ(*m.current(), (batch_range{3, 4})) << "the second half keeps its recorded range";
    EXPECT_NE(m.state(), batch_state::error);
}

TEST(batch_machine, after_a_restart_the_recorded_range_is_sent_again_exactly) {
    batch_machine m(limits(100), 1);
    auto now = clock::now();
    ASSERT_EQ(m.next(now, 0).what, action::recover);
    m.on_recovered({{11, 20}, {21, 25}}, 10);
    EXPECT_EQ(m.acked_through(), 10u) << "ranges recorded as uploaded are acknowledged";
    auto a = m.next(now, 0);
    ASSERT_EQ(a.what, action::read);
    EXPECT_EQ(a.after, 10u);
    EXPECT_EQ(a.through, 20u);
    auto r = rows(11, 20);
    r.erase(r.begin() + 3);  // one row evicted meanwhile: the range stays
    m.on_read(std::move(r), true);
    a = m.next(now, 0);
    ASSERT_EQ(a.what, action::encode);
    EXPECT_TRUE(a.recorded);
    EXPECT_EQ(a.range, (batch_range{11, 20}));
    encode_all(m, a, now);
    EXPECT_EQ(*m.current(), (batch_range{11, 20}));
    m.next(now, 0);
    m.on_uploaded(upload_outcome::ok, now);
    a = m.next(now, 0);
    ASSERT_EQ(a.what, action::read);
    EXPECT_EQ(a.through, 25u);
    m.on_read({}, true);  // every row of it is gone
    a = m.next(now, 0);
    ASSERT_EQ(a.what, action::forget);
    m.on_forgotten(true, now);
    EXPECT_EQ(m.acked_through(), 25u);
    a = m.next(now, 0);
    ASSERT_EQ(a.what, action::read);
    EXPECT_EQ(a.after, 25u);
    EXPECT_EQ(a.through, 0u);
}

TEST(batch_machine, rows_the_encoder_leaves_out_start_the_next_batch) {
    batch_machine m(limits(10), 1);
    auto now = clock::now();
    start(m, now);
    m.next(now, 0);
    m.on_read(rows(1, 10), false);
    auto a = m.next(now, 0);
    ASSERT_EQ(a.what, action::encode);
    std::vector<storage::stored_row> used(a.rows.begin(), a.rows.begin() + 6);
    std::vector<storage::stored_row> rest(a.rows.begin() + 6, a.rows.end());
    m.on_encoded(std::move(used), std::move(rest), now);
    EXPECT_EQ(*m.current(), (batch_range{1, 6}));
    m.next(now, 0);
    m.on_uploaded(upload_outcome::ok, now);
    a = m.next(now, 0);
    ASSERT_EQ(a.what, action::read) << "4 rows pending, the batch is not full yet";
    m.on_read(rows(11, 16), false);
    a = m.next(now, 0);
    ASSERT_EQ(a.what, action::encode);
    EXPECT_EQ(a.rows.front().seq, 7u);
    EXPECT_EQ(a.rows.back().seq, 16u);
}

batch_limits pipelined(size_t max_rows, size_t ahead) {
    batch_limits l = limits(max_rows);
    l.prepare_ahead = ahead;
    return l;
}

// Reads and encodes one full batch of rows from..to (the machine must ask for exactly that).
void prepare(batch_machine& m, uint64_t from, uint64_t to, clock::time_point now) {
    auto a = m.next(now, 0);
    ASSERT_EQ(a.what, action::read);
    EXPECT_EQ(a.after, from - 1);
    m.on_read(rows(from, to), false);
    a = m.next(now, 0);
    ASSERT_EQ(a.what, action::encode);
    EXPECT_EQ(a.rows.front().seq, from);
    encode_all(m, a, now);
}

TEST(batch_machine, pipelined_the_next_batches_are_prepared_while_one_uploads) {
    batch_machine m(pipelined(10, 2), 1);
    auto now = clock::now();
    start(m, now);
    prepare(m, 1, 10, now);
    ASSERT_EQ(m.next(now, 0).what, action::upload);
    EXPECT_EQ(*m.current(), (batch_range{1, 10}));
    prepare(m, 11, 20, now);  // while 1-10 uploads
    prepare(m, 21, 30, now);
    EXPECT_EQ(m.prepared(), 3u);
    EXPECT_EQ(m.next(now, 0).what, action::none) << "prepare_ahead = 2 batches, no more";
    EXPECT_EQ(m.acked_through(), 0u);
    m.on_uploaded(upload_outcome::ok, now);
    EXPECT_EQ(m.acked_through(), 10u) << "acknowledged in order, only what was uploaded";
    EXPECT_EQ(m.take_finished().size(), 10u);
    auto a = m.next(now, 0);
    ASSERT_EQ(a.what, action::upload);
    EXPECT_EQ(*m.current(), (batch_range{11, 20}));
    a = m.next(now, 0);
    ASSERT_EQ(a.what, action::read) << "room for one more";
    EXPECT_EQ(a.after, 30u);
}

TEST(batch_machine, pipelined_the_next_rows_are_read_while_a_batch_is_encoded) {
    batch_machine m(pipelined(10, 2), 1);
    auto now = clock::now();
    start(m, now);
    auto a = m.next(now, 0);
    ASSERT_EQ(a.what, action::read);
    m.on_read(rows(1, 10), false);
    auto enc = m.next(now, 0);
    ASSERT_EQ(enc.what, action::encode);
    a = m.next(now, 0);
    ASSERT_EQ(a.what, action::read) << "reading overlaps the encoding";
    EXPECT_EQ(a.after, 10u);
    EXPECT_EQ(a.limit, 10u);
    EXPECT_EQ(m.next(now, 0).what, action::none) << "one read and one encoding at a time";
    m.on_read(rows(11, 20), false);
    EXPECT_EQ(m.next(now, 0).what, action::none) << "a batch of rows waits: no further read";
    // The encoder keeps 1-7 (max_bytes) and gives 8-10 back: they go before 11-20.
    auto used = std::move(enc.rows);
    std::vector<storage::stored_row> rest(std::make_move_iterator(used.begin() + 7),
                                          std::make_move_iterator(used.end()));
    used.resize(7);
    m.on_encoded(std::move(used), std::move(rest), now);
    ASSERT_EQ(m.next(now, 0).what, action::upload);
    EXPECT_EQ(*m.current(), (batch_range{1, 7}));
    a = m.next(now, 0);
    ASSERT_EQ(a.what, action::encode);
    EXPECT_EQ(a.rows.front().seq, 8u);
    EXPECT_EQ(a.rows.back().seq, 17u);
    auto b = m.next(now, 0);
    ASSERT_EQ(b.what, action::read) << "an upload, an encoding and a read at once";
    EXPECT_EQ(b.after, 20u);
    EXPECT_EQ(b.limit, 7u) << "a batch of rows at most, with the 3 pending";
    encode_all(m, a, now);
    EXPECT_EQ(m.next(now, 0).what, action::none) << "one read at a time; 3 rows are no batch";
    m.on_read(rows(21, 27), false);
    a = m.next(now, 0);
    ASSERT_EQ(a.what, action::encode);
    EXPECT_EQ(a.rows.front().seq, 18u);
    EXPECT_EQ(a.rows.back().seq, 27u);
    EXPECT_EQ(m.next(now, 0).what, action::none) << "2 prepared and 1 encoding: prepare_ahead full";
}

TEST(batch_machine, unpipelined_reads_and_encodings_take_turns) {
    batch_machine m(limits(10), 1);
    auto now = clock::now();
    start(m, now);
    auto a = m.next(now, 0);
    ASSERT_EQ(a.what, action::read);
    m.on_read(rows(1, 10), false);
    a = m.next(now, 0);
    ASSERT_EQ(a.what, action::encode);
    EXPECT_EQ(m.next(now, 0).what, action::none);
    encode_all(m, a, now);
    ASSERT_EQ(m.next(now, 0).what, action::upload);
    EXPECT_EQ(m.next(now, 0).what, action::none);
}

TEST(batch_machine, pipelined_a_failed_upload_keeps_the_prepared_batches_in_order) {
    batch_machine m(pipelined(5, 1), 1);
    auto now = clock::now();
    start(m, now);
    prepare(m, 1, 5, now);
    ASSERT_EQ(m.next(now, 0).what, action::upload);
    prepare(m, 6, 10, now);
    m.on_uploaded(upload_outcome::transient, now);
    EXPECT_EQ(m.state(), batch_state::offline);
    EXPECT_EQ(m.next(now, 0).what, action::none) << "backoff";
    ASSERT_EQ(m.next(m.retry_at(), 0).what, action::upload);
    EXPECT_EQ(*m.current(), (batch_range{1, 5})) << "the same range again, not the next one";
    m.on_uploaded(upload_outcome::ok, now);
    ASSERT_EQ(m.next(now, 0).what, action::upload);
    EXPECT_EQ(*m.current(), (batch_range{6, 10}));
    m.on_uploaded(upload_outcome::ok, now);
    EXPECT_EQ(m.acked_through(), 10u);
}

TEST(batch_machine, pipelined_a_split_waits_for_the_preparation_and_rewinds_behind_it) {
    batch_machine m(pipelined(4, 2), 1);
    auto now = clock::now();
    start(m, now);
    prepare(m, 1, 4, now);
    ASSERT_EQ(m.next(now, 0).what, action::upload);
    prepare(m, 5, 8, now);
    auto a = m.next(now, 0);
    ASSERT_EQ(a.what, action::read);  // 9-12 under way
    m.on_uploaded(upload_outcome::too_large, now);
    EXPECT_EQ(m.next(now, 0).what, action::none) << "no split while a preparation runs";
    m.on_read(rows(9, 12), false);
    a = m.next(now, 0);
    ASSERT_EQ(a.what, action::split) << "the split comes before any further preparation";
    EXPECT_EQ(a.halves[0], (batch_range{1, 2}));
    EXPECT_EQ(a.halves[1], (batch_range{3, 4}));
    m.on_split_recorded(true, now);
    EXPECT_EQ(m.prepared(), 0u);
    // The halves, then 5-8 under its recorded range, then the rows read meanwhile.
    const batch_range expected[] = {{1, 2}, {3, 4}, {5, 8}};
    for (const auto& r : expected) {
        a = m.next(now, 0);
        ASSERT_EQ(a.what, action::encode);
        EXPECT_TRUE(a.recorded);
        EXPECT_EQ(a.range, r);
        encode_all(m, a, now);
        EXPECT_EQ(m.newest(), r);
        if (r == batch_range{1, 2}) {
            ASSERT_EQ(m.next(now, 0).what, action::upload);
            EXPECT_EQ(*m.current(), (batch_range{1, 2}));
        }
    }
    EXPECT_EQ(m.next(now, 0).what, action::none);
    m.on_uploaded(upload_outcome::ok, now);
    EXPECT_EQ(m.acked_through(), 2u);
    ASSERT_EQ(m.next(now, 0).what, action::upload);
    EXPECT_EQ(*m.current(), (batch_range{3, 4}));
    m.on_uploaded(upload_outcome::ok, now);
    ASSERT_EQ(m.next(now, 0).what, action::upload);
    EXPECT_EQ(*m.current(), (batch_range{5, 8}));
    a = m.next(now, 0);
    ASSERT_EQ(a.what, action::encode);
    EXPECT_FALSE(a.recorded);
    EXPECT_EQ(a.rows.front().seq, 9u);
    EXPECT_EQ(a.rows.back().seq, 12u);
}

TEST(batch_machine, pipelined_an_empty_recorded_range_is_forgotten_only_in_order) {
    batch_machine m(pipelined(100, 2), 1);
    auto now = clock::now();
    ASSERT_EQ(m.next(now, 0).what, action::recover);
    m.on_recovered({{1, 10}, {11, 20}}, 0);
    auto a = m.next(now, 0);
    ASSERT_EQ(a.what, action::read);
    m.on_read(rows(1, 10), true);
    a = m.next(now, 0);
    encode_all(m, a, now);
    ASSERT_EQ(m.next(now, 0).what, action::upload);
    a = m.next(now, 0);
    ASSERT_EQ(a.what, action::read);
    EXPECT_EQ(a.through, 20u);
    m.on_read({}, true);  // 11-20 evicted meanwhile
    EXPECT_EQ(m.next(now, 0).what, action::none) << "forgetting 11-20 would acknowledge past 1-10";
    m.on_uploaded(upload_outcome::ok, now);
    a = m.next(now, 0);
    ASSERT_EQ(a.what, action::forget);
    m.on_forgotten(true, now);
    EXPECT_EQ(m.acked_through(), 20u);
}

TEST(batch_machine, a_failed_read_of_a_recorded_range_is_retried_not_passed_over) {
    batch_machine m(pipelined(100, 2), 1);
    auto now = clock::now();
    ASSERT_EQ(m.next(now, 0).what, action::recover);
    m.on_recovered({{1, 10}}, 0);
    auto a = m.next(now, 0);
    ASSERT_EQ(a.what, action::read);
    EXPECT_EQ(a.through, 10u);
    m.on_read_failed(now);
    EXPECT_EQ(m.state(), batch_state::offline);
    EXPECT_EQ(m.next(now, 0).what, action::none) << "backoff";
    a = m.next(m.retry_at(), 0);
    ASSERT_EQ(a.what, action::read) << "the same range again, never a forget";
    EXPECT_EQ(a.after, 0u);
    EXPECT_EQ(a.through, 10u);
    m.on_read(rows(1, 10), true);
    a = m.next(m.retry_at(), 0);
    ASSERT_EQ(a.what, action::encode);
    EXPECT_EQ(a.range, (batch_range{1, 10}));
    EXPECT_EQ(m.acked_through(), 0u);
}

TEST(batch_machine, a_failed_read_of_new_rows_is_retried_from_the_same_place) {
    batch_machine m(pipelined(10, 2), 1);
    auto now = clock::now();
    start(m, now);
    auto a = m.next(now, 0);
    ASSERT_EQ(a.what, action::read);
    m.on_read_failed(now);
    a = m.next(m.retry_at(), 0);
    ASSERT_EQ(a.what, action::read);
    EXPECT_EQ(a.after, 0u);
}

TEST(batch_machine, pipelined_a_split_waits_for_a_read_under_way_beside_an_encoding) {
    batch_machine m(pipelined(4, 2), 1);
    auto now = clock::now();
    start(m, now);
    prepare(m, 1, 4, now);
    ASSERT_EQ(m.next(now, 0).what, action::upload);
    auto a = m.next(now, 0);
    ASSERT_EQ(a.what, action::read);
    m.on_read(rows(5, 8), false);
    auto enc = m.next(now, 0);
    ASSERT_EQ(enc.what, action::encode);  // 5-8
    auto rd = m.next(now, 0);
    ASSERT_EQ(rd.what, action::read);  // 9-12, beside the encoding
    m.on_uploaded(upload_outcome::too_large, now);
    EXPECT_EQ(m.next(now, 0).what, action::none);
    m.on_encoded(std::move(enc.rows), {}, now);
    EXPECT_EQ(m.next(now, 0).what, action::none) << "the read is still under way";
    m.on_read(rows(9, 12), false);
    a = m.next(now, 0);
    ASSERT_EQ(a.what, action::split);
    m.on_split_recorded(true, now);
    // The halves, 5-8 under its record, then 9-12 as a new batch: in order, nothing lost.
    const batch_range expected[] = {{1, 2}, {3, 4}, {5, 8}};
    for (const auto& r : expected) {
        a = m.next(now, 0);
        ASSERT_EQ(a.what, action::encode);
        EXPECT_EQ(a.range, r);
        encode_all(m, a, now);
        if (r == batch_range{1, 2}) ASSERT_EQ(m.next(now, 0).what, action::upload);
    }
    a = m.next(now, 0);
    ASSERT_EQ(a.what, action::none) << "prepare_ahead = 2: three batches prepared";
    m.on_uploaded(upload_outcome::ok, now);
    ASSERT_EQ(m.next(now, 0).what, action::upload);
    a = m.next(now, 0);
    ASSERT_EQ(a.what, action::encode);
    EXPECT_FALSE(a.recorded);
    EXPECT_EQ(a.rows.front().seq, 9u);
    EXPECT_EQ(a.rows.back().seq, 12u);
}

TEST(batch_machine, pipelined_by_one_reads_beside_an_encoding_only_with_nothing_uploading) {
    batch_machine m(pipelined(10, 1), 1);
    auto now = clock::now();
    start(m, now);
    prepare(m, 1, 10, now);
    ASSERT_EQ(m.next(now, 0).what, action::upload);
    auto a = m.next(now, 0);
    ASSERT_EQ(a.what, action::read);
    m.on_read(rows(11, 20), false);
    a = m.next(now, 0);
    ASSERT_EQ(a.what, action::encode);
    EXPECT_EQ(m.next(now, 0).what, action::none)
        << "one batch uploading and one encoding fill prepare_ahead = 1";
    encode_all(m, a, now);
    m.on_uploaded(upload_outcome::ok, now);
    ASSERT_EQ(m.next(now, 0).what, action::upload);
    a = m.next(now, 0);
    ASSERT_EQ(a.what, action::read);
    EXPECT_EQ(a.after, 20u);
}

}  // namespace
}  // namespace egw
