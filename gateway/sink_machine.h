// SPDX-License-Identifier: Apache-2.0
// The delivery logic of one sink, free of I/O: which rows to send next, in what order, how
// many may be unacknowledged, when to read the buffer, when to reconnect, and which rows are
// acknowledged for good. The Paho adapter (mqtt_sink) feeds it events and carries out what it
// asks; unit tests drive it directly.
//
// Order. Rows are sent strictly by sequence number. While the sink is behind it reads the
// buffer in batches (draining); once a read comes back short it is caught up and takes live
// rows straight from ingest (online), skipping any it already read. A disconnect rewinds to
// the oldest unacknowledged row, so a retry never overtakes what was sent before it.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <random>
#include <string>
#include <vector>

#include "storage/buffer.h"

namespace egw {

enum class sink_state { offline, draining, online };
const char* to_string(sink_state s);

struct sink_limits {
    size_t window = 256;     // unacknowledged publishes at most
    size_t batch = 512;      // rows per buffer read
    size_t live_cap = 4096;  // live rows held in memory before falling back to the buffer
    // Bytes (topic + payload) held in memory at most, loaded or live: camera frames must not
    // turn a batch of rows into hundreds of MiB.
    size_t memory_cap = 8 << 20;
    std::chrono::milliseconds backoff_initial{500};
    std::chrono::milliseconds backoff_max{30000};
};

class sink_machine {
public:
    using clock = std::chrono::steady_clock;

    explicit sink_machine(sink_limits limits, uint64_t seed = std::random_device{}());

    // --- events ---------------------------------------------------------------------------
    // receive_max: the broker's limit on unacknowledged publishes (0 = none given).
    void on_connected(size_t receive_max = 0);
    // Connection lost or a connect attempt failed: rewind and schedule the next attempt.
    void on_disconnected(clock::time_point now);
    // A row committed to the buffer for this sink, in sequence order.
    void on_live(storage::stored_row&& row);
    // Result of buffer::read(after = read_after(), limit = limits().batch, ...).
    void on_read(std::vector<storage::stored_row>&& rows, uint64_t vouched, bool complete);
    // The cloud acknowledged `seq`. Returns false for a seq not in flight (a stale ack).
    bool on_ack(uint64_t seq);

    // --- what to do next ------------------------------------------------------------------
    bool wants_connect(clock::time_point now) const;
    clock::time_point next_connect_at() const { return next_connect_; }
    void connecting(clock::time_point now = clock::now()) {
        connecting_ = true;
        connect_started_ = now;
    }
    // An attempt has been under way for longer than `limit`.
    bool connect_overdue(clock::time_point now, clock::duration limit) const {
        return connecting_ && now - connect_started_ > limit;
    }
    bool wants_read() const;
    uint64_t read_after() const { return loaded_through_; }
    // How many bytes the next read may bring in.
    size_t read_budget() const {
        return limits_.memory_cap > pending_bytes_ ? limits_.memory_cap - pending_bytes_ : 0;
    }
    // The next row to publish, or nullptr when the window is full or nothing is loaded.
    // The caller publishes it and then calls sent().
    const storage::stored_row* next() const;
    void sent();

    // Acknowledged rows not yet removed from the buffer: (after, through].
    uint64_t ack_committed() const { return ack_committed_; }
    uint64_t acked_through() const { return acked_through_; }
    void ack_commit_done(uint64_t through) { ack_committed_ = through; }

    // --- inspection -----------------------------------------------------------------------
    sink_state state() const;
    bool connected() const { return connected_; }
    bool is_connecting() const { return connecting_; }
    // Consecutive failed attempts since the last successful connect.
    int failures() const { return attempts_; }
    size_t inflight() const { return inflight_.size(); }
    size_t window() const { return window_; }
    uint64_t reconnects() const { return reconnects_; }
    const sink_limits& limits() const { return limits_; }

private:
    struct flight {
        uint64_t seq;
        bool acked;
    };

    void rewind();

    sink_limits limits_;
    size_t window_;
    std::mt19937_64 rng_;

    bool connected_ = false;
    bool connecting_ = false;
    bool caught_up_ = false;
    int attempts_ = 0;
    uint64_t reconnects_ = 0;
    clock::time_point next_connect_{};
    clock::time_point connect_started_{};

    std::deque<storage::stored_row> pending_;  // loaded, not yet sent, by seq
    size_t pending_bytes_ = 0;
    std::deque<flight> inflight_;  // sent, by seq
    uint64_t loaded_through_ = 0;  // every row for this sink <= it is loaded, sent or acked
    uint64_t acked_through_ = 0;   // every row for this sink <= it is acknowledged
    uint64_t ack_committed_ = 0;   // ... and removed from the buffer
};

}  // namespace egw
