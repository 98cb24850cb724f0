// SPDX-License-Identifier: Apache-2.0
// The durable message buffer: a SQLite file in WAL mode that every accepted message enters
// before anything else happens to it, and that a message leaves only when every sink it was
// routed to has acknowledged it.
//
// Threads. append() runs on the ingest thread and commits before it returns. read() and
// oldest_ts() use a separate reader connection and belong to one thread (the loop). ack() and
// maintain() run on worker threads. The write connection is serialised by a mutex; the
// in-memory totals are atomics so any thread may read them.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "storage/row_props.h"
#include "storage/sqlite.h"

namespace egw::storage {

inline constexpr int max_sinks = 63;

// How far sequence numbers jump after an unclean stop (kill -9, power loss): more than the
// commits that can be lost between two checkpoints at any realistic rate.
inline constexpr uint64_t unclean_seq_gap = 1'000'000;

enum class when_full { drop_oldest, drop_newest, block };
enum class sync_mode { normal, full };
// When the ingest commits (read by the gateway, see docs/configuration.md buffer.commit).
// each: one transaction per message on Paho's receive thread, before Paho acknowledges it to the
// local broker: nothing acknowledged is ever lost. group: Paho's thread queues the message and a
// writer thread commits whatever is queued in one transaction: faster, but a crash loses the
// messages queued or in the transaction under way, which the local broker already let go.
enum class commit_mode { each, group };

struct buffer_options {
    std::string path;
    uint64_t max_bytes = 1ull << 30;
    when_full policy = when_full::drop_oldest;
    // normal: a commit is a write() into the WAL (survives kill -9); the WAL is fsynced at each
    // checkpoint. full: every commit is fsynced (survives power loss at any instant).
    sync_mode sync = sync_mode::normal;
    commit_mode commit = commit_mode::each;
};

// A message to store: the views (and props, when set) must stay valid for the call.
struct incoming {
    std::string_view topic;
    std::string_view payload;
    uint64_t sinks = 0;
    int64_t ts_ms = 0;
    const row_props* props = nullptr;  // nullptr or empty: none (the row stores NULL)
};

struct stored_row {
    uint64_t seq = 0;
    int64_t ts_ms = 0;
    uint64_t sinks = 0;
    std::string topic;
    std::string payload;
    row_props props;  // content type, retain flag, user properties; empty for most rows
};

// The row a stored_fn was told about, as read() would return it.
stored_row to_stored_row(uint64_t seq, const incoming& in);

enum class append_status {
    stored,
    dropped_full,  // drop-newest: the new message is not stored
    full,          // block: not stored; the caller holds the message and retries after acks
    too_large,     // larger than max_bytes on its own
    no_sink,       // every sink it was routed to has been removed meanwhile (reload)
    disk_full,     // SQLITE_FULL: the message is dropped, delivery goes on and frees space
    failed,        // any other SQLite error (logged by the caller)
};

struct append_result {
    append_status status = append_status::failed;
    uint64_t seq = 0;
    uint64_t evicted = 0;  // rows dropped by drop-oldest to make room
    std::string error;
};

// --- the plugin stage (plugins/host/stage.h) ---------------------------------------------
// An output row a plugin produced: stored like an ingested message, for `sinks`.
struct stage_output {
    std::string topic, payload;
    uint64_t sinks = 0;
    int64_t ts_ms = 0;
    row_props props;
};

// A stateful instance's snapshot, keyed by instance name.
struct plugin_state_row {
    std::string instance, plugin;
    uint64_t config_hash = 0;
    int64_t timer_ms = 0;
    std::string state;
};

struct dead_letter {
    int64_t id = 0;  // assigned by the buffer
    int64_t ts_ms = 0;
    int route = 0;
    std::string instance, kind, reason;
    uint64_t seq = 0;
    int64_t msg_ts_ms = 0;
    std::string topic, payload;
};

// Everything one batch of the stage commits at once: the release of the stage's bit on the
// inputs in (after, through], their outputs, the touched instances' snapshots, new dead
// letters and dead letters replayed (deleted).
struct stage_batch {
    int bit = -1;
    uint64_t after = 0, through = 0;
    std::vector<stage_output> outputs;
    std::vector<plugin_state_row> states;
    std::vector<dead_letter> dead;
    std::vector<int64_t> drop_dead;
};

struct tally {
    std::atomic<int64_t> rows{0};
    std::atomic<int64_t> bytes{0};
};

class buffer {
public:
    // Called with the write lock held, right after the commit, in sequence order, with the row
    // as stored (its sinks stripped of those out of use); the views are valid for the call.
    // The loop uses it to see live rows in exactly the order they were committed.
    using stored_fn = std::function<void(uint64_t seq, const incoming& row)>;

