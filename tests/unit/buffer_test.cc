// SPDX-License-Identifier: Apache-2.0
// The buffer against real SQLite files: order, acknowledgement, exact byte accounting, the
// three when_full policies, crash recovery and a corrupt file.
#include "storage/buffer.h"
#include "storage/batches.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace egw::storage {
namespace {

class buffer_test : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/egw-buffer-XXXXXX";
        dir_ = ::mkdtemp(tmpl);
        opts_.path = dir_ + "/buffer.db";
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    static append_result add(buffer& b, const std::string& topic, const std::string& payload,
                             uint64_t sinks = 1) {
        return b.append(topic, payload, sinks, 1000, nullptr);
    }

    std::string dir_;
    buffer_options opts_;
};

TEST_F(buffer_test, rows_come_back_in_sequence_order_byte_exact) {
    buffer b(opts_);
    std::string binary;
    for (int i = 0; i < 256; ++i) binary.push_back(static_cast<char>(i));
    EXPECT_EQ(add(b, "t/1", "").seq, 1u);
    EXPECT_EQ(add(b, "t/2", binary).seq, 2u);
    EXPECT_EQ(add(b, "t/3", "three").seq, 3u);
    std::vector<stored_row> rows;
    auto r = b.read(0, 0, 10, SIZE_MAX, rows);
    ASSERT_EQ(rows.size(), 3u);
    EXPECT_EQ(r.vouched, 3u);
    EXPECT_TRUE(r.complete);
    EXPECT_EQ(rows[0].payload, "");
    EXPECT_EQ(rows[1].payload, binary);
    EXPECT_EQ(rows[2].topic, "t/3");
    EXPECT_EQ(b.total().rows, 3);
    EXPECT_EQ(b.total().bytes, static_cast<int64_t>(3 + 3 + 256 + 3 + 5));
}

TEST_F(buffer_test, a_batch_sink_reads_a_backlog_of_large_rows_a_few_at_a_time) {
    buffer b(opts_);
    const int bit = b.sink_bit("archive");
    for (int i = 0; i < 10; ++i)
        b.append("cam", std::string(1000, 'x'), uint64_t{1} << bit, 1000, nullptr);
    batch_store store(b, bit);
    std::vector<stored_row> rows;
    // About 2500 bytes: the third row reaches it and is the last.
    EXPECT_FALSE(store.read(0, 0, 100, rows, 2500));
    ASSERT_EQ(rows.size(), 3u);
    EXPECT_EQ(rows.back().seq, 3u);
    rows.clear();
    EXPECT_FALSE(store.read(0, 0, 100, rows, 10)) << "at least one row";
    EXPECT_EQ(rows.size(), 1u);
    rows.clear();
    EXPECT_TRUE(store.read(0, 8, 100, rows, 10)) << "a recorded range is read whole";
    EXPECT_EQ(rows.size(), 8u);
    rows.clear();
    EXPECT_TRUE(store.read(0, 0, 100, rows)) << "no byte bound by default";
    EXPECT_EQ(rows.size(), 10u);
}

TEST_F(buffer_test, a_full_batch_vouches_only_for_what_it_returned) {
    buffer b(opts_);
    for (int i = 0; i < 5; ++i) add(b, "t", "x");
    std::vector<stored_row> rows;
    auto r = b.read(0, 0, 2, SIZE_MAX, rows);
    EXPECT_EQ(r.vouched, 2u);
    EXPECT_FALSE(r.complete);
    rows.clear();
    r = b.read(0, 2, 10, SIZE_MAX, rows);
    EXPECT_EQ(r.vouched, 5u);
    EXPECT_TRUE(r.complete);
    EXPECT_EQ(rows.size(), 3u);
}

TEST_F(buffer_test, a_byte_budget_cuts_a_batch_short_but_never_empty) {
    buffer b(opts_);
    for (int i = 0; i < 5; ++i) add(b, "t", std::string(999, 'x'));  // 1000 bytes a row
    std::vector<stored_row> rows;
    auto r = b.read(0, 0, 100, 2500, rows);
    EXPECT_EQ(rows.size(), 3u);  // stops once the budget is reached
    EXPECT_EQ(r.vouched, 3u);
    EXPECT_FALSE(r.complete);
    rows.clear();
    r = b.read(0, 3, 100, 1, rows);
    EXPECT_EQ(rows.size(), 1u);
    EXPECT_FALSE(r.complete);
}

