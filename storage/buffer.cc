// SPDX-License-Identifier: Apache-2.0
#include "storage/buffer.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <stdexcept>

#include "storage/schema.h"

namespace egw::storage {

namespace {

constexpr int total_bit = -1;  // the totals row for the whole buffer

// Past this size the WAL is checkpointed with RESTART, which waits for the writer, so that it
// starts again from the beginning. PASSIVE checkpoints alone never let a WAL under constant
// writes restart, and each ingest commit appends at least one 4 KiB page to it.
constexpr int64_t wal_restart_bytes = 64 << 20;

// Page size of new files (an existing file keeps its own). Each ingest commit writes at least
// one whole page to the WAL, so 1 KiB pages kept that write close to a small row's size; but a
// drain reads, deletes and checkpoints every page of the rows it sends, one pread/pwrite each,
// and with 1 KiB pages that cost 35-40 % of the gateway's CPU per drained row
// (tests/bench/README.md, batch drain). 4 KiB (SQLite's default, the size of a kernel page
// and of most flash blocks) cuts a drain's CPU by about a third; ingest measured the same CPU
// per commit, at up to 4 KiB of WAL per commit instead of 1 KiB between two checkpoints.
constexpr int64_t page_size = 4096;

// The page size of the file `db` is open on (the WAL counts frames of it).
int64_t file_page_size(sqlite3* db) {
    statement s(db, "PRAGMA page_size");
    return s.step() ? s.int64(0) : page_size;
}

// Rows per step of an acknowledgement transaction (about 1 us of SQLite work each). One
// transaction takes steps for at least ack_min_hold, so that acknowledgements keep up beside a
// steady ingest, and then until a writer queues for the lock, or ack_hold has passed: a
// writer waits about ack_min_hold and the commit at most, and a drain acknowledges 10,000
// rows in one commit, which writes each page it changed once instead of once per short
// transaction. Between two transactions the writers that queued meanwhile go first, for up to
// let_in_max.
constexpr int64_t ack_chunk_rows = 128;
constexpr std::chrono::microseconds ack_min_hold{1000};
constexpr std::chrono::milliseconds ack_hold{20};
constexpr std::chrono::milliseconds let_in_max{2};

bool is_corruption(const sqlite_error& e) {
    return e.code() == SQLITE_CORRUPT || e.code() == SQLITE_NOTADB;
}

uint64_t bit_mask(int bit) { return uint64_t{1} << bit; }

// Binds a row's props (encoded into `scratch`) to the insert's parameter 7: NULL when it has
// none. Returns the encoded size, which counts in the row's size.
size_t bind_props(statement& insert, int i, const row_props* p, std::string& scratch) {
    if (!p || p->empty()) {
        insert.bind_null(i);
        return 0;
    }
    scratch = encode_props(*p);
    insert.bind_blob(i, scratch);
    return scratch.size();
}

// A props column as read back: NULL (most rows) or row_props' encoding. A blob that does not
// decode (a damaged file) leaves the row without props rather than failing the read: the
// topic and payload still go out.
row_props read_props(const statement& s, int col) {
    row_props p;
    decode_props(s.blob(col), p);  // NULL reads as an empty blob: no props
    return p;
}

}  // namespace

stored_row to_stored_row(uint64_t seq, const incoming& in) {
    return stored_row{seq,
                      in.ts_ms,
                      in.sinks,
                      std::string(in.topic),
                      std::string(in.payload),
                      in.props ? *in.props : row_props{}};
}

// Row and byte changes from one write transaction, applied to the in-memory totals only
// after the commit succeeded.
struct buffer::delta {
    int64_t rows[max_sinks] = {};
    int64_t bytes[max_sinks] = {};
    int64_t all_rows = 0;
    int64_t all_bytes = 0;
    bool empty = true;

    // Over the set bits only: this runs once per row stored and per row acknowledged.
    static constexpr uint64_t all_bits = (uint64_t{1} << max_sinks) - 1;

    void add(uint64_t sinks, int64_t size) {
        for (uint64_t m = sinks & all_bits; m != 0; m &= m - 1) {
            const int b = std::countr_zero(m);
            rows[b] += 1;
            bytes[b] += size;
        }
        all_rows += 1;
        all_bytes += size;
        empty = false;
    }

