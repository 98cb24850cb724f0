// SPDX-License-Identifier: Apache-2.0
// The daemon: one libuv loop thread that owns every piece of state (sinks, counters, the
// control socket, timers, signals) and the parts around it (ingest on Paho's thread, buffer
// maintenance on the libuv worker pool).
#pragma once

#include <uv.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gateway/config.h"
#include "gateway/control.h"
#include "gateway/counters.h"
#include "gateway/devices/relay.h"
#include "gateway/devices/service.h"
#include "gateway/events.h"
#include "gateway/ingest.h"
#include "gateway/mailbox.h"
#include "gateway/metrics.h"
#include "gateway/router.h"
#include "gateway/sinks/sink.h"
#include "plugins/host/stage.h"
#include "storage/buffer.h"

namespace egw {

// SIGTERM or SIGINT arrived while the gateway was still waiting for its buffer.
struct stopped_before_start : std::exception {
    const char* what() const noexcept override { return "stopped before start"; }
};

class gateway {
public:
    // Opens the buffer (waiting while storage is unusable) and sets everything up; throws on
    // a start-up error.
    gateway(config cfg, std::string config_path);
    ~gateway();
    gateway(const gateway&) = delete;
    gateway& operator=(const gateway&) = delete;

    // Runs until SIGTERM or SIGINT; returns the process exit code.
    int run();

private:
    void on_events(std::vector<event>& batch);
    void on_tick();
    void on_signal(int signum);
    void reload();
    void apply_sinks_and_routes(const config& next);
    void release_unconfigured_sinks(const config& next);
    void schedule_acks();
    void schedule_acks_if_piled_up();
    void schedule_maintenance();
    void schedule_held_retry();
    void shutdown();
    nlohmann::json status_json();
    std::string gateway_status(const char* state);
    void start_control_socket();
    void start_metrics();
    void pump_all();
    void configure_stage(const config& next);
    void start_devices();

    config cfg_;
    std::string config_path_;
    uv_loop_t loop_{};
    counters cnt_;
    std::unique_ptr<storage::buffer> buf_;
    router router_;
    std::unique_ptr<mailbox<event>> mb_;
    std::unique_ptr<work_pool> pool_;  // the data path's blocking jobs (gateway/work_pool.h)
    std::unique_ptr<ingest> ingest_;
    // The downlink (docs/devices.md): outlives the sinks, which may call into it.
    std::unique_ptr<devices::downlink_relay> relay_;
    std::map<int, std::unique_ptr<sink>> sinks_;  // by id; ids are never reused
    std::vector<std::unique_ptr<sink>> retired_;  // replaced on reload; Paho may still call
    std::unique_ptr<plugins::stage> stage_;
    std::unique_ptr<devices::service> devices_;  // registry and tasks (gateway/devices/)  // runs
                                                 // routes' `via` chains (plugins/host/stage.h)
    int next_sink_id_ = 1;

    uv_timer_t tick_{};
    uv_timer_t ack_timer_{};
    uv_check_t ack_check_{};
    uv_signal_t sigterm_{}, sigint_{}, sighup_{};
    std::unique_ptr<control_server> control_;
    std::unique_ptr<lag_probe> lag_;           // always on: status and /metrics show it
    std::unique_ptr<metrics_server> metrics_;  // when metrics.listen is set
    bool ack_job_running_ = false;
    bool maintenance_running_ = false;
    bool held_job_running_ = false;
    std::chrono::steady_clock::time_point last_held_try_{};
    bool stopping_ = false;
    std::chrono::steady_clock::time_point started_, last_rate_tick_, last_status_, last_maintain_;
    uint64_t watchdog_usec_ = 0;
    std::chrono::steady_clock::time_point last_watchdog_;
};

}  // namespace egw
