// SPDX-License-Identifier: Apache-2.0
#include "gateway/sink_machine.h"

#include <algorithm>
#include <cassert>

namespace egw {

const char* to_string(sink_state s) {
    switch (s) {
        case sink_state::offline:
            return "offline";
        case sink_state::draining:
            return "draining";
        case sink_state::online:
            return "online";
    }
    return "?";
}

sink_machine::sink_machine(sink_limits limits, uint64_t seed)
    : limits_(limits), window_(std::max<size_t>(1, limits.window)), rng_(seed) {}

void sink_machine::on_connected(size_t receive_max) {
    connected_ = true;
    connecting_ = false;
    attempts_ = 0;
    window_ = std::max<size_t>(1, limits_.window);
    if (receive_max > 0) window_ = std::min(window_, receive_max);
}

void sink_machine::on_disconnected(clock::time_point now) {
    if (connected_) ++reconnects_;
    connected_ = false;
    connecting_ = false;
    rewind();
    // Exponential backoff with "equal jitter": half the delay is fixed, half random, so many
    // gateways that lost the same cloud do not come back in lockstep.
    auto base = limits_.backoff_initial.count() << std::min(attempts_, 20);
    base = std::min<decltype(base)>(base, limits_.backoff_max.count());
    std::uniform_int_distribution<int64_t> jitter(0, base / 2);
    next_connect_ = now + std::chrono::milliseconds(base / 2 + jitter(rng_));
    ++attempts_;
}

void sink_machine::rewind() {
    // Everything not acknowledged is read again from the buffer, oldest first.
    pending_.clear();
    pending_bytes_ = 0;
    inflight_.clear();
    loaded_through_ = acked_through_;
    caught_up_ = false;
}

namespace {
size_t bytes_of(const storage::stored_row& r) { return r.topic.size() + r.payload.size(); }
}  // namespace

void sink_machine::on_live(storage::stored_row&& row) {
    if (!connected_ || !caught_up_ || row.seq <= loaded_through_) return;
    if (pending_.size() >= limits_.live_cap ||
        (!pending_.empty() && pending_bytes_ + bytes_of(row) > limits_.memory_cap)) {
        // The cloud is slower than ingest: leave the rest in the buffer and read it back.
        caught_up_ = false;
        return;
    }
    loaded_through_ = row.seq;
    pending_bytes_ += bytes_of(row);
    pending_.push_back(std::move(row));
}

void sink_machine::on_read(std::vector<storage::stored_row>&& rows, uint64_t vouched,
                           bool complete) {
    if (!connected_) return;
    for (auto& r : rows) {
        if (r.seq <= loaded_through_) continue;
        pending_bytes_ += bytes_of(r);
        pending_.push_back(std::move(r));
    }
    loaded_through_ = std::max(loaded_through_, vouched);
    caught_up_ = complete;
}

bool sink_machine::wants_connect(clock::time_point now) const {
    return !connected_ && !connecting_ && now >= next_connect_;
}

bool sink_machine::wants_read() const { return connected_ && !caught_up_ && pending_.empty(); }

const storage::stored_row* sink_machine::next() const {
    if (!connected_ || pending_.empty() || inflight_.size() >= window_) return nullptr;
    return &pending_.front();
}

void sink_machine::sent() {
    assert(!pending_.empty());
    inflight_.push_back({pending_.front().seq, false});
    pending_bytes_ -= bytes_of(pending_.front());
    pending_.pop_front();
}

bool sink_machine::on_ack(uint64_t seq) {
    // Acks normally arrive in order, so the search ends at the front.
    auto it = std::find_if(inflight_.begin(), inflight_.end(),
                           [&](const flight& f) { return f.seq == seq; });
    if (it == inflight_.end() || it->acked) return false;
    it->acked = true;
    while (!inflight_.empty() && inflight_.front().acked) {
        acked_through_ = inflight_.front().seq;
        inflight_.pop_front();
    }
    return true;
}

sink_state sink_machine::state() const {
    if (!connected_) return sink_state::offline;
    return caught_up_ ? sink_state::online : sink_state::draining;
}

}  // namespace egw
