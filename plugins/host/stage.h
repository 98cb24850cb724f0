// SPDX-License-Identifier: Apache-2.0
// The plugin stage: runs buffered rows through the `via` chains of their routes and commits,
// per batch and in ONE SQLite transaction, the outputs as new rows, the release of the inputs,
// each touched stateful instance's snapshot and the dead letters (buffer::commit_stage).
//
// Crash safety. The stage is a consumer of the buffer with a bit of its own (the reserved sink
// name "@stage"), set at ingest on every row a via route matches. A row keeps that bit until
// the transaction that stores its outputs clears it, and that transaction also stores the
// snapshot of every stateful instance as it was after the batch. After kill -9, the restarted
// stage restores each instance from the last committed snapshot and reads the rows whose bit
// is still set, in sequence order: it replays exactly the inputs the snapshot does not
// include, so a deterministic plugin neither loses nor duplicates an output.
//
// Threads. Everything here runs on the loop thread except the batch job: the commit (always)
// and, when a heavy instance is involved, the plugin calls, on the gateway's work_pool. One batch
// is in flight at a time, so an instance is never called from two threads at once, and the
// loop never waits for a plugin or a commit. Outputs reach the sinks through `post` (called on
// the worker with the buffer's write lock held, in sequence order, as buffer::append does).
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gateway/log.h"
#include "gateway/sink_machine.h"
#include "gateway/work_pool.h"
#include "plugins/host/instance.h"
#include "storage/buffer.h"

namespace egw::plugins {

inline constexpr const char* stage_sink_name = "@stage";

// One configured instance (plugins.instances.NAME), resolved.
struct stage_instance_def {
    std::string name;
    std::string plugin;  // as configured
    std::string path;    // resolved file
    std::string isolation = "none";
    nlohmann::json config;
    call_limits limits;
};

// One route with `via`.
struct stage_route {
    int index = 0;  // in routes[]
    std::string from;
    std::vector<std::string> via;
    uint64_t sinks = 0;                                     // the route's `to`, as buffer bits
    std::vector<std::pair<std::string, uint64_t>> outputs;  // routes[].outputs: filter -> sinks
    bool high = false;  // priority "high": outputs with EGW_PRIORITY_ROUTE count as high
    // Sink bit -> the bit of its "NAME!high" sibling (docs/plugins.md, "Priority"): where high
    // outputs go instead.
    std::vector<std::pair<int, int>> high_bits;
};

// FNV-1a 64 of the config as compact JSON: stable across builds (std::hash is not).
uint64_t config_hash(const nlohmann::json& config);

class stage {
public:
    // `pool` runs the batch jobs and must outlive the stage's last batch (see busy()).
    stage(work_pool& pool, storage::buffer& buf, storage::buffer::stored_fn post);
    ~stage();
    stage(const stage&) = delete;
    stage& operator=(const stage&) = delete;

    // Installs instances and routes (start and reload). An instance whose plugin, isolation
    // and config did not change keeps its object and state; a new or changed one is created
    // and restored from its snapshot when that matches. Throws (leaving the running set as it
    // was) when an instance cannot be created. While a batch is in flight the new set applies
    // right after it commits.
    void configure(const std::vector<stage_instance_def>& instances,
                   const std::vector<stage_route>& routes);
    bool active() const { return !routes_.empty(); }
    bool busy() const { return busy_; }
    int bit() const { return bit_; }

    void on_live(const storage::stored_row& row);
    // Reads the buffer when behind, fires due timers, starts the next batch. Loop thread.
    void pump();
    // Stops starting batches; the one in flight still commits (its done callback runs from
    // the loop before the loop closes).
    void stop() { stopping_ = true; }

    // Replays dead letters through their route's chain (deleting them in the same transaction
    // as the outputs). Loop thread; `done` gets how many were replayed, or an error.
    void replay(std::vector<storage::dead_letter> letters,
                std::function<void(size_t, std::string)> done);

    nlohmann::json status() const;

private:
    struct instance_stats {
        uint64_t in = 0, out = 0, dead = 0, timers = 0;
        std::map<std::string, uint64_t> errors;  // by failure_kind
        std::deque<std::pair<std::chrono::steady_clock::time_point, uint32_t>> samples;  // ns
    };
    struct slot {
        stage_instance_def def;
        uint64_t hash = 0;
        std::unique_ptr<instance> inst;
        int64_t timer_ms = 0;  // 0: none
        bool touched = false;  // in the batch being built: snapshot it
        std::shared_ptr<instance_stats> stats;
    };
    struct batch;

    void start_batch(std::vector<storage::stored_row> rows, std::vector<slot*> timers,
                     std::vector<storage::dead_letter> replays,
                     std::function<void(size_t, std::string)> replay_done);
    void process(batch& b);
    // Runs `msgs` through route r's chain from position `from`; false (and a dead letter) when
    // an instance failed.
    bool run_chain(batch& b, const stage_route& r, size_t from, std::vector<output>& msgs,
                   const storage::stored_row& input, int64_t ts);
    uint64_t sinks_for(const stage_route& r, const std::string& topic, int priority) const;
    void timer_failed(batch& b, slot& s, const call_result& res, int64_t now);
    void replay_timer_letter(batch& b, const storage::dead_letter& dl);
    void finish(batch& b);
    void apply_pending_config();
    void record(slot& s, std::chrono::nanoseconds took, uint64_t outs);

    work_pool& pool_;
    storage::buffer& buf_;
    storage::buffer::stored_fn post_;
    int bit_;
    sink_machine feed_;  // rows for the stage's bit, live or read, in sequence order
    std::map<std::string, std::unique_ptr<slot>> slots_;
    std::vector<stage_route> routes_;
    bool busy_ = false;
    bool stopping_ = false;
    uint64_t released_ = 0;          // the stage's bit is cleared on every row <= it
    std::unique_ptr<batch> failed_;  // a batch whose commit failed: retried as is
    std::chrono::steady_clock::time_point retry_at_{};
    struct pending_config {
        std::vector<stage_instance_def> instances;
        std::vector<stage_route> routes;
    };
    std::unique_ptr<pending_config> pending_;
    std::deque<
        std::pair<std::vector<storage::dead_letter>, std::function<void(size_t, std::string)>>>
        replays_;
    mutable std::mutex stats_mu_;  // instance_stats: written by the batch, read by status()
    log::throttle error_log_;
    uint64_t batches_ = 0, commit_errors_ = 0, rows_in_ = 0, outputs_ = 0, dead_ = 0;
    std::string last_error_;
};

}  // namespace egw::plugins
