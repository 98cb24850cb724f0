// SPDX-License-Identifier: Apache-2.0
// The delivery logic of a batch sink (dir, http, s3), free of I/O: which rows form the next
// batch, when, and what to do with the outcome of its upload. The adapter (batch_sink) asks
// next() what to do, carries it out on the worker pool or the network and reports back; unit
// tests drive it directly.
//
// Exactly one object per batch. A batch's range (first_seq, last_seq) is decided once, when its
// rows are encoded, and recorded in the buffer's database before the upload starts (the adapter
// does both in one worker job). A restart finds the recorded ranges that were not uploaded and
// sends exactly those again (on_recovered), under the same key. Rows are acknowledged (and leave
// the buffer) only after the upload succeeded and its record says so.
//
// Order. Batches are decided, recorded and uploaded in sequence order, one upload at a time:
// the ranges of one sink never overlap. The backlog is read oldest first in full batches; live
// rows are read from the buffer behind it.
//
// Pipeline. With limits.prepare_ahead = N > 0 the machine has three lanes: while the oldest
// prepared batch uploads, the next ones are encoded and recorded, one at a time, as long as at
// most N are prepared besides the one uploading; and the rows of the next batch are read
// meanwhile, one read at a time and at most one batch of rows, as long as the prepared batches
// (the uploading one included) and the one encoding are at most N. So with N = 2 an upload, an
// encoding and a read overlap. Batches stay queued in order: each is uploaded only after the
// one before it succeeded, so acked_through() only ever moves over uploaded ranges, in order.
// A batch refused as too large is split only when no read or encoding is under way; the
// batches prepared behind it then go back to being recorded ranges (their records stay, so
// their keys do not change) and are read and encoded again, one step at a time, after the
// halves. With N = 0 (the default) a batch is prepared only when none is waiting or uploading,
// and reads and encodings take turns.
//
// Threads: loop thread only.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "storage/buffer.h"

namespace egw {

struct batch_limits {
    size_t max_rows = 10000;
    size_t max_bytes = 8 << 20;  // NDJSON bytes before compression
    std::chrono::milliseconds max_delay{5000};
    std::chrono::milliseconds backoff_initial{500};
    std::chrono::milliseconds backoff_max{30000};
    // A sink refused for its credentials (or a full disk) tries again at most this often.
    std::chrono::milliseconds error_retry{10000};
    // Batches prepared (read, encoded, recorded) ahead of the one uploading; see "Pipeline".
    size_t prepare_ahead = 0;
};

struct batch_range {
    uint64_t first = 0, last = 0;
    bool operator==(const batch_range&) const = default;
};

// How an upload ended, as the adapter classifies it.
enum class upload_outcome {
    ok,         // stored (HTTP 2xx, S3 200 with an ETag, file renamed into place)
    transient,  // 5xx, timeout, connection error, 409: back off with jitter, state offline
    refused,    // 403, bad credentials: state error, retry every error_retry and on reload
    too_large,  // 413, 422, a 4xx naming the request: split the batch
    local,      // the sink's own side failed (disk full): state error, retry every error_retry
};

enum class batch_state { offline, draining, online, error };
const char* to_string(batch_state s);

class batch_machine {
public:
    using clock = std::chrono::steady_clock;

    explicit batch_machine(batch_limits limits, uint64_t seed = std::random_device{}());

    // --- what to do next ------------------------------------------------------------------
    struct action {
        enum kind {
            none,
            // Start-up: list the recorded ranges and report on_recovered().
            recover,
            // Read rows for this sink with seq > after (and <= through when through != 0), at
            // most `limit`, and report them with on_read().
            read,
            // Encode `rows` (taken from the machine), keep the longest prefix within max_bytes
            // (at least one row), record its range unless `recorded` and report on_encoded().
            encode,
            // Upload the oldest prepared batch (current()) and report on_uploaded(). May come
            // while a preparation (read, encode) is under way.
            upload,
            // Replace the record of `range` by the records of `halves` (a split), then
            // on_split_recorded().
            split,
            // The batch in flight is one row the destination refuses on its own: let it go
            // (dead letter or counted drop), mark its record done, then on_dropped().
            drop,
            // A recorded range has no rows left (evicted meanwhile): forget its record, then
            // on_forgotten().
            forget,
        };
        kind what = none;
        uint64_t after = 0, through = 0;
        size_t limit = 0;
        std::vector<storage::stored_row> rows;
        bool recorded = false;
        batch_range range;
        batch_range halves[2];
    };
    // The next action to start, or `none`. Call it again after starting one: with
    // prepare_ahead > 0 an upload, an encoding and a read can be under way at once. `now_ms`:
    // wall clock, for max_delay against ingest times.
    // `upload_allowed`: false holds the next upload back (max_bytes_per_s), not preparation.
    action next(clock::time_point now, int64_t now_ms, bool upload_allowed = true);

    // --- events ---------------------------------------------------------------------------
    // Start-up: ranges recorded and not uploaded, oldest first, and the last sequence number of
    // the ranges recorded as uploaded (their rows may still be in the buffer: acknowledge them).
    void on_recovered(std::vector<batch_range> open, uint64_t uploaded_through);
    // The records could not be read: nothing may be sent; try again after a backoff.
    void on_recover_failed(clock::time_point now);
    // A row for this sink was committed: the buffer holds more than what was read.
    void on_new_row() {
        caught_up_ = false;
        ++new_rows_;
    }
    // Result of a read action: rows in seq order; `complete` when nothing lies beyond them.
    void on_read(std::vector<storage::stored_row>&& rows, bool complete);
    // A read action failed (the buffer could not be read): nothing was read; the same read is
    // tried again after a backoff. (Reporting it as an empty read would pass a recorded range
    // over as evicted, and acknowledge rows that were never uploaded.)
    void on_read_failed(clock::time_point now);
    // Result of an encode action: `used` form the batch (now recorded, queued behind the
    // batches prepared before it), `rest` come back.
    // `error`: encoding or recording failed; every row is in `rest`, retried after a backoff.
    void on_encoded(std::vector<storage::stored_row>&& used,
                    std::vector<storage::stored_row>&& rest, clock::time_point now,
                    bool error = false);
    void on_uploaded(upload_outcome outcome, clock::time_point now);
    void on_split_recorded(bool ok, clock::time_point now);
    void on_dropped(bool ok, clock::time_point now);
    void on_forgotten(bool ok, clock::time_point now);
    // SIGHUP: a sink in error tries again now.
    void on_reload();