    // Opens or creates the file, migrates it and loads the totals. A file SQLite reports as
    // corrupt (or not a database) is renamed to PATH.corrupt-<unix time> and a fresh buffer
    // is created: the gateway keeps running and the old file is kept for inspection.
    // quarantined() tells whether that happened. Throws on anything else.
    explicit buffer(buffer_options opts);
    ~buffer();
    buffer(const buffer&) = delete;
    buffer& operator=(const buffer&) = delete;

    // Stable bit for a sink name, assigned on first use and kept in the file.
    int sink_bit(const std::string& name);
    // Every sink name the file has seen, with its bit.
    std::vector<std::pair<std::string, int>> sink_bits();

    // The bits of the sinks configured now (all by default). append() strips any other bit, so
    // that a message routed with the previous route table while a reload removes a sink cannot
    // keep that sink's bit after its rows were released. Set it before installing a route
    // table that uses new sinks, and before releasing the rows of removed ones.
    void set_sinks_in_use(uint64_t bits);

    // Stores one message for the sinks in `sinks` and commits. ts_ms is the ingest time. `props`
    // (may be null) are stored with it; their encoded bytes count in the row's size.
    // Never waits for space: with when_full=block it returns `full` at once, because the
    // ingest thread is Paho's receive thread and must not stall (it also carries the sinks'
    // acknowledgements, which are what frees space).
    append_result append(std::string_view topic, std::string_view payload, uint64_t sinks,
                         int64_t ts_ms, const stored_fn& on_stored,
                         const row_props* props = nullptr);

    // Stores messages in order in one transaction (group commit). `out` gets one result per
    // message handled (stored, or dropped with a reason), in order; `handled` says how many
    // that is. It stops before the first message that must wait (when_full=block and no room:
    // `stopped` is full) and stores nothing on a SQLite error (`stopped` is disk_full or
    // failed, with `error`). The messages from `handled` on must be retried later.
    struct batch_result {
        size_t handled = 0;
        append_status stopped = append_status::stored;
        std::string error;
    };
    batch_result append_batch(std::span<const incoming> in, const stored_fn& on_stored,
                              std::vector<append_result>& out);

    // Up to `limit` rows (and about `max_bytes` of topic + payload + props, at least one row) for
    // sink `bit` with seq > after, oldest first, appended to `out`. `vouched` is the highest
    // sequence number the read answers for: every row for this sink up to it is in `out` (or
    // was at or below `after`). `complete` is true when nothing for this sink lies beyond it
    // (the reader is caught up). Reader connection: one thread only.
    struct read_result {
        uint64_t vouched = 0;
        bool complete = false;
    };
    read_result read(int bit, uint64_t after, size_t limit, size_t max_bytes,
                     std::vector<stored_row>& out);

    // Ingest time of the oldest row for `bit` with seq > after, or -1 if there is none.
    int64_t oldest_ts(int bit, uint64_t after);

    // Every row for sink `bit` with after < seq <= through was acknowledged: clear its bit and
    // delete rows no sink still needs. A transaction lasts about 1 ms, or longer (up to 20 ms)
    // while no other writer queues for the write lock (lock_writer(), which every other
    // writer of this buffer takes): ingest waits about a millisecond behind it at most, and
    // a writer that queued gets the lock before the next transaction. Worker thread (and the
    // loop thread at shutdown).
    void ack(int bit, uint64_t after, uint64_t through);

