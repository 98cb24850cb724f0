// SPDX-License-Identifier: Apache-2.0
// The batch sinks' part of the buffer file: the recorded batch ranges (table batches, see
// schema.cc) and the reads that fill a batch, for one sink.
//
// Two SQLite connections of its own, opened on first use, so that a batch sink reads and records
// on worker threads without touching the loop's reader connection: one reads rows, the other
// writes the records. A write holds the buffer's write lock (buffer::lock_writer) for one small
// transaction: it queues with the buffer's other writers instead of polling in SQLite's busy
// handler, and it does not wait out a run of acknowledgements. Threads: any worker thread. A
// read and a write may run at once (a pipelined sink reads the next batch while the current one
// is recorded or marked); reads are serialised among themselves, and so are writes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "storage/buffer.h"
#include "storage/sqlite.h"

namespace egw::storage {

class batch_store {
public:
    // `buf`: the buffer whose file holds the records (already created and migrated); it must
    // outlive the store. Its sync mode applies (normal: records survive kill -9, fsynced at
    // checkpoints).
    batch_store(buffer& buf, int bit);
    batch_store(const batch_store&) = delete;
    batch_store& operator=(const batch_store&) = delete;

    struct range {
        uint64_t first = 0, last = 0;
    };
    // Ranges recorded and not uploaded, oldest first; `uploaded_through`: the highest last_seq
    // of the ranges recorded as uploaded.
    std::vector<range> open_ranges(uint64_t& uploaded_through);

    // Rows for this sink with after < seq (<= through unless 0), oldest first, at most `limit`
    // and, unless `through` is given (a recorded range is read whole), about `max_bytes` of
    // topics and payloads (the row that reaches it is the last; at least one row), so that a
    // backlog of camera frames is not read into memory max_rows at a time. Returns true when
    // nothing lies beyond them.
    bool read(uint64_t after, uint64_t through, size_t limit, std::vector<stored_row>& out,
              size_t max_bytes = SIZE_MAX);

    // Records [first, last] (before its upload) and forgets the uploaded ranges whose rows are
    // acknowledged for good (last_seq <= acked_through).
    void record(uint64_t first, uint64_t last, uint64_t acked_through);
    void mark_uploaded(uint64_t first);
    // A single row the sink refused on its own: copies row `seq` into dead_letters (instance:
    // the sink's name, kind "rejected", route -1) and marks its record uploaded, in one
    // transaction, so the row is neither lost nor sent again. Returns false when the row is no
    // longer in the buffer (then only the mark happens).
    bool dead_letter(uint64_t seq, const std::string& sink, const std::string& reason,
                     int64_t now_ms);
    // Replaces the record starting at `first` by [a_first, a_last] and [b_first, b_last].
    void split(uint64_t first, range a, range b);
    void forget(uint64_t first);

    // --- S3 multipart uploads under way (tables multipart_uploads, multipart_parts) ---------
    struct multipart_record {
        std::string key, upload_id, digest;
        uint64_t size = 0, part_size = 0;
        std::vector<std::string> etags;  // parts 1..n stored, in order, without gaps
    };
    std::vector<multipart_record> multipart_records();
    // Replaces any record of `key` by a fresh upload without parts.
    void multipart_begin(const std::string& key, const std::string& upload_id, uint64_t size,
                         uint64_t part_size, const std::string& digest);
    void multipart_part(const std::string& key, int part, const std::string& etag);
    // The upload completed, was aborted, or is unknown to the service: forget it and its parts.
    void multipart_forget(const std::string& key);

private:
    void open();
    // For one write: this store's lock, then (the connection open) the buffer's write lock.
    struct write_lock {
        explicit write_lock(batch_store& s);
        std::lock_guard<std::mutex> own;
        std::unique_lock<std::mutex> writer;
    };

    buffer& buf_;
    int bit_;
    std::mutex read_mu_;  // reader_ and its statements
    connection reader_;
    statement read_, read_through_;
    std::mutex mu_;  // db_ and its statements
    connection db_;
    statement insert_, mark_, erase_, forget_done_, list_, dead_;
    statement mp_list_, mp_parts_, mp_begin_, mp_part_, mp_forget_, mp_forget_parts_;
};

}  // namespace egw::storage
