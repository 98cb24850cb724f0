// SPDX-License-Identifier: Apache-2.0
#include "gateway/sinks/batch_machine.h"

#include <algorithm>
#include <cassert>
#include <limits>

namespace egw {

const char* to_string(batch_state s) {
    switch (s) {
        case batch_state::offline:
            return "offline";
        case batch_state::draining:
            return "draining";
        case batch_state::online:
            return "online";
        case batch_state::error:
            return "error";
    }
    return "?";
}

batch_machine::batch_machine(batch_limits limits, uint64_t seed) : limits_(limits), rng_(seed) {
    limits_.max_rows = std::max<size_t>(1, limits_.max_rows);
}

// What a row adds to the NDJSON, at most about: the payload may become base64 (4/3) and the
// line's keys, numbers and quotes take about 100 bytes. The encoder trims to the exact size.
size_t batch_machine::estimate(const storage::stored_row& r) const {
    return r.topic.size() + r.payload.size() + r.payload.size() / 3 + 100;
}

batch_machine::action batch_machine::next(clock::time_point now, int64_t now_ms,
                                          bool upload_allowed) {
    action a;
    if (now < retry_at_) return a;
    if (!recovered_) {
        if (recovering_ || busy_) return a;
        recovering_ = busy_ = true;
        a.what = action::recover;
        return a;
    }
    if (!ready_.empty() && !uploading_ && !split_due_ && upload_allowed) {
        uploading_ = true;
        a.what = action::upload;
        return a;
    }
    if (!ready_.empty() && !uploading_ && split_due_) {
        // A split rewinds what was prepared behind the batch: not while a preparation runs.
        if (busy_ || preparing()) return a;
        const prepared_batch& cur = ready_.front();
        busy_ = true;
        a.range = cur.range;
        if (cur.rows.size() == 1) {
            a.what = action::drop;
        } else {
            const size_t mid = cur.rows.size() / 2;
            a.what = action::split;
            a.halves[0] = {cur.range.first, cur.rows[mid - 1].seq};
            a.halves[1] = {cur.rows[mid].seq, cur.range.last};
        }
        return a;
    }
    if (busy_ || split_due_) return a;
    if (!recorded_.empty()) {
        // Recorded ranges (a restart, a split) are prepared one step at a time.
        if (preparing() || ready_.size() > limits_.prepare_ahead) return a;
        // A range recorded before: exactly its rows, under its key.
        const batch_range r = recorded_.front();
        if (read_after_ < r.last) {
            reading_ = true;
            a.what = action::read;
            a.after = read_after_;
            a.through = r.last;
            a.limit = std::numeric_limits<uint32_t>::max();
            reading_through_ = r.last;
            new_rows_at_read_ = new_rows_;
            return a;
        }
        size_t n = 0;
        for (; n < pending_.size() && pending_[n].seq <= r.last; ++n)
            pending_estimate_ -= estimate(pending_[n]);
        a.rows = pending_.take_front(n);
        if (a.rows.empty()) {
            // Only when nothing is queued before it: forgetting acknowledges its range.
            if (!ready_.empty()) return a;
            busy_ = true;
            a.what = action::forget;
            a.range = r;
            return a;
        }
        encoding_ = true;
        a.what = action::encode;
        a.recorded = true;
        a.range = r;
        return a;
    }
    const bool full = pending_.size() >= limits_.max_rows || pending_estimate_ >= limits_.max_bytes;
    const bool due = !pending_.empty() && caught_up_ &&
                     now_ms - pending_.front().ts_ms >= limits_.max_delay.count();
    // Batches prepared (the one uploading included) or being encoded.
    const size_t ahead = ready_.size() + (encoding_ ? 1 : 0);
    if ((full || due) && !encoding_ && ready_.size() <= limits_.prepare_ahead) {
        encoding_ = true;
        a.what = action::encode;
        size_t n = 0, bytes = 0;
        while (n < pending_.size() && n < limits_.max_rows &&
               (n == 0 || bytes < limits_.max_bytes)) {
            const size_t e = estimate(pending_[n++]);
            bytes += e;
            pending_estimate_ -= e;
        }
        a.rows = pending_.take_front(n);
        return a;
    }
    // With prepare_ahead > 0 the next batch's rows are read while this one is encoded, one
    // batch of them at most: reading and encoding take about as long each.
    if (!caught_up_ && !reading_ && !full && ahead <= limits_.prepare_ahead) {
        reading_ = true;
        a.what = action::read;
        a.after = read_after_;
        a.limit = limits_.max_rows - pending_.size();
        reading_through_ = 0;
        new_rows_at_read_ = new_rows_;
        return a;
    }
    return a;
}

void batch_machine::on_recovered(std::vector<batch_range> open, uint64_t uploaded_through) {
    busy_ = recovering_ = false;
    recovered_ = true;
    recorded_.assign(open.begin(), open.end());
    acked_through_ = std::max(acked_through_, uploaded_through);
    read_after_ = open.empty() ? acked_through_ : open.front().first - 1;
}

void batch_machine::on_recover_failed(clock::time_point now) {
    busy_ = recovering_ = false;
    fail(upload_outcome::local, now);
}

void batch_machine::on_read(std::vector<storage::stored_row>&& rows, bool complete) {
    reading_ = false;
    if (pending_.empty() && !rows.empty() && rows.front().seq > read_after_) {
        // The usual case: rows in sequence order, all new, nothing queued before them.
        for (const auto& r : rows) pending_estimate_ += estimate(r);
        read_after_ = rows.back().seq;
        pending_.adopt(std::move(rows));
    } else {
        for (auto& r : rows) {
            if (r.seq <= read_after_) continue;
            read_after_ = r.seq;
            pending_estimate_ += estimate(r);
            pending_.push_back(std::move(r));
        }
    }
    if (reading_through_ != 0) {
        read_after_ = std::max(read_after_, reading_through_);
        reading_through_ = 0;
        caught_up_ = false;
    } else {
        // A row committed while the read was under way may not be in it.
        caught_up_ = complete && new_rows_ == new_rows_at_read_;
    }
}

void batch_machine::on_read_failed(clock::time_point now) {
    reading_ = false;
    reading_through_ = 0;
    fail(upload_outcome::transient, now);
}

void batch_machine::on_encoded(std::vector<storage::stored_row>&& used,
                               std::vector<storage::stored_row>&& rest, clock::time_point now,
                               bool error) {
    encoding_ = false;
    for (auto it = rest.rbegin(); it != rest.rend(); ++it) {
        pending_estimate_ += estimate(*it);
        pending_.push_front(std::move(*it));
    }
    if (error || used.empty()) {
        for (auto it = used.rbegin(); it != used.rend(); ++it) {
            pending_estimate_ += estimate(*it);
            pending_.push_front(std::move(*it));
        }
        fail(upload_outcome::local, now);
        return;
    }
    batch_range range{used.front().seq, used.back().seq};
    if (!recorded_.empty() && used.front().seq >= recorded_.front().first &&
        used.back().seq <= recorded_.front().last) {
        range = recorded_.front();
        recorded_.pop_front();
        // A recorded range is sent whole: nothing of it may come back.
        assert(rest.empty() || rest.front().seq > range.last);
    }
    assert(ready_.empty() || ready_.back().range.last < range.first);
    ready_.push_back({range, std::move(used)});
}

void batch_machine::settle_ok() {
    attempts_ = 0;
    failed_ = error_ = false;
    retry_at_ = {};
}

void batch_machine::fail(upload_outcome outcome, clock::time_point now) {
    failed_ = true;
    if (outcome == upload_outcome::transient) {
        error_ = false;
        // Exponential backoff with "equal jitter", as sink_machine does.
        auto base = limits_.backoff_initial.count() << std::min(attempts_, 20);
        base = std::min<decltype(base)>(base, limits_.backoff_max.count());
        std::uniform_int_distribution<int64_t> jitter(0, base / 2);
        retry_at_ = now + std::chrono::milliseconds(base / 2 + jitter(rng_));
    } else {
        // No hot loop on a refusal or a full disk: they do not heal by themselves quickly.
        error_ = true;
        retry_at_ = now + limits_.error_retry;
    }
    ++attempts_;
}

void batch_machine::on_uploaded(upload_outcome outcome, clock::time_point now) {
    uploading_ = false;
    assert(!ready_.empty());
    switch (outcome) {
        case upload_outcome::ok:
            acked_through_ = std::max(acked_through_, ready_.front().range.last);
            finish_front();
            settle_ok();
            return;
        case upload_outcome::too_large:
            // Rejected for its size or content, not for the link: halve it until the culprit
            // is a row alone. Not a failure of the sink.
            split_due_ = true;
            return;
        default:
            fail(outcome, now);
            return;
    }
}

void batch_machine::on_split_recorded(bool ok, clock::time_point now) {
    busy_ = false;
    if (!ok) {
        fail(upload_outcome::local, now);
        return;
    }
    split_due_ = false;
    // The halves first, then the batches prepared behind the split one, as recorded ranges
    // again (their records stand); their rows go back to pending_, all in sequence order.
    std::deque<batch_range> ranges;
    std::vector<storage::stored_row> back;
    for (size_t i = 0; i < ready_.size(); ++i) {
        prepared_batch& b = ready_[i];
        if (i == 0) {
            const size_t mid = b.rows.size() / 2;
            ranges.push_back({b.range.first, b.rows[mid - 1].seq});
            ranges.push_back({b.rows[mid].seq, b.range.last});
        } else {
            ranges.push_back(b.range);
        }
        for (auto& r : b.rows) back.push_back(std::move(r));
    }
    ready_.clear();
    recorded_.insert(recorded_.begin(), ranges.begin(), ranges.end());
    for (auto it = back.rbegin(); it != back.rend(); ++it) {
        pending_estimate_ += estimate(*it);
        pending_.push_front(std::move(*it));
    }
}

void batch_machine::on_dropped(bool ok, clock::time_point now) {
    busy_ = false;
    if (!ok) {
        fail(upload_outcome::local, now);
        return;
    }
    split_due_ = false;
    dropped_ += ready_.front().rows.size();
    acked_through_ = std::max(acked_through_, ready_.front().range.last);
    finish_front();
}

void batch_machine::finish_front() {
    auto& rows = ready_.front().rows;
    if (finished_.empty()) {
        finished_ = std::move(rows);
    } else {
        finished_.insert(finished_.end(), std::make_move_iterator(rows.begin()),
                         std::make_move_iterator(rows.end()));
    }
    ready_.pop_front();
}

void batch_machine::on_forgotten(bool ok, clock::time_point now) {
    busy_ = false;
    if (!ok) {
        fail(upload_outcome::local, now);
        return;
    }
    acked_through_ = std::max(acked_through_, recorded_.front().last);
    recorded_.pop_front();
}

void batch_machine::on_reload() {
    if (error_) retry_at_ = {};
}

batch_state batch_machine::state() const {
    if (failed_) return error_ ? batch_state::error : batch_state::offline;
    if (!recovered_ || !ready_.empty() || !recorded_.empty() || !caught_up_ ||
        pending_.size() >= limits_.max_rows) {
        return batch_state::draining;
    }
    return batch_state::online;
}

}  // namespace egw