TEST_F(buffer_test, a_row_leaves_only_when_every_sink_acknowledged) {
    buffer b(opts_);
    const int cloud = b.sink_bit("cloud"), archive = b.sink_bit("archive");
    EXPECT_NE(cloud, archive);
    EXPECT_EQ(b.sink_bit("cloud"), cloud);
    const uint64_t both = (1u << cloud) | (1u << archive);
    add(b, "t", "a", both);
    add(b, "t", "b", 1u << archive);
    EXPECT_EQ(b.for_sink(cloud).rows, 1);
    EXPECT_EQ(b.for_sink(archive).rows, 2);
    b.ack(cloud, 0, 2);
    EXPECT_EQ(b.for_sink(cloud).rows, 0);
    EXPECT_EQ(b.total().rows, 2);
    std::vector<stored_row> rows;
    b.read(cloud, 0, 10, SIZE_MAX, rows);
    EXPECT_TRUE(rows.empty());
    b.ack(archive, 0, 2);
    EXPECT_EQ(b.total().rows, 0);
    EXPECT_EQ(b.total().bytes, 0);
}

// A reload that removes a sink races with messages routed by the old route table: once the
// sink is out of use, no new row may carry its bit (its rows are released only once).
TEST_F(buffer_test, bits_of_sinks_out_of_use_are_stripped_on_append) {
    buffer b(opts_);
    const int cloud = b.sink_bit("cloud"), gone = b.sink_bit("gone");
    b.set_sinks_in_use(uint64_t{1} << cloud);
    auto r = add(b, "t", "both", (1u << cloud) | (1u << gone));
    ASSERT_EQ(r.status, append_status::stored);
    EXPECT_EQ(b.for_sink(cloud).rows, 1);
    EXPECT_EQ(b.for_sink(gone).rows, 0);
    std::vector<stored_row> rows;
    b.read(cloud, 0, 10, SIZE_MAX, rows);
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0].sinks, uint64_t{1} << cloud);

    EXPECT_EQ(add(b, "t", "only the removed one", 1u << gone).status, append_status::no_sink);
    EXPECT_EQ(b.total().rows, 1);
}

// Group commit: one transaction for many messages, with the same per-message outcomes as
// append() and the rows seen by the loop in commit order.
TEST_F(buffer_test, a_batch_stores_in_order_and_reports_each_message) {
    opts_.max_bytes = 1000;
    buffer b(opts_);
    const std::string big(2000, 'x');
    const std::vector<incoming> in{
        {"t", "a", 1, 1}, {"t", big, 1, 2}, {"t", "b", 0, 3}, {"t", "c", 1, 4}};
    std::vector<uint64_t> seen;
    std::vector<append_result> out;
    auto r = b.append_batch(
        in, [&](uint64_t seq, const incoming&) { seen.push_back(seq); }, out);
    EXPECT_EQ(r.handled, 4u);
    EXPECT_EQ(r.stopped, append_status::stored);
    ASSERT_EQ(out.size(), 4u);
    EXPECT_EQ(out[0].status, append_status::stored);
    EXPECT_EQ(out[1].status, append_status::too_large);
    EXPECT_EQ(out[2].status, append_status::no_sink);
    EXPECT_EQ(out[3].status, append_status::stored);
    EXPECT_EQ(out[3].seq, out[0].seq + 1);
    EXPECT_EQ(seen, (std::vector<uint64_t>{out[0].seq, out[3].seq}));
    EXPECT_EQ(b.total().rows, 2);
    EXPECT_EQ(b.total().bytes, 4);
    EXPECT_EQ(b.last_seq(), out[3].seq);
}

TEST_F(buffer_test, a_batch_stops_where_block_has_no_room_and_drop_oldest_evicts_within_it) {
    opts_.max_bytes = 50;
    opts_.policy = when_full::block;
    {
        buffer b(opts_);
        std::vector<incoming> in(8, incoming{"t", "123456789", 1, 0});  // 10 bytes each
        std::vector<append_result> out;
        auto r = b.append_batch(in, nullptr, out);
        EXPECT_EQ(r.handled, 5u);
        EXPECT_EQ(r.stopped, append_status::full);
        EXPECT_EQ(b.total().bytes, 50);
    }
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    opts_.policy = when_full::drop_oldest;
    buffer b(opts_);
    std::vector<incoming> in(8, incoming{"t", "123456789", 1, 0});
    std::vector<append_result> out;
    auto r = b.append_batch(in, nullptr, out);
    EXPECT_EQ(r.handled, 8u);
    uint64_t evicted = 0;
    for (const auto& o : out) evicted += o.evicted;
    EXPECT_EQ(evicted, 3u);
    EXPECT_EQ(b.total().rows, 5);
    EXPECT_EQ(b.total().bytes, 50);
    std::vector<stored_row> rows;
    b.read(0, 0, 10, SIZE_MAX, rows);
    ASSERT_EQ(rows.size(), 5u);
    EXPECT_EQ(rows.front().seq, 4u);
}

