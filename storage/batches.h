// SPDX-License-Identifier: Apache-2.0
// The batch sinks' part of the buffer file: the recorded batch ranges (table batches, see
// schema.cc) and the reads that fill a batch, for one sink.
//
// Its own SQLite connection, opened on first use, so that a batch sink reads and records on a
// worker thread without touching the loop's reader connection or taking the ingest write lock
// for longer than one small transaction. Threads: any worker thread; calls are serialised by
// an internal mutex (a pipelined sink records the next batch while the current one is marked).
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
    // `path`: the buffer file (already created and migrated by storage::buffer); `sync` as the
    // buffer's (normal: records survive kill -9, fsynced at checkpoints).
    batch_store(std::string path, int bit, sync_mode sync = sync_mode::normal);
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

    std::mutex mu_;
    std::string path_;
    int bit_;
    sync_mode sync_;
    connection db_;
    statement read_, read_through_, insert_, mark_, erase_, forget_done_, list_, dead_;
    statement mp_list_, mp_parts_, mp_begin_, mp_part_, mp_forget_, mp_forget_parts_;
};

}  // namespace egw::storage
