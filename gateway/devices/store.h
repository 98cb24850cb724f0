// SPDX-License-Identifier: Apache-2.0
// The registry and the task table on disk: tables `devices`, `tasks` and `task_attempts` in the
// buffer's SQLite file (schema migration 2, storage/schema.cc), on a connection of this class's
// own, so that kill -9 of the gateway loses neither a device nor a task nor any attempt.
//
// Threads. A store belongs to one thread at a time. The gateway builds a `batch` on the loop
// thread from the engine's effects (serialising the few changed documents is cheap) and writes
// it on the libuv worker pool, one batch in flight at a time, each batch one transaction: the loop
// never waits for SQLite or an fsync, and a burst of state changes costs one commit, not one per
// change. load() runs once at start-up, before the loop.
//
// Order against the buffer. A task state is written here first (with its seq) and then appended
// to the buffer for the cloud; `published_seq` records the latest state known to be in the
// buffer. After a crash between the two, unpublished() names the tasks whose current state
// must be appended again (with its existing seq: the cloud may see a seq twice, never two
// different states with one seq).
#pragma once

#include <string>
#include <vector>

#include "gateway/devices/engine.h"
#include "storage/sqlite.h"

namespace egw::devices {

struct batch {
    struct device_row {
        std::string id, state, boot, record;
        time_ms updated_ms = 0;
    };
    struct task_row {
        std::string id, state, doc;
        bool final = false;
        uint64_t seq = 0;
        time_ms updated_ms = 0;
        std::vector<attempt> attempts;
    };
    std::vector<device_row> devices;
    std::vector<task_row> tasks;
    std::vector<std::pair<std::string, uint64_t>> published;  // task, seq now in the buffer
    bool empty() const { return devices.empty() && tasks.empty() && published.empty(); }

    // Adds (or replaces) the current state of the device / task from the engine.
    void add_device(const device& d, time_ms now);
    void add_task(const task& t);
};

class store {
public:
    // Opens `path` (the buffer's file, already migrated by the buffer, or a file of its own:
    // it migrates it). Throws storage::sqlite_error.
    explicit store(const std::string& path);

    // One transaction. Throws storage::sqlite_error (the caller keeps the batch and retries).
    void write(const batch& b);

    // Every device and task into `e` (call before the loop starts), then e.restored(now).
    // Rows that do not parse are skipped and counted in the return value.
    size_t load(engine& e, time_ms now);

    // Tasks whose latest state may not have reached the buffer: (id, seq).
    std::vector<std::pair<std::string, uint64_t>> unpublished();

    // Removes final tasks last updated before `before_ms` (and their attempts); returns how many.
    size_t prune(time_ms before_ms);

private:
    storage::connection c_;
    storage::statement put_device_, put_task_, put_attempt_, mark_published_, all_devices_,
        all_tasks_, unpublished_, prune_attempts_, prune_tasks_;
};

}  // namespace egw::devices
