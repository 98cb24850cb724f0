// SPDX-License-Identifier: Apache-2.0
// The data of devices and tasks, shared by the registry, the scheduler and the task table.
// Plain values, no I/O, no threads: whoever owns a registry or task table owns these too
// (the gateway's loop thread).
//
// Time. Every time here is unix milliseconds passed in by the caller (`now_ms`), never read
// from a clock: deadlines survive a restart, and tests drive time explicitly.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace egw::devices {

using time_ms = int64_t;
using json = nlohmann::json;

// One task type a device runs, with its own concurrency limit.
struct task_cap {
    std::string type;
    std::string version;
    int max_concurrent = 1;
    int in_flight = 0;  // attempts of this type the device holds now (not persisted: derived)
};

struct capabilities {
    int cores = 0;
    std::string arch;
    int64_t memory_mb = 0;
    std::vector<std::string> accelerators;
    double benchmark = 0;
    int64_t bandwidth_kbps = 0;
};

// RFC 6298's smoothed round trip, in milliseconds. Unknown until the first sample.
struct rtt_estimate {
    bool known = false;
    double srtt_ms = 0;
    double rttvar_ms = 0;
    // RFC 6298 2.2 and 2.3 with alpha = 1/8, beta = 1/4 (RTTVAR updated first, from the old
    // SRTT, as the RFC orders it).
    void sample(double r_ms);
    // SRTT + 4 * RTTVAR: what RFC 6298 would wait before retransmitting, a pessimistic round trip.
    double rto_ms() const { return srtt_ms + 4 * rttvar_ms; }
};

struct device {
    std::string id;
    std::string boot;  // per-boot id from the last register / online status
    bool online = false;
    capabilities caps;
    std::vector<task_cap> tasks;
    std::map<std::string, std::string> labels;
    time_ms registered_ms = 0;
    time_ms last_seen_ms = 0;
    rtt_estimate rtt;
    int in_flight = 0;  // attempts of any type held now
    // Failures charged to this device (attempt failed, rejected, timed out, lost), kept as a
    // decaying sum: each failure adds 1, the sum halves every failure_half_life_ms.
    double failure_score = 0;
    time_ms failure_at_ms = 0;  // when failure_score was last brought up to date

    const task_cap* find_task(const std::string& type) const;
    task_cap* find_task(const std::string& type);
};

struct requirements {
    int min_cores = 0;
    int64_t min_memory_mb = 0;
    std::vector<std::string> accelerators;
    std::optional<double> max_rtt_ms;
    std::map<std::string, std::string> labels;
};

struct task_spec {
    std::string id;
    std::string type;
    std::string version;  // optional: a device qualifies with the same major and >= this
    json input;
    requirements req;
    int64_t deadline_ms = 0;         // from the submit; 0 = none
    int64_t attempt_timeout_ms = 0;  // from each dispatch; 0 = the table's default
    int max_attempts = 0;            // 0 = the table's default
    int priority = 0;                // higher goes first
};

enum class task_state {
    queued,
    dispatched,
    accepted,
    running,
    succeeded,
    failed,
    timed_out,
    rejected,
    canceled,
    expired,
};
const char* to_string(task_state s);
std::optional<task_state> task_state_from(std::string_view s);

struct attempt {
    int n = 0;  // 1-based
    std::string device;
    std::string boot;  // the device's boot when dispatched: a will for this boot ends it
    time_ms dispatched_ms = 0;
    time_ms timeout_at_ms = 0;
    time_ms ended_ms = 0;  // 0 while in flight
    task_state state = task_state::dispatched;
    std::string reason;
};

struct task {
    task_spec spec;
    task_state state = task_state::queued;
    bool final = false;  // no state follows (succeeded, canceled, expired, or out of attempts)
    uint64_t seq = 0;    // of the last state published
    time_ms submitted_ms = 0;
    time_ms deadline_at_ms = 0;  // 0 = none
    time_ms updated_ms = 0;
    std::string reason;
    json progress;
    json result;
    std::vector<attempt> attempts;
    std::set<std::string> excluded;  // devices that failed this task
    uint64_t order = 0;              // submit order, for FIFO within a priority

    attempt* current();  // the attempt in flight, if any
    const attempt* current() const;
};

}  // namespace egw::devices
