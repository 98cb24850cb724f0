// SPDX-License-Identifier: Apache-2.0
// The sink's delivery logic without sockets: order, window, rewind on disconnect, backoff.
#include "gateway/sink_machine.h"

#include <gtest/gtest.h>

namespace egw {
namespace {

using storage::stored_row;
using ms = std::chrono::milliseconds;

stored_row row(uint64_t seq) { return stored_row{seq, 0, 1, "t", std::to_string(seq), {}}; }

std::vector<stored_row> rows(uint64_t from, uint64_t to) {
    std::vector<stored_row> out;
    for (uint64_t s = from; s <= to; ++s) out.push_back(row(s));
    return out;
}

// Publishes everything the machine allows now; returns the seqs in send order.
std::vector<uint64_t> send_all(sink_machine& m) {
    std::vector<uint64_t> sent;
    while (const stored_row* r = m.next()) {
        sent.push_back(r->seq);
        m.sent();
    }
    return sent;
}

sink_limits small() {
    sink_limits l;
    l.window = 3;
    l.batch = 4;
    l.live_cap = 8;
    l.backoff_initial = ms(100);
    l.backoff_max = ms(1000);
    return l;
}

TEST(sink_machine, drains_the_backlog_then_goes_live_in_order) {
    sink_machine m(small(), 1);
    EXPECT_EQ(m.state(), sink_state::offline);
    m.on_connected();
    ASSERT_TRUE(m.wants_read());
    m.on_read(rows(1, 4), 4, false);  // a full batch: still behind
    EXPECT_EQ(m.state(), sink_state::draining);
    EXPECT_EQ(send_all(m), (std::vector<uint64_t>{1, 2, 3}));  // window of 3
    EXPECT_TRUE(m.on_ack(1));
    EXPECT_EQ(send_all(m), (std::vector<uint64_t>{4}));
    ASSERT_TRUE(m.wants_read());
    m.on_read(rows(5, 6), 7, true);  // short read: caught up through 7
    EXPECT_EQ(m.state(), sink_state::online);
    m.on_live(row(6));  // already read from the buffer: skipped
    m.on_live(row(8));
    EXPECT_TRUE(m.on_ack(2));
    EXPECT_TRUE(m.on_ack(3));
    EXPECT_TRUE(m.on_ack(4));
    EXPECT_EQ(send_all(m), (std::vector<uint64_t>{5, 6, 8}));
}

TEST(sink_machine, acks_advance_only_a_contiguous_prefix) {
    sink_machine m(small(), 1);
    m.on_connected();
    m.on_read(rows(1, 3), 3, true);
    send_all(m);
    EXPECT_TRUE(m.on_ack(2));
    EXPECT_EQ(m.acked_through(), 0u);
    EXPECT_FALSE(m.on_ack(2));  // duplicate
    EXPECT_TRUE(m.on_ack(1));
    EXPECT_EQ(m.acked_through(), 2u);
    EXPECT_FALSE(m.on_ack(99));
}

TEST(sink_machine, a_disconnect_rewinds_to_the_oldest_unacknowledged_row) {
    sink_machine m(small(), 1);
    m.on_connected();
    m.on_read(rows(1, 2), 2, true);
    send_all(m);
    m.on_ack(1);
    m.on_disconnected(sink_machine::clock::now());
    EXPECT_EQ(m.state(), sink_state::offline);
    EXPECT_EQ(m.inflight(), 0u);
    m.on_live(row(3));  // offline: left in the buffer
    m.on_connected();
    EXPECT_EQ(m.read_after(), 1u);  // row 2 is read and sent again
    m.on_read(rows(2, 3), 3, true);
    EXPECT_EQ(send_all(m), (std::vector<uint64_t>{2, 3}));
}

TEST(sink_machine, too_many_live_rows_fall_back_to_the_buffer) {
    sink_machine m(small(), 1);
    m.on_connected();
    m.on_read({}, 0, true);
    for (uint64_t s = 1; s <= 20; ++s) m.on_live(row(s));
    EXPECT_EQ(m.state(), sink_state::draining);
    EXPECT_EQ(m.read_after(), 8u);  // everything after the cap is read back in order
}

TEST(sink_machine, backoff_grows_with_jitter_and_is_capped) {
    sink_machine m(small(), 42);
    auto t0 = sink_machine::clock::now();
    std::vector<sink_machine::clock::duration> delays;
    for (int i = 0; i < 8; ++i) {
        m.connecting(t0);
        m.on_disconnected(t0);
        delays.push_back(m.next_connect_at() - t0);
        EXPECT_FALSE(m.wants_connect(t0));
        EXPECT_TRUE(m.wants_connect(m.next_connect_at()));
    }
    EXPECT_GE(delays[0], ms(50));
    EXPECT_LE(delays[0], ms(100));
    for (auto d : delays) EXPECT_LE(d, ms(1000));
    EXPECT_GE(delays[7], ms(500));  // half of the cap is fixed
    m.on_connected();
    EXPECT_EQ(m.failures(), 0);
}

TEST(sink_machine, live_rows_stay_within_the_memory_cap) {
    sink_limits l = small();
    l.memory_cap = 25;  // two rows of "t" + 10 bytes
    sink_machine m(l, 1);
    m.on_connected();
    m.on_read({}, 0, true);
    auto big = [](uint64_t seq) { return stored_row{seq, 0, 1, "t", std::string(10, 'p'), {}}; };
    m.on_live(big(1));
    m.on_live(big(2));
    m.on_live(big(3));  // over the cap: read back from the buffer instead
    EXPECT_EQ(m.state(), sink_state::draining);
    EXPECT_EQ(m.read_after(), 2u);
    EXPECT_EQ(m.read_budget(), 3u);
}

TEST(sink_machine, the_brokers_receive_maximum_caps_the_window) {
    sink_machine m(small(), 1);
    m.on_connected(2);
    EXPECT_EQ(m.window(), 2u);
    m.on_read(rows(1, 3), 3, true);
    EXPECT_EQ(send_all(m).size(), 2u);
}

TEST(sink_machine, an_unanswered_connect_is_overdue) {
    sink_machine m(small(), 1);
    auto t0 = sink_machine::clock::now();
    m.connecting(t0);
    EXPECT_FALSE(m.connect_overdue(t0 + ms(10), ms(100)));
    EXPECT_TRUE(m.connect_overdue(t0 + ms(200), ms(100)));
}

}  // namespace
}  // namespace egw
