// SPDX-License-Identifier: Apache-2.0
#include "gateway/devices/scheduler.h"

#include <algorithm>
#include <array>

#include "gateway/devices/messages.h"

namespace egw::devices {

const char* to_string(verdict v) {
    switch (v) {
        case verdict::eligible:
            return "eligible";
        case verdict::offline:
            return "offline";
        case verdict::no_type:
            return "no device runs this task type";
        case verdict::version:
            return "no device runs this task version";
        case verdict::cores:
            return "not enough cores";
        case verdict::memory:
            return "not enough memory";
        case verdict::accelerator:
            return "missing accelerator";
        case verdict::label:
            return "labels do not match";
        case verdict::rtt:
            return "round trip above max_rtt_ms";
        case verdict::capacity:
            return "at max_concurrent";
        case verdict::excluded:
            return "failed this task before";
    }
    return "?";
}

verdict check(const device& d, const task_spec& spec, const std::set<std::string>& excluded) {
    const task_cap* tc = d.find_task(spec.type);
    if (!tc) return verdict::no_type;
    if (!version_satisfies(tc->version, spec.version)) return verdict::version;
    if (d.caps.cores < spec.req.min_cores) return verdict::cores;
    if (d.caps.memory_mb < spec.req.min_memory_mb) return verdict::memory;
    for (const auto& a : spec.req.accelerators) {
        if (std::find(d.caps.accelerators.begin(), d.caps.accelerators.end(), a) ==
            d.caps.accelerators.end()) {
            return verdict::accelerator;
        }
    }
    for (const auto& [k, v] : spec.req.labels) {
        auto it = d.labels.find(k);
        if (it == d.labels.end() || it->second != v) return verdict::label;
    }
    // Static checks come first so that "why not" names what no device could ever satisfy.
    if (!d.online) return verdict::offline;
    // An unknown round trip passes: answering pings is optional for devices.
    if (spec.req.max_rtt_ms && d.rtt.known && d.rtt.srtt_ms > *spec.req.max_rtt_ms) {
        return verdict::rtt;
    }
    if (excluded.count(d.id)) return verdict::excluded;
    if (tc->in_flight >= tc->max_concurrent) return verdict::capacity;
    return verdict::eligible;
}

double score(const device& d, const task_spec& spec, double failures, const score_options& o) {
    // fit: how much of the device the task asks for; a tight fit keeps big devices free for
    // big tasks. A device with accelerators the task does not need counts half.
    double fit = 0;
    {
        double c = d.caps.cores > 0 ? double(spec.req.min_cores) / d.caps.cores : 0;
        double m = d.caps.memory_mb > 0 ? double(spec.req.min_memory_mb) / d.caps.memory_mb : 0;
        fit = (std::min(c, 1.0) + std::min(m, 1.0)) / 2;
        if (d.caps.accelerators.size() > spec.req.accelerators.size()) fit *= 0.5;
    }
    // load: the share of the type's max_concurrent still free.
    double load = 0;
    if (const task_cap* tc = d.find_task(spec.type); tc && tc->max_concurrent > 0) {
        load = 1 - std::min(1.0, double(tc->in_flight) / tc->max_concurrent);
    }
    // link: ref / (ref + SRTT + 4 RTTVAR); an unknown round trip is neutral (scores as ref).
    double link = 0.5;
    if (d.rtt.known) link = o.rtt_ref_ms / (o.rtt_ref_ms + d.rtt.rto_ms());
    // health: 1 / (1 + decayed failures).
    double health = 1 / (1 + std::max(0.0, failures));
    double wsum = o.w_fit + o.w_load + o.w_link + o.w_health;
    if (wsum <= 0) return 0;
    return 100 * (o.w_fit * fit + o.w_load * load + o.w_link * link + o.w_health * health) / wsum;
}

scheduler::choice scheduler::pick(registry& reg, const task& t, time_ms now) {
    choice c;
    const auto& candidates = reg.by_type(t.spec.type);
    const size_t n = candidates.size();
    if (n == 0) return c;
    size_t& cursor = cursor_[t.spec.type];
    if (cursor >= n) cursor = 0;
    std::array<size_t, static_cast<size_t>(verdict::excluded) + 1> why{};
    size_t i = 0;
    for (; i < n && c.feasible < opts_.feasible_sample; ++i) {
        device* d = candidates[(cursor + i) % n];
        ++c.considered;
        verdict v = check(*d, t.spec, t.excluded);
        if (v != verdict::eligible) {
            ++why[static_cast<size_t>(v)];
            continue;
        }
        ++c.feasible;
        double s = score(*d, t.spec, reg.failures(*d, now), opts_.score);
        // Ties go to the device with less in flight, then to the smaller id: deterministic.
        if (!c.best || s > c.score ||
            (s == c.score && (d->in_flight < c.best->in_flight ||
                              (d->in_flight == c.best->in_flight && d->id < c.best->id)))) {
            c.best = d;
            c.score = s;
        }
    }
    // Continue next time after the last device looked at only when the search was cut short.
    cursor = i < n ? (cursor + i) % n : cursor;
    if (!c.best) {
        size_t top = 0;
        for (size_t k = 1; k < why.size(); ++k) {
            if (why[k] > why[top]) top = k;
        }
        c.why_not = static_cast<verdict>(top);
    }
    return c;
}

}  // namespace egw::devices
