// SPDX-License-Identifier: Apache-2.0
// Picks the device for a task, as Kubernetes' scheduler framework does: a filter (is this device
// able to take the task at all?) and a score (how good a home is it?), both pure functions of a
// device, a task and the time, tested without I/O. pick() runs them over the devices that list
// the task's type. docs/devices.md states the score formula.
//
// Large fleets. Like kube-scheduler's percentageOfNodesToScore, pick() stops after finding
// `feasible_sample` eligible devices and scores only those, starting each search where the
// previous one for that type stopped, so that every device gets its turn. With fewer eligible
// devices than that (any fleet of a few dozen) the choice is the global best.
#pragma once

#include <cstddef>
#include <string>
#include <unordered_map>

#include "gateway/devices/model.h"
#include "gateway/devices/registry.h"

namespace egw::devices {

// Why a device cannot take a task; `eligible` when it can.
enum class verdict {
    eligible,
    offline,
    no_type,
    version,
    cores,
    memory,
    accelerator,
    label,
    rtt,
    capacity,
    excluded,
};
const char* to_string(verdict v);

struct score_options {
    // Weights of the four terms; the score is their weighted mean, times 100.
    double w_fit = 1, w_load = 2, w_link = 1, w_health = 2;
    // The round trip at which the link term is 0.5 (and what an unknown round trip scores).
    double rtt_ref_ms = 100;
};

struct scheduler_options {
    size_t feasible_sample = 100;
    score_options score;
};

// The filter; `excluded` holds the devices that already failed the task.
verdict check(const device& d, const task_spec& spec, const std::set<std::string>& excluded);

// The score in [0, 100]; `failures` is the device's decayed failure sum at now.
double score(const device& d, const task_spec& spec, double failures, const score_options& o);

class scheduler {
public:
    explicit scheduler(scheduler_options opts = {}) : opts_(opts) {}

    struct choice {
        device* best = nullptr;
        double score = 0;
        size_t considered = 0;  // devices listing the type that were checked
        size_t feasible = 0;
        verdict why_not = verdict::no_type;  // the most common verdict when nothing qualified
    };
    choice pick(registry& reg, const task& t, time_ms now);

    const scheduler_options& options() const { return opts_; }

private:
    scheduler_options opts_;
    std::unordered_map<std::string, size_t> cursor_;  // per type: where the last search stopped
};

}  // namespace egw::devices
