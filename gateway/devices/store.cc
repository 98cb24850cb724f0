// SPDX-License-Identifier: Apache-2.0
#include "gateway/devices/store.h"

#include "storage/schema.h"

namespace egw::devices {

void batch::add_device(const device& d, time_ms now) {
    device_row r{d.id, d.online ? "online" : "offline", d.boot, device_record(d).dump(), now};
    for (auto& e : devices) {
        if (e.id == d.id) {
            e = std::move(r);
            return;
        }
    }
    devices.push_back(std::move(r));
}

void batch::add_task(const task& t) {
    task_row r{t.spec.id,    to_string(t.state), task_document(t).dump(), t.final, t.seq,
               t.updated_ms, t.attempts};
    for (auto& e : tasks) {
        if (e.id == t.spec.id) {
            e = std::move(r);
            return;
        }
    }
    tasks.push_back(std::move(r));
}

store::store(const std::string& path) : c_(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) {
    storage::exec(c_.get(), "PRAGMA journal_mode=WAL");
    storage::migrate(c_.get());
    sqlite3* db = c_.get();
    put_device_ = storage::statement(db,
                                     "INSERT INTO devices (id, state, boot, updated_ms, record) "
                                     "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO UPDATE SET "
                                     "state = ?2, boot = ?3, updated_ms = ?4, record = ?5");
    // published_seq survives an update: it only moves through mark_published_.
    put_task_ = storage::statement(
        db,
        "INSERT INTO tasks (id, state, final, seq, published_seq, updated_ms, doc) "
        "VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6) ON CONFLICT (id) DO UPDATE SET "
        "state = ?2, final = ?3, seq = ?4, updated_ms = ?5, doc = ?6");
    put_attempt_ = storage::statement(
        db,
        "INSERT OR REPLACE INTO task_attempts (task, n, device, boot, dispatched_ms, "
        "timeout_at_ms, ended_ms, state, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
    mark_published_ = storage::statement(
        db, "UPDATE tasks SET published_seq = max(published_seq, ?2) WHERE id = ?1");
    all_devices_ = storage::statement(db, "SELECT record FROM devices");
    all_tasks_ = storage::statement(db, "SELECT doc FROM tasks");
    unpublished_ = storage::statement(db, "SELECT id, seq FROM tasks WHERE published_seq < seq");
    prune_attempts_ = storage::statement(
        db,
        "DELETE FROM task_attempts WHERE task IN "
        "(SELECT id FROM tasks WHERE final = 1 AND updated_ms < ?1 AND published_seq >= seq)");
    prune_tasks_ = storage::statement(
        db, "DELETE FROM tasks WHERE final = 1 AND updated_ms < ?1 AND published_seq >= seq");
}

void store::write(const batch& b) {
    storage::transaction tx(c_);
    for (const auto& d : b.devices) {
        put_device_.bind(1, d.id).bind(2, d.state).bind(3, d.boot).bind(4, d.updated_ms);
        put_device_.bind(5, d.record);
        put_device_.step();
        put_device_.reset();
    }
    for (const auto& t : b.tasks) {
        put_task_.bind(1, t.id).bind(2, t.state).bind(3, int64_t{t.final});
        put_task_.bind(4, static_cast<int64_t>(t.seq)).bind(5, t.updated_ms).bind(6, t.doc);
        put_task_.step();
        put_task_.reset();
        for (const auto& a : t.attempts) {
            put_attempt_.bind(1, t.id).bind(2, int64_t{a.n}).bind(3, a.device).bind(4, a.boot);
            put_attempt_.bind(5, a.dispatched_ms).bind(6, a.timeout_at_ms).bind(7, a.ended_ms);
            put_attempt_.bind(8, std::string_view(to_string(a.state))).bind(9, a.reason);
            put_attempt_.step();
            put_attempt_.reset();
        }
    }
    for (const auto& [id, seq] : b.published) {
        mark_published_.bind(1, id).bind(2, static_cast<int64_t>(seq));
        mark_published_.step();
        mark_published_.reset();
    }
    tx.commit();
}

size_t store::load(engine& e, time_ms now) {
    size_t bad = 0;
    while (all_devices_.step()) {
        device d;
        json j = json::parse(all_devices_.text(0), nullptr, false);
        if (device_from_record(j, d)) {
            e.restore_device(std::move(d));
        } else {
            ++bad;
        }
    }
    all_devices_.reset();
    while (all_tasks_.step()) {
        task t;
        json j = json::parse(all_tasks_.text(0), nullptr, false);
        if (task_from_document(j, t)) {
            e.restore_task(std::move(t));
        } else {
            ++bad;
        }
    }
    all_tasks_.reset();
    e.restored(now);
    return bad;
}

std::vector<std::pair<std::string, uint64_t>> store::unpublished() {
    std::vector<std::pair<std::string, uint64_t>> out;
    while (unpublished_.step()) {
        out.emplace_back(std::string(unpublished_.text(0)),
                         static_cast<uint64_t>(unpublished_.int64(1)));
    }
    unpublished_.reset();
    return out;
}

size_t store::prune(time_ms before_ms) {
    storage::transaction tx(c_);
    prune_attempts_.bind(1, before_ms).step();
    prune_attempts_.reset();
    prune_tasks_.bind(1, before_ms).step();
    size_t n = static_cast<size_t>(sqlite3_changes(c_.get()));
    prune_tasks_.reset();
    tx.commit();
    return n;
}

}  // namespace egw::devices