    void remove(uint64_t sinks_cleared, bool row_deleted, int64_t size) {
        for (uint64_t m = sinks_cleared & all_bits; m != 0; m &= m - 1) {
            const int b = std::countr_zero(m);
            rows[b] -= 1;
            bytes[b] -= size;
        }
        if (row_deleted) {
            all_rows -= 1;
            all_bytes -= size;
        }
        empty = false;
    }
};

buffer::buffer(buffer_options opts) : opts_(std::move(opts)) {
    try {
        open_files();
        load_totals();
    } catch (const sqlite_error& e) {
        if (!is_corruption(e)) throw;
        // Keep the damaged file for inspection and start empty rather than fail every restart.
        close_files();
        quarantined_path_ = opts_.path + ".corrupt-" + std::to_string(std::time(nullptr));
        if (std::rename(opts_.path.c_str(), quarantined_path_.c_str()) != 0) {
            throw std::runtime_error("buffer " + opts_.path + " is corrupt (" + e.what() +
                                     ") and could not be moved aside");
        }
        std::rename((opts_.path + "-wal").c_str(), (quarantined_path_ + "-wal").c_str());
        std::remove((opts_.path + "-shm").c_str());
        open_files();
        load_totals();
        // The old file's last sequence number is lost with it. Sequence numbers must never be
        // reused (they are the cloud's de-duplication key), so continue from the clock in
        // microseconds: far above any count a gateway reaches, and still increasing.
        const uint64_t floor = static_cast<uint64_t>(std::time(nullptr)) * 1'000'000;
        const std::unique_lock lock = lock_writer();
        last_seq_ = floor;
        transaction t(writer_);
        write_snapshot(delta{}, floor);
        t.commit();
        snapshot_seq_ = floor;
    }
}

buffer::~buffer() {
    try {
        const std::unique_lock lock = lock_writer();
        transaction t(writer_);
        write_snapshot(delta{}, last_seq_);
        exec(writer_.get(), "UPDATE meta SET value = 1 WHERE key = 'clean'");
        t.commit();
        sqlite3_wal_checkpoint_v2(writer_.get(), nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr,
                                  nullptr);
    } catch (...) {
        // The totals are rebuilt from the rows at the next start; nothing is lost.
    }
}

// Statements first: a connection closes only once its statements are finalized.
void buffer::close_files() {
    for (statement* s : {&insert_, &select_oldest_, &delete_one_, &select_acked_, &delete_acked_,
                         &clear_acked_, &update_total_, &update_meta_, &find_sink_, &max_bit_,
                         &insert_sink_, &read_rows_, &read_oldest_}) {
        *s = statement();
    }
    writer_ = connection();
    reader_ = connection();
    checkpointer_ = connection();
    // Nothing read from the damaged file may survive into the fresh one.
    all_.rows = all_.bytes = 0;
    for (tally& t : per_sink_) t.rows = t.bytes = 0;
    known_bits_ = 0;
    snapshot_seq_ = 0;
    last_seq_ = 0;
}

void buffer::open_files() {
    const int rw = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    writer_ = connection(opts_.path, rw);
    sqlite3* db = writer_.get();
    exec(db, ("PRAGMA page_size = " + std::to_string(page_size)).c_str());
    exec(db, "PRAGMA journal_mode = WAL");
    exec(db, opts_.sync == sync_mode::full ? "PRAGMA synchronous = FULL"
                                           : "PRAGMA synchronous = NORMAL");
    // Checkpoints run in maintain() on a worker thread, never inside an ingest commit.
    exec(db, "PRAGMA wal_autocheckpoint = 0");
    exec(db, "PRAGMA journal_size_limit = 67108864");
    // Touch the schema so that a file that is not a database fails here, at start-up.
    exec(db, "SELECT count(*) FROM sqlite_master");
    migrate(db);

    insert_ = statement(db,
                        "INSERT INTO messages (seq, ts, sinks, size, topic, payload, props) "
                        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    select_oldest_ = statement(db, "SELECT seq, sinks, size FROM messages ORDER BY seq LIMIT 256");
    delete_one_ = statement(db, "DELETE FROM messages WHERE seq = ?1");
    select_acked_ = statement(db,
                              "SELECT seq, sinks, size FROM messages WHERE seq > ?1 AND seq <= ?2 "
                              "AND (sinks & ?3) != 0 ORDER BY seq LIMIT ?4");
    delete_acked_ =
        statement(db, "DELETE FROM messages WHERE seq > ?1 AND seq <= ?2 AND sinks = ?3");
    clear_acked_ = statement(db,
                             "UPDATE messages SET sinks = sinks & ~?3 WHERE seq > ?1 AND "
                             "seq <= ?2 AND (sinks & ?3) != 0");
    update_total_ = statement(db,
                              "INSERT OR REPLACE INTO totals (bit, rows, bytes) "
                              "VALUES (?1, ?2, ?3)");
    update_meta_ = statement(db, "UPDATE meta SET value = ?2 WHERE key = ?1");
    find_sink_ = statement(db, "SELECT bit FROM sinks WHERE name = ?1");
    max_bit_ = statement(db, "SELECT coalesce(max(bit) + 1, 0) FROM sinks");
    insert_sink_ = statement(db, "INSERT INTO sinks (name, bit) VALUES (?1, ?2)");

    reader_ = connection(opts_.path, SQLITE_OPEN_READWRITE);
    exec(reader_.get(), "PRAGMA query_only = 1");
    read_rows_ = statement(reader_.get(),
                           "SELECT seq, ts, sinks, topic, payload, props FROM messages "
                           "WHERE seq > ?1 AND (sinks & ?2) != 0 ORDER BY seq LIMIT ?3");
    read_oldest_ = statement(reader_.get(),
                             "SELECT ts FROM messages WHERE seq > ?1 AND (sinks & ?2) != 0 "
                             "ORDER BY seq LIMIT 1");

    checkpointer_ = connection(opts_.path, SQLITE_OPEN_READWRITE);
    // A connection learns that the file is in WAL mode only when it first reads it; until
    // then sqlite3_wal_checkpoint_v2() is a silent no-op and the WAL grows without bound.
    exec(checkpointer_.get(), "SELECT count(*) FROM sqlite_master");
}

void buffer::load_totals() {
    sqlite3* db = writer_.get();
    uint64_t last = 0;
    {
        statement s(db, "SELECT key, value FROM meta");
        while (s.step()) {
            if (s.text(0) == "snapshot_seq") snapshot_seq_ = static_cast<uint64_t>(s.int64(1));
            if (s.text(0) == "last_seq") last = static_cast<uint64_t>(s.int64(1));
        }
    }
    {
        statement s(db, "SELECT bit, rows, bytes FROM totals");
        while (s.step()) {
            int bit = static_cast<int>(s.int64(0));
            tally& t = bit == total_bit ? all_ : per_sink_.at(static_cast<size_t>(bit));
            if (bit != total_bit) known_bits_ |= bit_mask(bit);
            t.rows = s.int64(1);
            t.bytes = s.int64(2);
        }
    }
    // Rows written after the snapshot: at most the few seconds between two snapshots.
    statement s(db, "SELECT seq, sinks, size FROM messages WHERE seq > ?1 ORDER BY seq");
    s.bind(1, static_cast<int64_t>(snapshot_seq_));
    while (s.step()) {
        auto seq = static_cast<uint64_t>(s.int64(0));
        auto sinks = static_cast<uint64_t>(s.int64(1));
        int64_t size = s.int64(2);
        all_.rows += 1;
        all_.bytes += size;
        for (int b = 0; b < max_sinks; ++b) {
            if (sinks & bit_mask(b)) {
                per_sink_[b].rows += 1;
                per_sink_[b].bytes += size;
            }
        }
        if (seq > last) last = seq;
    }
    statement m(db, "SELECT coalesce(max(seq), 0) FROM messages");
    m.step();
    if (static_cast<uint64_t>(m.int64(0)) > last) last = static_cast<uint64_t>(m.int64(0));

    // After an unclean stop the newest commits may not have reached the disk (synchronous
    // normal fsyncs at checkpoints) although their rows were already delivered: jump past any
    // number they could have used, so that a consumer de-duplicating on the sequence number
    // never mistakes a new message for an old one.
    bool clean = false;
    {
        statement c(db, "SELECT value FROM meta WHERE key = 'clean'");
        clean = c.step() && c.int64(0) == 1;
    }
    if (!clean && last > 0) last += unclean_seq_gap;
    last_seq_ = last;
    // The totals now cover every row: record them, and mark the file as in use.
    transaction t(writer_);
    write_snapshot(delta{}, last);
    exec(db, "INSERT OR REPLACE INTO meta (key, value) VALUES ('clean', 0)");
    t.commit();
    snapshot_seq_ = last;
    snapshot_stale_ = false;
}

int buffer::sink_bit(const std::string& name) {
    const std::unique_lock lock = lock_writer();
    find_sink_.bind(1, name);
    if (find_sink_.step()) {
        int bit = static_cast<int>(find_sink_.int64(0));
        find_sink_.reset();
        return bit;
    }
    find_sink_.reset();
    max_bit_.step();
    int bit = static_cast<int>(max_bit_.int64(0));
    max_bit_.reset();
    if (bit >= max_sinks)
        throw std::runtime_error("too many sinks (at most 63 over the file's life)");
    insert_sink_.bind(1, name).bind(2, bit);
    insert_sink_.step();
    insert_sink_.reset();
    return bit;
}

std::vector<std::pair<std::string, int>> buffer::sink_bits() {
    const std::unique_lock lock = lock_writer();
    std::vector<std::pair<std::string, int>> out;
    statement s(writer_.get(), "SELECT name, bit FROM sinks ORDER BY bit");
    while (s.step()) out.emplace_back(std::string(s.text(0)), static_cast<int>(s.int64(1)));
    return out;
}

void buffer::set_sinks_in_use(uint64_t bits) {
    const std::unique_lock lock = lock_writer();
    in_use_ = bits;
}

// Deletes the oldest rows until `size` more bytes fit. Runs inside the caller's transaction.
bool buffer::evict_for(uint64_t size, delta& d, uint64_t& evicted) {
    auto over = [&] {
        return static_cast<uint64_t>(all_.bytes.load() + d.all_bytes) + size > opts_.max_bytes;
    };
    while (over()) {
        std::vector<std::pair<uint64_t, std::pair<uint64_t, int64_t>>> victims;
        while (select_oldest_.step()) {
            victims.push_back(
                {static_cast<uint64_t>(select_oldest_.int64(0)),
                 {static_cast<uint64_t>(select_oldest_.int64(1)), select_oldest_.int64(2)}});
        }
        select_oldest_.reset();
        if (victims.empty()) return false;
        for (auto& [seq, v] : victims) {
            if (!over()) break;
            delete_one_.bind(1, static_cast<int64_t>(seq));
            delete_one_.step();
            delete_one_.reset();
            d.remove(v.first, true, v.second);
            ++evicted;
        }
    }
    return true;
}

append_result buffer::append(std::string_view topic, std::string_view payload, uint64_t sinks,
                             int64_t ts_ms, const stored_fn& on_stored, const row_props* props) {
    const incoming m{topic, payload, sinks, ts_ms, props};
    std::vector<append_result> out;
    batch_result b = append_batch({&m, 1}, on_stored, out);
    if (b.handled == 1) return std::move(out.front());
    append_result r;
    r.status = b.stopped;
    r.error = std::move(b.error);
    return r;
}

buffer::batch_result buffer::append_batch(std::span<const incoming> in, const stored_fn& on_stored,
                                          std::vector<append_result>& out) {
    batch_result b;
    const size_t first = out.size();
    std::unique_lock lock = lock_writer();
    delta d;  // rows this transaction inserts and evicts
    uint64_t seq = last_seq_.load(std::memory_order_relaxed);
    uint64_t evicted = 0;
    std::string props;  // the current row's encoded props
    try {
        transaction t(writer_);
        for (const incoming& m : in) {
            append_result r;
            const uint64_t size =
                m.topic.size() + m.payload.size() + (m.props ? encoded_props_size(*m.props) : 0);
            const uint64_t sinks = m.sinks & in_use_;
            const bool full =
                static_cast<uint64_t>(all_.bytes.load() + d.all_bytes) + size > opts_.max_bytes;
            if (size > opts_.max_bytes) {
                r.status = append_status::too_large;
            } else if (!sinks) {
                r.status = append_status::no_sink;
            } else if (full && opts_.policy == when_full::drop_newest) {
                r.status = append_status::dropped_full;
            } else if (full && opts_.policy == when_full::block) {
                b.stopped = append_status::full;
                break;
            } else {
                if (full && !evict_for(size, d, r.evicted)) {
                    out.resize(first);
                    b.handled = 0;
                    b.stopped = append_status::failed;
                    b.error = "buffer accounting is inconsistent: nothing left to evict";
                    return b;  // rolled back
                }
                evicted += r.evicted;
                ++seq;
                insert_.bind(1, static_cast<int64_t>(seq))
                    .bind(2, m.ts_ms)
                    .bind(3, static_cast<int64_t>(sinks))
                    .bind(4, static_cast<int64_t>(size))
                    .bind(5, m.topic)
                    .bind_blob(6, m.payload);
                bind_props(insert_, 7, m.props, props);
                insert_.step();
                insert_.reset();
                d.add(sinks, static_cast<int64_t>(size));
                r.status = append_status::stored;
                r.seq = seq;
            }
            out.push_back(std::move(r));
            ++b.handled;
        }
        if (d.empty) return b;  // nothing stored: rolled back, nothing to commit
        // Evicted rows may sit below the snapshot, so the snapshot moves in the same commit.
        if (evicted) write_snapshot(d, seq);
        t.commit();
    } catch (const sqlite_error& e) {
        out.resize(first);
        b.handled = 0;
        b.stopped = e.code() == SQLITE_FULL ? append_status::disk_full : append_status::failed;
        b.error = e.what();
        return b;
    }
    apply(d);
    if (evicted) snapshot_seq_ = seq;
    last_seq_.store(seq, std::memory_order_release);
    snapshot_stale_ = true;
    if (on_stored) {
        for (size_t i = 0; i < b.handled; ++i) {
            const append_result& r = out[first + i];
            if (r.status != append_status::stored) continue;
            const incoming& m = in[i];
            on_stored(r.seq, incoming{m.topic, m.payload, m.sinks & in_use_, m.ts_ms, m.props});
        }
    }
    return b;
}

void buffer::apply(const delta& d) {
    all_.rows += d.all_rows;
    all_.bytes += d.all_bytes;
    for (int b = 0; b < max_sinks; ++b) {
        if (d.rows[b] || d.bytes[b]) {
            per_sink_[b].rows += d.rows[b];
            per_sink_[b].bytes += d.bytes[b];
        }
    }
}

// Inside a write transaction: records the totals as they will be once `d` is applied, valid
// for every row at or below at_seq.
void buffer::write_snapshot(const delta& d, uint64_t at_seq) {
    auto put = [&](int bit, int64_t rows, int64_t bytes) {
        update_total_.bind(1, bit).bind(2, rows).bind(3, bytes);
        update_total_.step();
        update_total_.reset();
    };
    put(total_bit, all_.rows + d.all_rows, all_.bytes + d.all_bytes);
    for (int b = 0; b < max_sinks; ++b) {
        int64_t rows = per_sink_[b].rows + d.rows[b];
        int64_t bytes = per_sink_[b].bytes + d.bytes[b];
        if (rows || bytes || known_bits_ & bit_mask(b)) {
            put(b, rows, bytes);
            known_bits_ |= bit_mask(b);
        }
    }
    auto meta = [&](const char* key, uint64_t v) {
        update_meta_.bind(1, key).bind(2, static_cast<int64_t>(v));
        update_meta_.step();
        update_meta_.reset();
    };
    meta("snapshot_seq", at_seq);
    meta("last_seq", std::max(at_seq, last_seq_.load(std::memory_order_relaxed)));
}

buffer::read_result buffer::read(int bit, uint64_t after, size_t limit, size_t max_bytes,
                                 std::vector<stored_row>& out) {
    // Anything committed before this load is visible to the query below.
    const uint64_t vouched = last_seq_.load(std::memory_order_acquire);
    read_rows_.bind(1, static_cast<int64_t>(after))
        .bind(2, static_cast<int64_t>(bit_mask(bit)))
        .bind(3, static_cast<int64_t>(limit));
    size_t n = 0, bytes = 0;
    bool cut = false;
    try {
        while (read_rows_.step()) {
            if (n > 0 && bytes >= max_bytes) {
                cut = true;  // the byte budget ends the batch early
                break;
            }
            out.push_back(stored_row{
                static_cast<uint64_t>(read_rows_.int64(0)), read_rows_.int64(1),
                static_cast<uint64_t>(read_rows_.int64(2)), std::string(read_rows_.text(3)),
                std::string(read_rows_.blob(4)), read_props(read_rows_, 5)});
            bytes += out.back().topic.size() + out.back().payload.size() +
                     encoded_props_size(out.back().props);
            ++n;
        }
    } catch (...) {
        read_rows_.reset();
        throw;
    }
    read_rows_.reset();
    if (n == 0) return {std::max(vouched, after), true};
    const uint64_t last = out.back().seq;
    if (cut || n == limit) return {last, false};
    return {std::max(vouched, last), true};
}

int64_t buffer::oldest_ts(int bit, uint64_t after) {
    read_oldest_.bind(1, static_cast<int64_t>(after)).bind(2, static_cast<int64_t>(bit_mask(bit)));
    int64_t ts = read_oldest_.step() ? read_oldest_.int64(0) : -1;
    read_oldest_.reset();
    return ts;
}

void buffer::ack(int bit, uint64_t after, uint64_t through) {
    while (after < through) {
        after = ack_chunk(bit, after, through);
        if (after < through) let_writers_in();
    }
}

std::unique_lock<std::mutex> buffer::lock_writer() {
    writers_waiting_.fetch_add(1);
    std::unique_lock lock(write_mu_);
    {
        // Under turn_mu_, so that let_writers_in() cannot miss the change between its check
        // and its wait.
        const std::lock_guard turn(turn_mu_);
        writers_waiting_.fetch_sub(1);
    }
    turn_cv_.notify_all();
    return lock;
}

// Between two acknowledgement transactions (the write lock released): waits until the writers
// queued for the lock have had it, so that the next transaction does not take it back from
// under them. Bounded in time: a steady stream of ingest commits cannot hold it off for ever.
void buffer::let_writers_in() {
    if (writers_waiting_.load() == 0) return;
    std::unique_lock turn(turn_mu_);
    turn_cv_.wait_for(turn, let_in_max, [this] { return writers_waiting_.load() == 0; });
}

// One transaction over the next rows of the range, ack_chunk_rows at a time, for as long as
// ack_min_hold, ack_hold and the writers queued for the lock (lock_writer) allow; returns how
// far it got. Ingest commits wait for the write lock (holding Paho's global mutex, see
// append()), so they wait about a millisecond at most; unhindered, a drain's million rows take
// about a hundred transactions instead of thousands (each commit rewrites the totals, meta and
// inner pages).
uint64_t buffer::ack_chunk(int bit, uint64_t after, uint64_t through) {
    const auto mask = static_cast<int64_t>(bit_mask(bit));
    std::lock_guard lock(write_mu_);
    const auto started = std::chrono::steady_clock::now();
    auto go_on = [&] {  // see ack_min_hold
        const auto held = std::chrono::steady_clock::now() - started;
        return held < ack_min_hold || (writers_waiting_.load() == 0 && held < ack_hold);
    };
    delta d;
    transaction t(writer_);
    uint64_t end = after;
    do {
        select_acked_.bind(1, static_cast<int64_t>(end))
            .bind(2, static_cast<int64_t>(through))
            .bind(3, mask)
            .bind(4, ack_chunk_rows);
        int64_t rows = 0, shared = 0;
        uint64_t last = end;
        while (select_acked_.step()) {
            last = static_cast<uint64_t>(select_acked_.int64(0));
            auto sinks = static_cast<uint64_t>(select_acked_.int64(1));
            d.remove(bit_mask(bit), sinks == bit_mask(bit), select_acked_.int64(2));
            shared += sinks != bit_mask(bit);
            ++rows;
        }
        select_acked_.reset();
        const uint64_t from = end;
        end = rows < ack_chunk_rows ? through : last;
        if (rows == 0) break;
        // The select saw every row of (from, end] that carries the bit (it runs in this
        // transaction, under the write lock): when none of them waits for another sink too, the
        // delete leaves nothing for the update to clear, and a backlog routed to one batch sink
        // skips that second pass over the range.
        for (statement* s : {&delete_acked_, &clear_acked_}) {
            if (s == &clear_acked_ && shared == 0) break;
            s->bind(1, static_cast<int64_t>(from)).bind(2, static_cast<int64_t>(end)).bind(3, mask);
            s->step();
            s->reset();
        }
    } while (end < through && go_on());
    if (d.empty) return through;  // rolled back: nothing left (evicted meanwhile)
    const uint64_t at = last_seq_.load(std::memory_order_relaxed);
    write_snapshot(d, at);
    t.commit();
    apply(d);
    snapshot_seq_ = at;
    snapshot_stale_ = false;
    return end;
}

std::chrono::steady_clock::duration buffer::maintain() {
    using clock = std::chrono::steady_clock;
    clock::duration held{0};
    {
        const std::unique_lock lock = lock_writer();
        if (snapshot_stale_) {
            const auto started = clock::now();
            const uint64_t at = last_seq_.load(std::memory_order_relaxed);
            transaction t(writer_);
            write_snapshot(delta{}, at);
            t.commit();
            snapshot_seq_ = at;
            snapshot_stale_ = false;
            held = clock::now() - started;
        }
    }
    // PASSIVE first, without the lock: it copies and fsyncs almost everything while ingest
    // goes on. Only when the WAL has grown long does a RESTART (which holds the writer)
    // finish the last few frames so that the next commit starts the WAL from the beginning.
    int frames = 0;
    int rc = sqlite3_wal_checkpoint_v2(checkpointer_.get(), nullptr, SQLITE_CHECKPOINT_PASSIVE,
                                       &frames, nullptr);
    if (rc == SQLITE_BUSY) return held;
    check(checkpointer_.get(), rc, "checkpoint");
    if (static_cast<int64_t>(frames) * file_page_size(checkpointer_.get()) > wal_restart_bytes) {
        // Ingest waits here, not in SQLite's busy handler.
        const std::unique_lock lock = lock_writer();
        const auto started = clock::now();
        rc = sqlite3_wal_checkpoint_v2(checkpointer_.get(), nullptr, SQLITE_CHECKPOINT_RESTART,
                                       nullptr, nullptr);
        held = std::max(held, clock::now() - started);
        if (rc != SQLITE_BUSY) check(checkpointer_.get(), rc, "checkpoint");
    }
    return held;
}

size_t buffer::commit_stage(const stage_batch& b, const stored_fn& on_stored) {
    const std::unique_lock lock = lock_writer();
    sqlite3* db = writer_.get();
    if (!put_state_.raw()) {
        put_state_ =
            statement(db,
                      "INSERT OR REPLACE INTO plugin_state (instance, plugin, config_hash, "
                      "timer_ms, state) VALUES (?1, ?2, ?3, ?4, ?5)");
        put_dead_ =
            statement(db,
                      "INSERT INTO dead_letters (ts, route, instance, kind, reason, seq, "
                      "msg_ts, topic, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
        drop_dead_ = statement(db, "DELETE FROM dead_letters WHERE id = ?1");
    }
    delta d;
    uint64_t seq = last_seq_.load(std::memory_order_relaxed);
    std::vector<std::pair<uint64_t, const stage_output*>> stored;
    std::string props;  // the current output's encoded props
    {
        transaction t(writer_);
        if (b.bit >= 0 && b.through > b.after) {
            const auto mask = static_cast<int64_t>(bit_mask(b.bit));
            select_acked_.bind(1, static_cast<int64_t>(b.after))
                .bind(2, static_cast<int64_t>(b.through))
                .bind(3, mask)
                .bind(4, int64_t{-1});  // no limit: a batch is bounded by the stage
            try {
                while (select_acked_.step()) {
                    auto sinks = static_cast<uint64_t>(select_acked_.int64(1));
                    d.remove(bit_mask(b.bit), sinks == bit_mask(b.bit), select_acked_.int64(2));
                }
            } catch (...) {
                select_acked_.reset();
                throw;
            }
            select_acked_.reset();
            for (statement* st : {&delete_acked_, &clear_acked_}) {
                st->bind(1, static_cast<int64_t>(b.after))
                    .bind(2, static_cast<int64_t>(b.through))
                    .bind(3, mask);
                st->step();
                st->reset();
            }
        }
        for (const stage_output& o : b.outputs) {
            const uint64_t sinks = o.sinks & in_use_;
            if (!sinks) continue;
            const uint64_t size = o.topic.size() + o.payload.size() + encoded_props_size(o.props);
            ++seq;
            insert_.bind(1, static_cast<int64_t>(seq))
                .bind(2, o.ts_ms)
                .bind(3, static_cast<int64_t>(sinks))
                .bind(4, static_cast<int64_t>(size))
                .bind(5, o.topic)
                .bind_blob(6, o.payload);
            bind_props(insert_, 7, &o.props, props);
            insert_.step();
            insert_.reset();
            d.add(sinks, static_cast<int64_t>(size));
            stored.emplace_back(seq, &o);
        }
        for (const plugin_state_row& st : b.states) {
            put_state_.bind(1, st.instance)
                .bind(2, st.plugin)
                .bind(3, static_cast<int64_t>(st.config_hash))
                .bind(4, st.timer_ms)
                .bind_blob(5, st.state);
            put_state_.step();
            put_state_.reset();
        }
        for (const dead_letter& dl : b.dead) {
            put_dead_.bind(1, dl.ts_ms)
                .bind(2, int64_t{dl.route})
                .bind(3, dl.instance)
                .bind(4, dl.kind)
                .bind(5, dl.reason)
                .bind(6, static_cast<int64_t>(dl.seq))
                .bind(7, dl.msg_ts_ms)
                .bind(8, dl.topic)
                .bind_blob(9, dl.payload);
            put_dead_.step();
            put_dead_.reset();
        }
        for (int64_t id : b.drop_dead) {
            drop_dead_.bind(1, id);
            drop_dead_.step();
            drop_dead_.reset();
        }
        write_snapshot(d, seq);
        t.commit();
    }
    apply(d);
    snapshot_seq_ = seq;
    snapshot_stale_ = false;
    last_seq_.store(seq, std::memory_order_release);
    if (on_stored) {
        for (const auto& [s, o] : stored) {
            on_stored(s, incoming{o->topic, o->payload, o->sinks & in_use_, o->ts_ms, &o->props});
        }
    }
    return stored.size();
}

std::vector<plugin_state_row> buffer::plugin_states() {
    const std::unique_lock lock = lock_writer();
    std::vector<plugin_state_row> out;
    statement s(writer_.get(),
                "SELECT instance, plugin, config_hash, timer_ms, state FROM plugin_state");
    while (s.step()) {
        out.push_back({std::string(s.text(0)), std::string(s.text(1)),
                       static_cast<uint64_t>(s.int64(2)), s.int64(3), std::string(s.blob(4))});
    }
    return out;
}

std::vector<dead_letter> buffer::dead_letters(int64_t after, size_t limit) {
    const std::unique_lock lock = lock_writer();
    std::vector<dead_letter> out;
    statement s(writer_.get(),
                "SELECT id, ts, route, instance, kind, reason, seq, msg_ts, topic, payload "
                "FROM dead_letters WHERE id > ?1 ORDER BY id LIMIT ?2");
    s.bind(1, after).bind(2, static_cast<int64_t>(limit));
    while (s.step()) {
        dead_letter d;
        d.id = s.int64(0);
        d.ts_ms = s.int64(1);
        d.route = static_cast<int>(s.int64(2));
        d.instance = s.text(3);
        d.kind = s.text(4);
        d.reason = s.text(5);
        d.seq = static_cast<uint64_t>(s.int64(6));
        d.msg_ts_ms = s.int64(7);
        d.topic = s.text(8);
        d.payload = s.blob(9);
        out.push_back(std::move(d));
    }
    return out;
}

int64_t buffer::dead_letter_count() {
    const std::unique_lock lock = lock_writer();
    statement s(writer_.get(), "SELECT count(*) FROM dead_letters");
    s.step();
    return s.int64(0);
}

bool buffer::drop_dead_letter(int64_t id) {
    const std::unique_lock lock = lock_writer();
    statement s(writer_.get(), "DELETE FROM dead_letters WHERE id = ?1");
    s.bind(1, id);
    s.step();
    return sqlite3_changes(writer_.get()) > 0;
}

int64_t buffer::drop_all_dead_letters() {
    const std::unique_lock lock = lock_writer();
    exec(writer_.get(), "DELETE FROM dead_letters");
    return sqlite3_changes(writer_.get());
}

}  // namespace egw::storage
