// SPDX-License-Identifier: Apache-2.0
// One interface for every sink type (mqtt, dir, ...): what the gateway's loop does with a sink,
// whatever its type. The gateway never looks at `type`; routes, status, reload, the ack job and
// the plugin stage see only this.
//
// Threads. Every method runs on the loop thread. A sink's own I/O threads (Paho's, the libuv
// worker pool) only post sink_events to the mailbox; the gateway hands them back to handle().
//
// Adding a type: a file pair in gateway/sinks/ with a parse function and a make function, one
// line in the registry (sink.cc) and a schema entry (config.schema.json, definitions.sink_<type>).
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gateway/config.h"
#include "gateway/counters.h"
#include "gateway/events.h"
#include "gateway/mailbox.h"
#include "storage/buffer.h"

namespace egw {

class mqtt_sink;

class sink {
public:
    virtual ~sink() = default;

    // An event one of this sink's threads posted (sink_event.sink_id == id()).
    virtual void handle(sink_event& e) = 0;
    // A row just committed for this sink (its bit may or may not be set: check row.sinks).
    // `last`: no sink after this one looks at it, so it may be moved from instead of copied.
    virtual void on_live(storage::stored_row& row, bool last) = 0;
    // Connects when due, reads the buffer when behind, sends what it may.
    virtual void pump() = 0;
    // Once per second, with the seconds since the previous call (rates, ETA).
    virtual void tick(double seconds) = 0;
    // The retained gateway status, every status_interval_ms: only an MQTT sink publishes it.
    virtual void publish_status(const std::string& /*json*/) {}
    // Stops sending; `offline_status` is the gateway's last status for sinks that publish it.
    // Waits at most `budget`.
    virtual void stop(const std::string& offline_status, std::chrono::milliseconds budget) = 0;
    // SIGHUP and the sink's config did not change: a sink in error tries again now.
    virtual void on_reload() {}
    // This sink's part of `status --json`: at least state, rows_waiting, eta_s, last_error.
    virtual nlohmann::json status() = 0;

    // Live rows are worth handing to on_live() (the sink is connected and caught up, or about
    // to be); while no sink wants them ingest saves the copy.
    virtual bool wants_live() const = 0;
    // Acknowledgements arrive quietly (no wake-up per ack) and the gateway should poll the
    // mailbox every millisecond while this is true (see gateway::pump_all).
    virtual bool polls_acks() const { return false; }

    // Rows acknowledged but not yet removed from the buffer: (ack_committed, acked_through].
    // The gateway's ack job removes them and then calls ack_commit_done(through).
    virtual uint64_t ack_committed() const = 0;
    virtual uint64_t acked_through() const = 0;
    virtual void ack_commit_done(uint64_t through) = 0;

    // Priority (docs/plugins.md): the gateway holds a sink's new sends while its "NAME!high"
    // sibling has rows to send (reads and acks go on). Only the MQTT sink has siblings.
    virtual void set_held(bool /*held*/) {}
    // How long the sink has been connected; zero while it is not.
    virtual std::chrono::steady_clock::duration connected_for() const { return {}; }

    // The MQTT sink behind this interface, for features that ride on its connection (downlink,
    // device registry); nullptr for every other type.
    virtual mqtt_sink* as_mqtt() { return nullptr; }

    const sink_config& config() const { return cfg_; }
    int bit() const { return bit_; }
    int id() const { return id_; }

protected:
    sink(int id, sink_config cfg, int bit) : id_(id), cfg_(std::move(cfg)), bit_(bit) {}
    sink(const sink&) = delete;
    sink& operator=(const sink&) = delete;

    const int id_;
    const sink_config cfg_;
    const int bit_;
};

// What a sink is made with; every reference outlives the sink.
struct sink_context {
    int id;
    const sink_config& cfg;
    const std::string& gateway_id;
    int bit;
    storage::buffer& buf;
    counters& cnt;
    mailbox<event>& mb;
    uv_loop_t* loop;
};

// Builds the sink for cfg.type. Throws std::invalid_argument for an unknown type (the schema
// refuses those before).
std::unique_ptr<sink> make_sink(const sink_context& ctx);

// Fills the type-specific part of `out` (out.name, out.type and out.raw are set) from the
// sink's JSON `s`, already validated against the schema; problems found are appended with
// keys under `path` ("sinks.NAME"). `c` holds gateway_id. Called by config.cc.
void parse_sink(const nlohmann::json& s, const std::string& path, const config& c, sink_config& out,
                std::vector<config_problem>& problems);

}  // namespace egw
