// SPDX-License-Identifier: Apache-2.0
#include "gateway/devices/scheduler.h"

#include <algorithm>
#include <array>
#include <cassert>

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

namespace {

bool labels_match(const device& d, const task_spec& spec) {
    for (const auto& [k, v] : spec.req.labels) {
        auto it = d.labels.find(k);
        if (it == d.labels.end() || it->second != v) return false;
    }
    return true;
}

}  // namespace

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
    if (!labels_match(d, spec)) return verdict::label;
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

namespace {

constexpr size_t prefetch_ahead = 8;

// score() over facts the caller may have at hand already (pick() has them in its index).
double score_with(const device& d, int cores, int64_t memory_mb, size_t n_accel, const task_cap* tc,
                  const task_spec& spec, double failures, const score_options& o) {
    // fit: how much of the device the task asks for; a tight fit keeps big devices free for
    // big tasks. A device with accelerators the task does not need counts half.
    double fit = 0;
    {
        double c = cores > 0 ? double(spec.req.min_cores) / cores : 0;
        double m = memory_mb > 0 ? double(spec.req.min_memory_mb) / memory_mb : 0;
        fit = (std::min(c, 1.0) + std::min(m, 1.0)) / 2;
        if (n_accel > spec.req.accelerators.size()) fit *= 0.5;
    }
    // load: the share of the type's max_concurrent still free.
    double load = 0;
    if (tc && tc->max_concurrent > 0) {
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

}  // namespace

double score(const device& d, const task_spec& spec, double failures, const score_options& o) {
    return score_with(d, d.caps.cores, d.caps.memory_mb, d.caps.accelerators.size(),
                      d.find_task(spec.type), spec, failures, o);
}

scheduler::choice scheduler::pick(registry& reg, const task& t, time_ms now) {
    choice c;
    const auto& candidates = reg.by_type(t.spec.type);
    const size_t n = candidates.size();
    if (n == 0) return c;
    std::array<size_t, static_cast<size_t>(verdict::excluded) + 1> why{};
    uint64_t need_accel = 0;
    if (!reg.accel_mask(t.spec.req.accelerators, need_accel)) {
        c.why_not = verdict::accelerator;  // no device has ever listed one of them
        return c;
    }
    uint64_t need_labels = 0;
    for (const auto& [k, v] : t.spec.req.labels) need_labels |= label_bit(k, v);
    size_t& cursor = cursor_[t.spec.type];
    if (cursor >= n) cursor = 0;
    const int min_cores = t.spec.req.min_cores;
    const int64_t min_mem = t.spec.req.min_memory_mb;
    // The packed prefilter: the verdicts check() would give from the index entry alone, without
    // touching the device. The label bits only ever say a sure "no".
    auto prefilter = [&](const type_entry& e) {
        if (e.cores < min_cores) return verdict::cores;
        if (e.memory_mb < min_mem) return verdict::memory;
        if ((e.accel_bits & need_accel) != need_accel) return verdict::accelerator;
        if ((e.label_bits & need_labels) != need_labels) return verdict::label;
        return verdict::eligible;
    };
    size_t best_pos = 0;
    size_t i = 0;
    for (; i < n && c.feasible < opts_.feasible_sample; ++i) {
        size_t k = cursor + i;
        const type_entry& e = candidates[k < n ? k : k - n];
        // A device that passes the prefilter costs two cache misses (the device and its task
        // entry): start loading those of one a few entries ahead, so that the misses overlap.
        if (i + prefetch_ahead < n) {
            size_t f = k + prefetch_ahead;
            const type_entry& ahead = candidates[f < n ? f : f - n];
            if (prefilter(ahead) == verdict::eligible) {
                __builtin_prefetch(ahead.d);
                __builtin_prefetch(ahead.cap);
            }
        }
        ++c.considered;
        if (verdict v = prefilter(e); v != verdict::eligible) {
            // check() finds a version mismatch before a label one.
            if (v == verdict::label && !t.spec.version.empty() &&
                !version_satisfies(e.cap->version, t.spec.version)) {
                v = verdict::version;
            }
            ++why[static_cast<size_t>(v)];
            continue;
        }
        device* d = e.d;
        // The rest of check(), in its order, reading the device once.
        verdict v = verdict::eligible;
        const task_cap* tc = e.cap;
        if (!t.spec.version.empty() && !version_satisfies(tc->version, t.spec.version)) {
            v = verdict::version;
        } else if (!t.spec.req.labels.empty() && !labels_match(*d, t.spec)) {
            v = verdict::label;
        } else if (!d->online) {
            v = verdict::offline;
        } else if (t.spec.req.max_rtt_ms && d->rtt.known &&
                   d->rtt.srtt_ms > *t.spec.req.max_rtt_ms) {
            v = verdict::rtt;
        } else if (!t.excluded.empty() && t.excluded.count(d->id)) {
            v = verdict::excluded;
        } else if (tc->in_flight >= tc->max_concurrent) {
            v = verdict::capacity;
        }
        assert(v == check(*d, t.spec, t.excluded));
        if (v != verdict::eligible) {
            ++why[static_cast<size_t>(v)];
            continue;
        }
        ++c.feasible;
        double s = score_with(*d, e.cores, e.memory_mb, e.n_accel, tc, t.spec,
                              reg.failures(*d, now), opts_.score);
        // Ties go to the device with less in flight, then to the one registered first (the
        // index order): deterministic without comparing ids.
        if (!c.best || s > c.score || (s == c.score && d->in_flight < c.best->in_flight) ||
            (s == c.score && d->in_flight == c.best->in_flight && k % n < best_pos)) {
            c.best = d;
            c.score = s;
            best_pos = k % n;
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
