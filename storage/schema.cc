// SPDX-License-Identifier: Apache-2.0
#include "storage/schema.h"

#include <iterator>
#include <stdexcept>
#include <string>

#include "storage/sqlite.h"

namespace egw::storage {
namespace {

// Each entry takes the schema from version i to i + 1. Entries are never edited once
// released: a change is a new entry.
const char* const migrations[] = {
    // 0 -> 1
    R"sql(
    -- One row per accepted message. `sinks` is the set of sinks (bit per sink, see table
    -- sinks) that have not acknowledged it yet; the row is deleted when it reaches 0.
    -- Small columns come first so scans that need only seq/sinks/size never touch the
    -- payload's overflow pages.
    CREATE TABLE messages (
        seq     INTEGER PRIMARY KEY,   -- per gateway, monotonic, never reused
        ts      INTEGER NOT NULL,      -- ingest time, unix milliseconds
        sinks   INTEGER NOT NULL,      -- bitmask of sinks still to deliver to
        size    INTEGER NOT NULL,      -- topic + payload bytes, counted against max_bytes
        topic   TEXT    NOT NULL,
        payload BLOB    NOT NULL
    );
    -- Stable sink name -> bit, so a restart or reload keeps each sink's pending rows.
    CREATE TABLE sinks (
        name TEXT PRIMARY KEY,
        bit  INTEGER NOT NULL UNIQUE CHECK (bit BETWEEN 0 AND 62)
    );
    -- Row and byte totals as of meta.snapshot_seq (bit -1 = the whole buffer). Ingest does
    -- not update them (that would double the cost of each commit); start-up adds the rows
    -- written after snapshot_seq, which is at most a few seconds of traffic.
    CREATE TABLE totals (
        bit   INTEGER PRIMARY KEY,
        rows  INTEGER NOT NULL,
        bytes INTEGER NOT NULL
    );
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO meta VALUES ('snapshot_seq', 0), ('last_seq', 0);
    INSERT INTO totals VALUES (-1, 0, 0);
    )sql",
    // 1 -> 2
    R"sql(
    -- The sequence ranges batch sinks (dir, http, s3) decided, recorded before the upload
    -- starts so that a retry after a restart sends the same rows under the same key. `uploaded`
    -- is set once the object is stored, before its rows are acknowledged; the record goes once
    -- they are. upload_id: an S3 multipart upload under way for it.
    CREATE TABLE batches (
        bit       INTEGER NOT NULL,
        first_seq INTEGER NOT NULL,
        last_seq  INTEGER NOT NULL,
        uploaded  INTEGER NOT NULL DEFAULT 0,
        upload_id TEXT,
        PRIMARY KEY (bit, first_seq)
    ) WITHOUT ROWID;
    )sql",
    // 2 -> 3: devices and tasks (gateway/devices/store.h). The JSON documents are what the gateway
    // restores from; the columns beside them are for queries and the CLI.
    R"sql(
    CREATE TABLE devices (
        id         TEXT PRIMARY KEY,
        state      TEXT    NOT NULL,   -- online / offline
        boot       TEXT    NOT NULL,
        updated_ms INTEGER NOT NULL,
        record     TEXT    NOT NULL    -- the registry record, as published to the cloud
    ) WITHOUT ROWID;
    CREATE TABLE tasks (
        id            TEXT PRIMARY KEY,
        state         TEXT    NOT NULL,
        final         INTEGER NOT NULL,
        seq           INTEGER NOT NULL,   -- of the task's latest state
        published_seq INTEGER NOT NULL,   -- latest state known to be in the buffer
        updated_ms    INTEGER NOT NULL,
        doc           TEXT    NOT NULL    -- spec, state and every attempt
    ) WITHOUT ROWID;
    CREATE INDEX tasks_by_state ON tasks (state);
    CREATE TABLE task_attempts (
        task          TEXT    NOT NULL,
        n             INTEGER NOT NULL,
        device        TEXT    NOT NULL,
        boot          TEXT    NOT NULL,
        dispatched_ms INTEGER NOT NULL,
        timeout_at_ms INTEGER NOT NULL,
        ended_ms      INTEGER NOT NULL,   -- 0 while in flight
        state         TEXT    NOT NULL,
        reason        TEXT    NOT NULL,
        PRIMARY KEY (task, n)
    ) WITHOUT ROWID;
    )sql",
    // 3 -> 4: the plugin stage (plugins/host/stage.h)
    R"sql(
    -- The last committed state of each stateful plugin instance, written in the same
    -- transaction as the outputs and input releases it accounts for. Restored only when the
    -- plugin file and the config hash still match.
    CREATE TABLE plugin_state (
        instance    TEXT PRIMARY KEY,
        plugin      TEXT NOT NULL,     -- resolved plugin file
        config_hash INTEGER NOT NULL,  -- FNV-1a 64 of the instance's config as JSON
        timer_ms    INTEGER NOT NULL,  -- the timer the instance had asked for (0: none)
        state       BLOB NOT NULL
    );
    -- Messages a plugin failed on (error, exception, bad output, budget, crash), kept for
    -- `edge-gateway dead-letters` to list, replay through their route or drop.
    CREATE TABLE dead_letters (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        ts       INTEGER NOT NULL,     -- when it failed, unix milliseconds
        route    INTEGER NOT NULL,     -- index in routes at the time
        instance TEXT    NOT NULL,
        kind     TEXT    NOT NULL,     -- error | exception | bad_output | timeout | memory | crashed
        reason   TEXT    NOT NULL,
        seq      INTEGER NOT NULL,     -- the input row's sequence number
        msg_ts   INTEGER NOT NULL,     -- the input's ingest time
        topic    TEXT    NOT NULL,
        payload  BLOB    NOT NULL
    );
    )sql",
    // 4 -> 5: a row's message properties (storage/row_props.h)
    R"sql(
    -- Content type, retain flag and MQTT 5 user properties in row_props' encoding; NULL when the
    -- row has none (plain ingest). Its bytes count in `size`. Older rows read as NULL.
    ALTER TABLE messages ADD COLUMN props BLOB;
    )sql",
    // 5 -> 6: S3 multipart uploads under way (gateway/sinks/s3_sink.h, storage/batches.h)
    R"sql(
    -- One row per multipart upload a batch sink started and has not completed or aborted, and
    -- the ETag of each part stored, each recorded before the next request: after a crash the
    -- upload resumes after its last recorded part instead of starting over. (batches.upload_id
    -- is not used: one batch may store several objects, each may be a multipart upload.)
    CREATE TABLE multipart_uploads (
        bit       INTEGER NOT NULL,   -- the sink
        key       TEXT    NOT NULL,   -- object key, encoded as in the request path
        upload_id TEXT    NOT NULL,
        size      INTEGER NOT NULL,   -- object bytes, part size and the SHA-256 of the parts'
        part_size INTEGER NOT NULL,   -- SHA-256s: a resume needs all three unchanged
        digest    TEXT    NOT NULL,
        PRIMARY KEY (bit, key)
    ) WITHOUT ROWID;
    CREATE TABLE multipart_parts (
        bit  INTEGER NOT NULL,
        key  TEXT    NOT NULL,
        part INTEGER NOT NULL,        -- 1-based part number
        etag TEXT    NOT NULL,        -- as the service returned it, quotes included
        PRIMARY KEY (bit, key, part)
    ) WITHOUT ROWID;
    )sql",
};

static_assert(std::size(migrations) == schema_version, "one migration per schema version");

int user_version(sqlite3* db) {
    statement s(db, "PRAGMA user_version");
    s.step();
    return static_cast<int>(s.int64(0));
}

}  // namespace

void migrate(sqlite3* db) {
    int v = user_version(db);
    if (v > schema_version) {
        throw std::runtime_error("buffer schema version " + std::to_string(v) +
                                 " is newer than this build supports (" +
                                 std::to_string(schema_version) + ")");
    }
    if (v == schema_version) return;
    exec(db, "BEGIN IMMEDIATE");
    try {
        for (; v < schema_version; ++v) exec(db, migrations[v]);
        exec(db, ("PRAGMA user_version = " + std::to_string(schema_version)).c_str());
        exec(db, "COMMIT");
    } catch (...) {
        sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
        throw;
    }
}

}  // namespace egw::storage
