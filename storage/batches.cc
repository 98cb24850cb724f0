// SPDX-License-Identifier: Apache-2.0
#include "storage/batches.h"

#include <unistd.h>

#include <algorithm>

namespace egw::storage {

batch_store::batch_store(buffer& buf, int bit) : buf_(buf), bit_(bit) {}

namespace {

connection open_connection(const buffer_options& o) {
    connection c(o.path, SQLITE_OPEN_READWRITE);
    exec(c.get(),
         o.sync == sync_mode::full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
    return c;
}

}  // namespace

void batch_store::open() {
    if (db_.get()) return;
    db_ = open_connection(buf_.options());
    sqlite3* db = db_.get();
    insert_ = statement(db,
                        "INSERT OR REPLACE INTO batches (bit, first_seq, last_seq) "
                        "VALUES (?1, ?2, ?3)");
    mark_ = statement(db, "UPDATE batches SET uploaded = 1 WHERE bit = ?1 AND first_seq = ?2");
    erase_ = statement(db, "DELETE FROM batches WHERE bit = ?1 AND first_seq = ?2");
    forget_done_ =
        statement(db, "DELETE FROM batches WHERE bit = ?1 AND uploaded = 1 AND last_seq <= ?2");
    dead_ = statement(db,
                      "INSERT INTO dead_letters (ts, route, instance, kind, reason, seq, msg_ts, "
                      "topic, payload) SELECT ?1, -1, ?2, 'rejected', ?3, seq, ts, topic, payload "
                      "FROM messages WHERE seq = ?4");
    list_ = statement(db,
                      "SELECT first_seq, last_seq, uploaded FROM batches WHERE bit = ?1 "
                      "ORDER BY first_seq");
    mp_list_ = statement(db,
                         "SELECT key, upload_id, size, part_size, digest FROM multipart_uploads "
                         "WHERE bit = ?1 ORDER BY key");
    mp_parts_ = statement(
        db, "SELECT part, etag FROM multipart_parts WHERE bit = ?1 AND key = ?2 ORDER BY part");
    mp_begin_ = statement(db,
                          "INSERT OR REPLACE INTO multipart_uploads "
                          "(bit, key, upload_id, size, part_size, digest) "
                          "VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    mp_part_ = statement(db,
                         "INSERT OR REPLACE INTO multipart_parts (bit, key, part, etag) "
                         "VALUES (?1, ?2, ?3, ?4)");
    mp_forget_ = statement(db, "DELETE FROM multipart_uploads WHERE bit = ?1 AND key = ?2");
    mp_forget_parts_ = statement(db, "DELETE FROM multipart_parts WHERE bit = ?1 AND key = ?2");
}

batch_store::write_lock::write_lock(batch_store& s) : own(s.mu_) {
    s.open();
    writer = s.buf_.lock_writer();
}

std::vector<batch_store::range> batch_store::open_ranges(uint64_t& uploaded_through) {
    std::lock_guard lock(mu_);
    open();
    std::vector<range> out;
    uploaded_through = 0;
    list_.bind(1, bit_);
    try {
        while (list_.step()) {
            const range r{static_cast<uint64_t>(list_.int64(0)),
                          static_cast<uint64_t>(list_.int64(1))};
            if (list_.int64(2) != 0) {
                uploaded_through = std::max(uploaded_through, r.last);
            } else {
                out.push_back(r);
            }
        }
    } catch (...) {
        list_.reset();
        throw;
    }
    list_.reset();
    return out;
}

bool batch_store::read(uint64_t after, uint64_t through, size_t limit, std::vector<stored_row>& out,
                       size_t max_bytes) {
    std::lock_guard lock(read_mu_);
    if (!reader_.get()) {
        reader_ = open_connection(buf_.options());
        read_ = statement(reader_.get(),
                          "SELECT seq, ts, sinks, topic, payload, props FROM messages "
                          "WHERE seq > ?1 AND (sinks & ?2) != 0 ORDER BY seq LIMIT ?3");
        read_through_ = statement(reader_.get(),
                                  "SELECT seq, ts, sinks, topic, payload, props FROM messages "
                                  "WHERE seq > ?1 AND seq <= ?4 AND (sinks & ?2) != 0 "
                                  "ORDER BY seq LIMIT ?3");
    }
    statement& s = through ? read_through_ : read_;
    s.bind(1, static_cast<int64_t>(after))
        .bind(2, static_cast<int64_t>(uint64_t{1} << bit_))
        .bind(3, static_cast<int64_t>(limit));
    if (through) s.bind(4, static_cast<int64_t>(through));
    out.reserve(out.size() + std::min<size_t>(limit, 16384));  // no regrowth for a full batch
    size_t n = 0, bytes = 0;
    bool full = false;
    try {
        while (s.step()) {
            stored_row row{static_cast<uint64_t>(s.int64(0)),
                           s.int64(1),
                           static_cast<uint64_t>(s.int64(2)),
                           std::string(s.text(3)),
                           std::string(s.blob(4)),
                           {}};
            decode_props(s.blob(5), row.props);  // NULL: none; damaged: none (see buffer.cc)
            out.push_back(std::move(row));
            ++n;
            bytes += out.back().topic.size() + out.back().payload.size();
            if (!through && bytes >= max_bytes) {
                full = true;
                break;
            }
        }
    } catch (...) {
        s.reset();
        throw;
    }
    s.reset();
    return !full && n < limit;
}

void batch_store::record(uint64_t first, uint64_t last, uint64_t acked_through) {
    const write_lock lock(*this);
    transaction t(db_);
    forget_done_.bind(1, bit_).bind(2, static_cast<int64_t>(acked_through));
    forget_done_.step();
    forget_done_.reset();
    insert_.bind(1, bit_).bind(2, static_cast<int64_t>(first)).bind(3, static_cast<int64_t>(last));
    insert_.step();
    insert_.reset();
    t.commit();
}

void batch_store::mark_uploaded(uint64_t first) {
    const write_lock lock(*this);
    mark_.bind(1, bit_).bind(2, static_cast<int64_t>(first));
    mark_.step();
    mark_.reset();
}

bool batch_store::dead_letter(uint64_t seq, const std::string& sink, const std::string& reason,
                              int64_t now_ms) {
    const write_lock lock(*this);
    transaction t(db_);
    dead_.bind(1, now_ms).bind(2, sink).bind(3, reason).bind(4, static_cast<int64_t>(seq));
    dead_.step();
    dead_.reset();
    const bool copied = sqlite3_changes(db_.get()) > 0;
    mark_.bind(1, bit_).bind(2, static_cast<int64_t>(seq));
    mark_.step();
    mark_.reset();
    t.commit();
    return copied;
}

void batch_store::split(uint64_t first, range a, range b) {
    const write_lock lock(*this);
    transaction t(db_);
    erase_.bind(1, bit_).bind(2, static_cast<int64_t>(first));
    erase_.step();
    erase_.reset();
    for (const range& r : {a, b}) {
        insert_.bind(1, bit_)
            .bind(2, static_cast<int64_t>(r.first))
            .bind(3, static_cast<int64_t>(r.last));
        insert_.step();
        insert_.reset();
    }
    t.commit();
}

void batch_store::forget(uint64_t first) {
    const write_lock lock(*this);
    erase_.bind(1, bit_).bind(2, static_cast<int64_t>(first));
    erase_.step();
    erase_.reset();
}

}  // namespace egw::storage

namespace egw::storage {

std::vector<batch_store::multipart_record> batch_store::multipart_records() {
    std::lock_guard lock(mu_);
    open();
    std::vector<multipart_record> out;
    mp_list_.bind(1, bit_);
    try {
        while (mp_list_.step()) {
            multipart_record r;
            r.key = std::string(mp_list_.text(0));
            r.upload_id = std::string(mp_list_.text(1));
            r.size = static_cast<uint64_t>(mp_list_.int64(2));
            r.part_size = static_cast<uint64_t>(mp_list_.int64(3));
            r.digest = std::string(mp_list_.text(4));
            out.push_back(std::move(r));
        }
    } catch (...) {
        mp_list_.reset();
        throw;
    }
    mp_list_.reset();
    for (auto& r : out) {
        mp_parts_.bind(1, bit_).bind(2, r.key);
        try {
            // Parts after a gap are of no use: a resume goes on from the first missing one.
            while (mp_parts_.step()) {
                if (mp_parts_.int64(0) != static_cast<int64_t>(r.etags.size()) + 1) break;
                r.etags.emplace_back(mp_parts_.text(1));
            }
        } catch (...) {
            mp_parts_.reset();
            throw;
        }
        mp_parts_.reset();
    }
    return out;
}

void batch_store::multipart_begin(const std::string& key, const std::string& upload_id,
                                  uint64_t size, uint64_t part_size, const std::string& digest) {
    const write_lock lock(*this);
    transaction t(db_);
    mp_forget_parts_.bind(1, bit_).bind(2, key);
    mp_forget_parts_.step();
    mp_forget_parts_.reset();
    mp_begin_.bind(1, bit_)
        .bind(2, key)
        .bind(3, upload_id)
        .bind(4, static_cast<int64_t>(size))
        .bind(5, static_cast<int64_t>(part_size))
        .bind(6, digest);
    mp_begin_.step();
    mp_begin_.reset();
    t.commit();
}

void batch_store::multipart_part(const std::string& key, int part, const std::string& etag) {
    const write_lock lock(*this);
    mp_part_.bind(1, bit_).bind(2, key).bind(3, part).bind(4, etag);
    mp_part_.step();
    mp_part_.reset();
}

void batch_store::multipart_forget(const std::string& key) {
    const write_lock lock(*this);
    transaction t(db_);
    for (statement* s : {&mp_forget_parts_, &mp_forget_}) {
        s->bind(1, bit_).bind(2, key);
        s->step();
        s->reset();
    }
    t.commit();
}

}  // namespace egw::storage