// An acknowledgement far behind (a long drain, a slow worker) is committed in several
// transactions; the outcome must be the same as one: exact totals, nothing else touched.
TEST_F(buffer_test, a_long_acknowledged_range_clears_exactly_that_range) {
    buffer b(opts_);
    const int cloud = b.sink_bit("cloud"), archive = b.sink_bit("archive");
    const uint64_t both = (1u << cloud) | (1u << archive);
    for (int i = 0; i < 1000; ++i) add(b, "t", "payload", i % 3 == 0 ? 1u << archive : both);
    const int64_t cloud_rows = b.for_sink(cloud).rows;
    EXPECT_EQ(cloud_rows, 666);

    b.ack(cloud, 0, 900);  // seq 1..900
    int64_t left_for_cloud = 0;
    for (int seq = 901; seq <= 1000; ++seq) left_for_cloud += (seq - 1) % 3 != 0;
    EXPECT_EQ(b.for_sink(cloud).rows, left_for_cloud);
    EXPECT_EQ(b.for_sink(cloud).bytes, left_for_cloud * 8);
    EXPECT_EQ(b.for_sink(archive).rows, 1000);
    EXPECT_EQ(b.total().rows, 1000);
    std::vector<stored_row> rows;
    b.read(cloud, 0, 1000, SIZE_MAX, rows);
    ASSERT_EQ(rows.size(), static_cast<size_t>(left_for_cloud));
    EXPECT_EQ(rows.front().seq, 902u);

    b.ack(archive, 0, 1000);
    EXPECT_EQ(b.total().rows, left_for_cloud);
    b.ack(cloud, 900, 1000);
    EXPECT_EQ(b.total().rows, 0);
    EXPECT_EQ(b.total().bytes, 0);
    EXPECT_EQ(b.for_sink(archive).rows, 0);
}
// A batch sink that is the only one a row waits for deletes its acknowledged rows without the
// second (clearing) pass; a range where some rows also wait for another sink, in some of the
// ack's steps and not in others, must still keep exactly those rows, with that sink's bit only.
TEST_F(buffer_test, an_ack_of_rows_only_one_sink_waits_for_deletes_them_and_keeps_shared_ones) {
    buffer b(opts_);
    const int cloud = b.sink_bit("cloud"), archive = b.sink_bit("archive");
    const uint64_t only = 1u << archive, both = only | (1u << cloud);
    // seq 1..300 for the archive alone (steps of 128 rows without a shared row), then 301..700
    // with a shared row at 512 and 640 (the end of a step of 128 from 384) and every 50th.
    auto shared = [](int seq) { return seq > 300 && (seq == 512 || seq == 640 || seq % 50 == 0); };
    int64_t n_shared = 0;
    for (int seq = 1; seq <= 700; ++seq) {
        add(b, "t", "payload", shared(seq) ? both : only);
        n_shared += shared(seq);
    }
    add(b, "t", "payload", only);  // seq 701: beyond the acknowledged range

    b.ack(archive, 0, 700);
    EXPECT_EQ(b.for_sink(archive).rows, 1);
    EXPECT_EQ(b.for_sink(archive).bytes, 8);
    EXPECT_EQ(b.for_sink(cloud).rows, n_shared);
    EXPECT_EQ(b.total().rows, n_shared + 1);
    EXPECT_EQ(b.total().bytes, (n_shared + 1) * 8);
    std::vector<stored_row> rows;
    b.read(cloud, 0, 1000, SIZE_MAX, rows);
    ASSERT_EQ(rows.size(), static_cast<size_t>(n_shared));
    for (const auto& r : rows) {
        EXPECT_TRUE(shared(static_cast<int>(r.seq))) << r.seq;
        EXPECT_EQ(r.sinks, 1u << cloud) << r.seq;  // the archive's bit is cleared
    }
    rows.clear();
    b.read(archive, 0, 1000, SIZE_MAX, rows);
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows.front().seq, 701u);

    // The other sink's acknowledgement then leaves only the row beyond the range.
    b.ack(cloud, 0, 700);
    EXPECT_EQ(b.total().rows, 1);
}

TEST_F(buffer_test, sequence_numbers_survive_restart_even_when_empty) {
    {
        buffer b(opts_);
        for (int i = 0; i < 10; ++i) add(b, "t", "x");
        b.ack(0, 0, 10);
        EXPECT_EQ(b.total().rows, 0);
    }
    buffer b(opts_);
    EXPECT_EQ(b.last_seq(), 10u);
    EXPECT_EQ(add(b, "t", "x").seq, 11u);
}

