// SPDX-License-Identifier: Apache-2.0
// The device registry: who exists, what it can do, whether it is online, when it was last
// heard from, and how long a round trip to it takes. Sans-I/O: the gateway feeds it the
// payloads of devices/{id}/register, /status and /pong with the time, and publishes what it
// reports as changed. Owned and called by one thread (the loop).
//
// Presence. A device is online from its register message or its retained
// {"state":"online","boot":B} status, and offline from {"state":"offline","boot":B} (its will).
// A status whose boot is not the device's current boot is stale and ignored, as Sparkplug B does
// with bdSeq: the will of a previous connection that the broker delivers after the device came
// back must not mark the live device offline.
//
// Round trip. The gateway pings each online device every ping_interval_ms with a fresh nonce on
// devices/{id}/ping; the echo on devices/{id}/pong gives a sample, smoothed as RFC 6298's
// SRTT/RTTVAR. Only the newest nonce counts (a late pong for an older one would measure the wrong
// send time). A device that never answers keeps an unknown round trip.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gateway/devices/messages.h"
#include "gateway/devices/model.h"

namespace egw::devices {

struct registry_options {
    int64_t ping_interval_ms = 10'000;
    // A failure counts half as much after this long (see docs/devices.md, the score).
    int64_t failure_half_life_ms = 300'000;
};

struct registry_counters {
    uint64_t registered = 0;
    uint64_t register_invalid = 0;
    uint64_t status_invalid = 0;
    uint64_t stale_wills = 0;  // offline status for a boot that is not the current one
    uint64_t unknown_status = 0;
    uint64_t pongs = 0;
    uint64_t pongs_unmatched = 0;
};

// The scheduler's index entry: the static facts of a device that the filter reads first, packed
// so that a search over thousands of devices streams through memory instead of chasing each
// device's heap nodes (see the benchmark in tests/bench/devices_bench.cc).
struct type_entry {
    device* d = nullptr;
    int cores = 0;
    int64_t memory_mb = 0;
    uint64_t accel_bits = 0;  // registry::accel_bit of each accelerator
    task_cap* cap = nullptr;  // the type in d->tasks (re-indexed whenever d->tasks changes)
    size_t n_accel = 0;       // accelerators listed
    uint64_t label_bits = 0;  // label_bit of each key=value label: a filter that only says "no"
};

// One of 64 bits for a key=value label (a hash). A task whose labels' bits are not all in a
// device's label_bits cannot match it; one whose bits are all there still needs the exact check.
uint64_t label_bit(const std::string& key, const std::string& value);

class registry {
public:
    explicit registry(registry_options opts = {}) : opts_(opts) {}

    struct register_result {
        bool ok = false;
        std::string error;      // validation error (the stored record is left as it was)
        bool new_boot = false;  // the device restarted: attempts of its previous boot are lost
        std::string old_boot;
    };
    register_result on_register(const std::string& id, std::string_view payload, time_ms now);

    enum class status_result { online, offline, stale, unchanged, unknown_device, invalid };
    // `new_boot` is set when an online status carries a boot other than the current one.
    status_result on_status(const std::string& id, std::string_view payload, time_ms now,
                            bool* new_boot = nullptr, std::string* error = nullptr);

    // Returns true when the nonce is the one outstanding for this device (a sample was taken).
    bool on_pong(const std::string& id, std::string_view nonce, time_ms now);
    // Any message from the device.
    void seen(const std::string& id, time_ms now);

    // Pings to send now: (device, nonce). Call after each tick; next_ping_ms() says when.
    std::vector<std::pair<std::string, std::string>> due_pings(time_ms now);
    time_ms next_ping_ms() const { return next_ping_; }

    // A failure charged to the device, and the decayed sum of its failures at `now`.
    void charge_failure(device& d, time_ms now);
    double failures(const device& d, time_ms now) const;

    device* find(const std::string& id);
    const device* find(const std::string& id) const;
    // Devices that list `type`, online or not, in registration order (the scheduler's index).
    const std::vector<type_entry>& by_type(const std::string& type) const;
    // The bits of these accelerator names; false if some name no device has ever listed.
    bool accel_mask(const std::vector<std::string>& names, uint64_t& mask) const;
    const std::unordered_map<std::string, std::unique_ptr<device>>& all() const { return devices_; }

    // A device read back from the store (start-up): offline until it says otherwise, because
    // its will may have been delivered while the gateway was down.
    void restore(device d);

    // Devices whose record changed since the last call (to persist and publish).
    std::vector<std::string> take_dirty();

    const registry_counters& counters() const { return counters_; }
    const registry_options& options() const { return opts_; }

private:
    void index(device& d);
    void unindex(device& d);
    void mark(const std::string& id);

    registry_options opts_;
    std::unordered_map<std::string, std::unique_ptr<device>> devices_;
    std::unordered_map<std::string, std::vector<type_entry>> by_type_;
    std::unordered_map<std::string, int> accel_bits_;  // name -> bit; past 63 all share bit 63
    struct ping_state {
        std::string nonce;
        time_ms sent_ms = 0;
        time_ms next_ms = 0;
    };
    std::unordered_map<std::string, ping_state> pings_;
    uint64_t nonce_counter_ = 0;
    time_ms next_ping_ = 0;
    std::vector<std::string> dirty_;
    registry_counters counters_;
};

}  // namespace egw::devices
