// SPDX-License-Identifier: Apache-2.0
// The task table and its state machine, over the registry and the scheduler: everything the
// gateway decides about devices and tasks, with no I/O. The daemon's adapter feeds it events
// (a message from a device, a submit or cancel, a tick of the clock) with the time, then carries
// out the `effects` it returns: messages to devices, task states and registry records for the
// cloud, rows to persist. One thread (the loop) owns an engine; nothing in it blocks.
//
// A task's life (docs/devices.md has the diagram and every rule):
//   queued -> dispatched -> accepted -> running -> succeeded
// and an attempt that ends badly (rejected, failed with retryable, timed out, its device's will,
// its device restarted) moves the task to another eligible device, the failed one excluded,
// until max_attempts or the deadline; a task no device can take stays queued until its
// deadline, then expired. Every transition gets the next `seq` of its task and is published,
// queued included. Nothing follows succeeded, canceled or expired (nor an attempt outcome that
// exhausted max_attempts or was not retryable: those carry final = true).
//
// Fencing. A device's report names the task and attempt; only the current attempt, held by that
// device, moves the task. A report from a device that was never given that attempt is refused
// (counted as not_given); one for an attempt already over is ignored (counted as stale).
#pragma once

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "gateway/devices/messages.h"
#include "gateway/devices/model.h"
#include "gateway/devices/registry.h"
#include "gateway/devices/scheduler.h"

namespace egw::devices {

struct engine_options {
    int64_t default_attempt_timeout_ms = 30'000;
    int default_max_attempts = 3;
    int64_t default_deadline_ms = 0;  // 0 = none
    // After a restart, attempts in flight are kept; those whose device has not shown up online
    // (with the attempt's boot) within this long are ended and retried.
    int64_t reconcile_grace_ms = 5'000;
    registry_options registry;
    scheduler_options scheduler;
};

struct device_command {
    enum class kind { task, cancel, ping };
    kind what = kind::task;
    std::string device;
    std::string task;
    int attempt = 0;
    std::string payload;  // JSON (ping: the nonce)
    int64_t ttl_ms = 0;   // task: MQTT 5 Message Expiry
};

// What an event asks the adapter to do, in order.
struct effects {
    std::vector<device_command> to_devices;
    std::vector<json> states;                  // gateways/{gw}/tasks/{task}/state, in order
    std::vector<std::string> tasks_changed;    // ids to persist
    std::vector<std::string> devices_changed;  // ids to persist and publish as records
    void clear() {
        to_devices.clear();
        states.clear();
        tasks_changed.clear();
        devices_changed.clear();
    }
    bool empty() const {
        return to_devices.empty() && states.empty() && tasks_changed.empty() &&
               devices_changed.empty();
    }
};

struct task_counters {
    uint64_t submitted = 0;
    uint64_t duplicate_submits = 0;
    uint64_t invalid_submits = 0;
    uint64_t dispatched = 0;  // attempts started
    uint64_t retried = 0;     // attempts after the first
    uint64_t succeeded = 0;
    uint64_t failed = 0;
    uint64_t timed_out = 0;
    uint64_t rejected = 0;
    uint64_t lost = 0;  // attempts ended by a will, a device restart or reconciliation
    uint64_t canceled = 0;
    uint64_t expired = 0;
    uint64_t invalid_reports = 0;
    uint64_t unknown_task_reports = 0;
    uint64_t not_given_reports = 0;  // a device reporting on a task (attempt) it was not given
    uint64_t stale_reports = 0;      // a report for an attempt already over
};

class engine {
public:
    explicit engine(engine_options opts = {});

    struct submit_result {
        bool ok = false;
        bool duplicate = false;
        std::string error;
    };
    submit_result submit(std::string_view payload, time_ms now, effects& fx);
    submit_result submit(task_spec spec, time_ms now, effects& fx);

    struct cancel_result {
        bool ok = false;
        std::string error;
    };
    cancel_result cancel(const std::string& id, time_ms now, effects& fx);

    // devices/{id}/register; a failed validation leaves the record as it was.
    registry::register_result on_register(const std::string& device, std::string_view payload,
                                          time_ms now, effects& fx);
    registry::status_result on_status(const std::string& device, std::string_view payload,
                                      time_ms now, effects& fx);
    void on_pong(const std::string& device, std::string_view nonce, time_ms now, effects& fx);

    enum class report_result { applied, duplicate, invalid, unknown_task, not_given, stale };
    // devices/{device}/tasks/{task}/state. `error` names what was wrong when not applied.
    report_result on_report(const std::string& device, const std::string& task,
                            std::string_view payload, time_ms now, effects& fx,
                            std::string* error = nullptr);

    // Timeouts, deadlines, pings and post-restart reconciliation due at `now`.
    void tick(time_ms now, effects& fx);
    // When tick() has something to do next (0 = nothing scheduled).
    time_ms next_wakeup() const;

    // Start-up: restore every device, then every task, then call restored().
    void restore_device(device d) { reg_.restore(std::move(d)); }
    void restore_task(task t);
    void restored(time_ms now);

    const task* find_task(const std::string& id) const;
    const std::unordered_map<std::string, task>& tasks() const { return tasks_; }
    registry& devices() { return reg_; }
    const registry& devices() const { return reg_; }
    scheduler& sched() { return sched_; }
    const task_counters& counters() const { return counters_; }
    size_t queued() const { return queue_.size(); }

private:
    using queue_key = std::tuple<int, uint64_t, std::string>;  // -priority, order, id
    queue_key key(const task& t) const { return {-t.spec.priority, t.order, t.spec.id}; }

    void publish(task& t, task_state s, std::string reason, bool final, time_ms now, effects& fx);
    // Dispatches the task if a device qualifies; otherwise queues it (publishing `queued`
    // unless it already is). Expires it if its deadline has passed.
    void place(task& t, time_ms now, effects& fx);
    bool try_dispatch(task& t, time_ms now, effects& fx, std::string* why_not);
    // Ends the current attempt; `charge` counts it against the device and excludes it.
    void end_attempt(task& t, task_state outcome, const std::string& reason, bool charge,
                     time_ms now);
    // An attempt ended badly: publish its outcome and retry if attempts and time allow.
    void attempt_failed(task& t, task_state outcome, const std::string& reason, bool retryable,
                        time_ms now, effects& fx);
    void expire(task& t, const std::string& reason, time_ms now, effects& fx);
    // Every attempt held by `device` (optionally only those of boot `boot`) is lost.
    void lose_attempts(const std::string& device, const std::string* boot,
                       const std::string& reason, bool charge, time_ms now, effects& fx);
    void drain_queue(time_ms now, effects& fx);
    void collect(effects& fx);

    engine_options opts_;
    registry reg_;
    scheduler sched_;
    std::unordered_map<std::string, task> tasks_;
    std::set<queue_key> queue_;
    // Attempt timeouts and deadlines: (when, task id). Entries left over from an attempt that
    // ended are recognised and skipped when they come due.
    std::multimap<time_ms, std::string> timers_;
    std::unordered_map<std::string, std::set<std::string>> active_by_device_;
    uint64_t next_order_ = 1;
    time_ms reconcile_at_ = 0;
    bool capacity_freed_ = false;
    task_counters counters_;
};

}  // namespace egw::devices