    // The write lock, as every writer of this buffer but ack() takes it; also for a writer on
    // another connection to this file (a batch sink's records), whose transaction then does not
    // wait in SQLite's busy handler for this buffer's writes (other connections, such as the
    // devices store's, may still hold SQLite's lock). A run of acknowledgements lets a queued
    // writer in after its current transaction instead of holding it off until it is done (a
    // drain acknowledges 10,000 rows at a time). Any thread.
    std::unique_lock<std::mutex> lock_writer();

    // The plugin stage's commit: everything in `b` in one transaction (see stage_batch).
    // Outputs get new sequence numbers in order and are not subject to max_bytes (the
    // release of their inputs in the same commit frees about as much); an output whose sinks
    // are all out of use is not stored. on_stored is called for each stored output exactly as
    // append() does. Returns the number of outputs stored. Throws sqlite_error (nothing is
    // committed). Worker thread.
    size_t commit_stage(const stage_batch& b, const stored_fn& on_stored);
    // Every saved instance snapshot. Start-up and reload, any thread.
    std::vector<plugin_state_row> plugin_states();
    // Dead letters, oldest first, with id > after (at most `limit`); their number; dropping
    // one (false if there is none with that id) or all (returns how many). Any thread.
    std::vector<dead_letter> dead_letters(int64_t after, size_t limit);
    int64_t dead_letter_count();
    bool drop_dead_letter(int64_t id);
    int64_t drop_all_dead_letters();

    // Writes the totals snapshot if it is stale and checkpoints the WAL (the fsync). Returns
    // how long it held the write lock, i.e. held ingest, at most. Worker.
    std::chrono::steady_clock::duration maintain();

    const tally& total() const { return all_; }
    const tally& for_sink(int bit) const { return per_sink_[bit]; }
    uint64_t last_seq() const { return last_seq_.load(std::memory_order_acquire); }
    bool quarantined() const { return !quarantined_path_.empty(); }
    const std::string& quarantined_path() const { return quarantined_path_; }
    const buffer_options& options() const { return opts_; }

private:
    struct delta;
    void open_files();
    void close_files();
    void load_totals();
    void apply(const delta& d);
    uint64_t ack_chunk(int bit, uint64_t after, uint64_t through);
    void let_writers_in();
    void write_snapshot(const delta& d, uint64_t at_seq);
    bool evict_for(uint64_t size, delta& d, uint64_t& evicted);

    buffer_options opts_;
    std::string quarantined_path_;

    std::mutex write_mu_;  // guards writer_ and every statement on it
    // Threads queued in lock_writer(). A mutex lets the thread that releases it take it
    // again at once: without this count the acknowledgements, which take it back to back,
    // would keep everyone else out until they are done.
    std::atomic<int> writers_waiting_{0};
    std::mutex turn_mu_;  // let_writers_in() waits on turn_cv_ for writers_waiting_ to drop
    std::condition_variable turn_cv_;
    connection writer_;
    statement insert_, select_oldest_, delete_one_, select_acked_, delete_acked_, clear_acked_,
        update_total_, update_meta_, find_sink_, max_bit_, insert_sink_;

    connection reader_;  // loop thread only
    statement read_rows_, read_oldest_;

    connection checkpointer_;  // worker thread only; checkpoints take no write lock

    tally all_;
    std::array<tally, max_sinks> per_sink_;
    std::atomic<uint64_t> last_seq_{0};
    uint64_t snapshot_seq_ = 0;  // rows at or below it are in the totals table (write_mu_)
    bool snapshot_stale_ = false;
    uint64_t known_bits_ = 0;         // sinks that have a totals row (write_mu_)
    uint64_t in_use_ = ~uint64_t{0};  // write_mu_

    // The stage's statements (write_mu_), prepared on first use; declared last so that they
    // are finalized before the connections close.
    statement put_state_, put_dead_, drop_dead_;
};

}  // namespace egw::storage