TEST_F(buffer_test, totals_are_exact_after_a_crash) {
    // A child process appends, acknowledges part and dies without running any destructor.
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        buffer b(opts_);
        for (int i = 0; i < 300; ++i)
            add(b, "topic/" + std::to_string(i % 7), std::string(i % 50, 'p'));
        b.maintain();  // a snapshot in the middle
        for (int i = 0; i < 200; ++i) add(b, "t", "0123456789");
        b.ack(0, 0, 100);
        for (int i = 0; i < 50; ++i) add(b, "t", "after");
        ::_exit(0);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFEXITED(status));
    buffer b(opts_);
    int64_t rows = 0, bytes = 0;
    std::vector<stored_row> all;
    b.read(0, 0, 100000, SIZE_MAX, all);
    for (const auto& r : all) {
        ++rows;
        bytes += static_cast<int64_t>(r.topic.size() + r.payload.size());
    }
    EXPECT_EQ(rows, 450);
    EXPECT_EQ(b.total().rows, rows);
    EXPECT_EQ(b.total().bytes, bytes);
    EXPECT_EQ(b.for_sink(0).bytes, bytes);
    // An unclean stop moves the sequence past anything the lost tail could have used.
    EXPECT_EQ(b.last_seq(), 550u + unclean_seq_gap);
    EXPECT_EQ(all.front().seq, 101u);
}

TEST_F(buffer_test, drop_oldest_keeps_the_newest_within_max_bytes) {
    opts_.max_bytes = 100;
    opts_.policy = when_full::drop_oldest;
    buffer b(opts_);
    uint64_t evicted = 0;
    for (int i = 0; i < 30; ++i) {
        auto r = add(b, "t", "123456789");  // 10 bytes a row
        ASSERT_EQ(r.status, append_status::stored);
        evicted += r.evicted;
        EXPECT_LE(b.total().bytes, 100);
    }
    EXPECT_EQ(evicted, 20u);
    std::vector<stored_row> rows;
    b.read(0, 0, 100, SIZE_MAX, rows);
    ASSERT_EQ(rows.size(), 10u);
    EXPECT_EQ(rows.front().seq, 21u);
    // The totals survive a reopen exactly.
    b.maintain();
}

TEST_F(buffer_test, drop_newest_keeps_the_oldest) {
    opts_.max_bytes = 100;
    opts_.policy = when_full::drop_newest;
    buffer b(opts_);
    int dropped = 0;
    for (int i = 0; i < 30; ++i)
        dropped += add(b, "t", "123456789").status == append_status::dropped_full;
    EXPECT_EQ(dropped, 20);
    std::vector<stored_row> rows;
    b.read(0, 0, 100, SIZE_MAX, rows);
    ASSERT_EQ(rows.size(), 10u);
    EXPECT_EQ(rows.back().seq, 10u);
}

TEST_F(buffer_test, block_reports_full_without_storing_or_waiting) {
    opts_.max_bytes = 20;
    opts_.policy = when_full::block;
    buffer b(opts_);
    add(b, "t", "123456789");
    add(b, "t", "123456789");
    EXPECT_EQ(add(b, "t", "123456789").status, append_status::full);
    EXPECT_EQ(b.total().rows, 2);
    b.ack(0, 0, 1);
    auto r = add(b, "t", "123456789");
    EXPECT_EQ(r.status, append_status::stored);
    EXPECT_EQ(r.seq, 3u);
}

TEST_F(buffer_test, totals_of_an_emptied_sink_stay_exact_across_restarts) {
    {
        buffer b(opts_);
        for (int i = 0; i < 10; ++i) add(b, "t", "x");
    }
    {
        buffer b(opts_);
        b.ack(0, 0, 10);
    }
    buffer b(opts_);
    EXPECT_EQ(b.for_sink(0).rows, 0);
    EXPECT_EQ(b.total().rows, 0);
}

TEST_F(buffer_test, a_message_larger_than_the_buffer_is_refused) {
    opts_.max_bytes = 10;
    buffer b(opts_);
    EXPECT_EQ(add(b, "t", std::string(20, 'x')).status, append_status::too_large);
    EXPECT_EQ(b.total().rows, 0);
}

TEST_F(buffer_test, a_corrupt_file_is_moved_aside) {
    {
        std::ofstream f(opts_.path, std::ios::binary);
        f << std::string(8192, '\x5a');
    }
    buffer b(opts_);
    ASSERT_TRUE(b.quarantined());
    EXPECT_TRUE(std::filesystem::exists(b.quarantined_path()));
    auto r = add(b, "t", "x");
    EXPECT_EQ(r.status, append_status::stored);
    // Sequence numbers continue far above anything the lost file can have used.
    EXPECT_GT(r.seq, uint64_t{1'000'000'000'000'000});
}

TEST_F(buffer_test, stored_callback_sees_rows_in_commit_order) {
    buffer b(opts_);
    std::vector<uint64_t> seen;
    for (int i = 0; i < 5; ++i) {
        b.append("t", "x", 1, 0, [&](uint64_t seq, const incoming&) { seen.push_back(seq); });
    }
    EXPECT_EQ(seen, (std::vector<uint64_t>{1, 2, 3, 4, 5}));
}

}  // namespace
}  // namespace egw::storage