    // --- inspection -----------------------------------------------------------------------
    // The oldest prepared batch (the one uploading or next to): its range and rows.
    std::optional<batch_range> current() const {
        if (ready_.empty()) return std::nullopt;
        return ready_.front().range;
    }
    const std::vector<storage::stored_row>& current_rows() const { return ready_.front().rows; }
    // The newest prepared batch: the one on_encoded() just queued.
    batch_range newest() const { return ready_.back().range; }
    // Prepared batches, the current one included.
    size_t prepared() const { return ready_.size(); }
    bool uploading() const { return uploading_; }
    batch_state state() const;
    int failures() const { return attempts_; }
    clock::time_point retry_at() const { return retry_at_; }
    size_t pending() const { return pending_.size(); }
    uint64_t ack_committed() const { return ack_committed_; }
    uint64_t acked_through() const { return acked_through_; }
    void ack_commit_done(uint64_t through) { ack_committed_ = through; }
    // The rows of the batches uploaded (or dropped) since the last call: the adapter frees
    // them on a worker, which for 10,000 rows spares the loop a millisecond of free().
    std::vector<storage::stored_row> take_finished() { return std::move(finished_); }
    uint64_t dropped() const { return dropped_; }
    const batch_limits& limits() const { return limits_; }

private:
    void fail(upload_outcome outcome, clock::time_point now);
    void settle_ok();
    void finish_front();
    size_t estimate(const storage::stored_row& r) const;

    struct prepared_batch {
        batch_range range;
        std::vector<storage::stored_row> rows;
    };

    batch_limits limits_;
    std::mt19937_64 rng_;
    bool preparing() const { return reading_ || encoding_; }

    bool busy_ = false;       // a recover, split, drop or forget is under way
    bool reading_ = false;    // a read is under way
    bool encoding_ = false;   // an encoding (and record) is under way
    bool uploading_ = false;  // the current batch is being uploaded
    bool recovered_ = false;
    bool recovering_ = false;
    bool caught_up_ = false;
    bool failed_ = false;  // the last attempt failed: state offline or error
    bool error_ = false;   // ... with an error (refused, local)
    bool split_due_ = false;
    uint64_t new_rows_ = 0, new_rows_at_read_ = 0;
    uint64_t reading_through_ = 0;
    int attempts_ = 0;
    clock::time_point retry_at_{};

    std::deque<batch_range> recorded_;  // recorded, not uploaded, oldest first
    // A FIFO of rows over one vector: a drain moves 10,000 rows through it per batch on the
    // loop, and a std::deque allocates a block per few rows of this size.
    class row_queue {
    public:
        bool empty() const { return head_ == v_.size(); }
        size_t size() const { return v_.size() - head_; }
        storage::stored_row& front() { return v_[head_]; }
        void pop_front() {
            if (++head_ == v_.size()) {
                v_.clear();
                head_ = 0;
            }
        }
        void push_back(storage::stored_row&& r) {
            if (head_ > 0 && head_ >= v_.size() / 2) {
                v_.erase(v_.begin(), v_.begin() + static_cast<std::ptrdiff_t>(head_));
                head_ = 0;
            }
            v_.push_back(std::move(r));
        }
        const storage::stored_row& operator[](size_t i) const { return v_[head_ + i]; }
        // A read's rows into an empty queue, or the first n rows out of it into a batch: the
        // whole vector changes hands when it can, so that a drain moves no row one by one on
        // the loop (and allocates no fresh block there for 10,000 of them).
        void adopt(std::vector<storage::stored_row>&& rows) {
            v_ = std::move(rows);
            head_ = 0;
        }
        std::vector<storage::stored_row> take_front(size_t n) {
            std::vector<storage::stored_row> out;
            if (head_ == 0 && n == v_.size()) {
                out.swap(v_);
                return out;
            }
            const auto first = v_.begin() + static_cast<std::ptrdiff_t>(head_);
            out.assign(std::make_move_iterator(first),
                       std::make_move_iterator(first + static_cast<std::ptrdiff_t>(n)));
            head_ += n;
            if (head_ == v_.size()) {
                v_.clear();
                head_ = 0;
            }
            return out;
        }
        void push_front(storage::stored_row&& r) {
            if (head_ > 0) {
                v_[--head_] = std::move(r);
            } else {
                v_.insert(v_.begin(), std::move(r));
            }
        }

    private:
        std::vector<storage::stored_row> v_;
        size_t head_ = 0;
    };

    row_queue pending_;  // read, not yet in a batch, by seq
    size_t pending_estimate_ = 0;
    uint64_t read_after_ = 0;  // every row for this sink <= it is read, in a batch or acked
    std::deque<prepared_batch> ready_;  // recorded and encoded, oldest (current) first
    std::vector<storage::stored_row> finished_;
    uint64_t acked_through_ = 0;
    uint64_t ack_committed_ = 0;
    uint64_t dropped_ = 0;
};

}  // namespace egw
