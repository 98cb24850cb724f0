// SPDX-License-Identifier: Apache-2.0
#include "gateway/devices/registry.h"

#include <algorithm>
#include <cmath>

namespace egw::devices {

void rtt_estimate::sample(double r_ms) {
    if (r_ms < 0) r_ms = 0;
    if (!known) {
        srtt_ms = r_ms;
        rttvar_ms = r_ms / 2;
        known = true;
        return;
    }
    constexpr double alpha = 1.0 / 8, beta = 1.0 / 4;
    rttvar_ms = (1 - beta) * rttvar_ms + beta * std::abs(srtt_ms - r_ms);
    srtt_ms = (1 - alpha) * srtt_ms + alpha * r_ms;
}

const task_cap* device::find_task(const std::string& type) const {
    for (const auto& t : tasks) {
        if (t.type == type) return &t;
    }
    return nullptr;
}

task_cap* device::find_task(const std::string& type) {
    for (auto& t : tasks) {
        if (t.type == type) return &t;
    }
    return nullptr;
}

void registry::mark(const std::string& id) {
    if (std::find(dirty_.begin(), dirty_.end(), id) == dirty_.end()) dirty_.push_back(id);
}

std::vector<std::string> registry::take_dirty() {
    std::vector<std::string> out;
    out.swap(dirty_);
    return out;
}

uint64_t label_bit(const std::string& key, const std::string& value) {
    // FNV-1a over key, a separator and value: "a=bc" and "ab=c" land on different bits.
    uint64_t h = 14695981039346656037ull;
    auto mix = [&h](unsigned char c) { h = (h ^ c) * 1099511628211ull; };
    for (unsigned char c : key) mix(c);
    mix(0);
    for (unsigned char c : value) mix(c);
    return uint64_t{1} << (h >> 58);
}

void registry::index(device& d) {
    type_entry e{&d, d.caps.cores, d.caps.memory_mb, 0, nullptr, d.caps.accelerators.size()};
    for (const auto& [k, v] : d.labels) e.label_bits |= label_bit(k, v);
    for (const auto& a : d.caps.accelerators) {
        auto [it, fresh] = accel_bits_.emplace(a, static_cast<int>(accel_bits_.size()));
        e.accel_bits |= uint64_t{1} << std::min(it->second, 63);
    }
    for (size_t i = 0; i < d.tasks.size(); ++i) {
        e.cap = &d.tasks[i];
        by_type_[d.tasks[i].type].push_back(e);
    }
}

void registry::unindex(device& d) {
    for (const auto& t : d.tasks) {
        auto& v = by_type_[t.type];
        v.erase(std::remove_if(v.begin(), v.end(), [&](const type_entry& e) { return e.d == &d; }),
                v.end());
    }
}

bool registry::accel_mask(const std::vector<std::string>& names, uint64_t& mask) const {
    mask = 0;
    for (const auto& n : names) {
        auto it = accel_bits_.find(n);
        if (it == accel_bits_.end()) return false;
        // Names past the 63rd share bit 63: the prefilter lets them through and check() decides.
        mask |= uint64_t{1} << std::min(it->second, 63);
    }
    return true;
}

registry::register_result registry::on_register(const std::string& id, std::string_view payload,
                                                time_ms now) {
    register_result r;
    auto p = parse_register(payload);
    if (!p) {
        ++counters_.register_invalid;
        r.error = p.error;
        return r;
    }
    registration& reg = *p.value;
    auto& slot = devices_[id];
    if (!slot) {
        slot = std::make_unique<device>();
        slot->id = id;
    }
    device& d = *slot;
    unindex(d);
    // Carry the counts of attempts in flight over to the new task list: the task table ends
    // the attempts of a previous boot itself and decrements them then.
    for (auto& t : reg.tasks) {
        if (const task_cap* old = d.find_task(t.type)) t.in_flight = old->in_flight;
    }
    r.ok = true;
    r.new_boot = !d.boot.empty() && d.boot != reg.boot;
    r.old_boot = d.boot;
    d.boot = std::move(reg.boot);
    d.caps = std::move(reg.caps);
    d.tasks = std::move(reg.tasks);
    d.labels = std::move(reg.labels);
    d.online = true;
    d.registered_ms = now;
    d.last_seen_ms = now;
    index(d);
    auto& ps = pings_[id];
    ps.nonce.clear();
    ps.next_ms = now;  // measure a new device (or a new boot) at once
    next_ping_ = std::min(next_ping_ == 0 ? now : next_ping_, now);
    ++counters_.registered;
    mark(id);
    return r;
}

registry::status_result registry::on_status(const std::string& id, std::string_view payload,
                                            time_ms now, bool* new_boot, std::string* error) {
    if (new_boot) *new_boot = false;
    auto p = parse_status(payload);
    if (!p) {
        ++counters_.status_invalid;
        if (error) *error = p.error;
        return status_result::invalid;
    }
    device* d = find(id);
    if (!d) {
        ++counters_.unknown_status;
        return status_result::unknown_device;
    }
    const status_msg& s = *p.value;
    if (!s.online) {
        if (s.boot != d->boot) {
            ++counters_.stale_wills;
            return status_result::stale;
        }
        if (!d->online) return status_result::unchanged;
        d->online = false;
        mark(id);
        return status_result::offline;
    }
    d->last_seen_ms = now;
    if (s.boot != d->boot) {
        // Online with a boot we have not seen registered: the device restarted and its register
        // may follow. Take the new boot now so the old boot's will is recognised as stale.
        if (new_boot) *new_boot = true;
        d->boot = s.boot;
        d->online = true;
        mark(id);
        return status_result::online;
    }
    if (d->online) return status_result::unchanged;
    d->online = true;
    mark(id);
    return status_result::online;
}

bool registry::on_pong(const std::string& id, std::string_view nonce, time_ms now) {
    device* d = find(id);
    auto it = pings_.find(id);
    if (!d || it == pings_.end() || it->second.nonce.empty() || it->second.nonce != nonce) {
        ++counters_.pongs_unmatched;
        return false;
    }
    d->rtt.sample(static_cast<double>(now - it->second.sent_ms));
    d->last_seen_ms = now;
    it->second.nonce.clear();
    ++counters_.pongs;
    mark(id);
    return true;
}

void registry::seen(const std::string& id, time_ms now) {
    if (device* d = find(id)) d->last_seen_ms = std::max(d->last_seen_ms, now);
}

std::vector<std::pair<std::string, std::string>> registry::due_pings(time_ms now) {
    std::vector<std::pair<std::string, std::string>> out;
    time_ms next = 0;
    for (auto& [id, ps] : pings_) {
        device* d = find(id);
        if (!d || !d->online) continue;
        if (ps.next_ms <= now) {
            ps.nonce = "p" + std::to_string(++nonce_counter_);
            ps.sent_ms = now;
            ps.next_ms = now + opts_.ping_interval_ms;
            out.emplace_back(id, ps.nonce);
        }
        if (next == 0 || ps.next_ms < next) next = ps.next_ms;
    }
    next_ping_ = next;
    return out;
}

void registry::charge_failure(device& d, time_ms now) {
    d.failure_score = failures(d, now) + 1;
    d.failure_at_ms = now;
    mark(d.id);
}

double registry::failures(const device& d, time_ms now) const {
    if (d.failure_score <= 0) return 0;
    double age = static_cast<double>(std::max<time_ms>(0, now - d.failure_at_ms));
    return d.failure_score * std::exp2(-age / static_cast<double>(opts_.failure_half_life_ms));
}

device* registry::find(const std::string& id) {
    auto it = devices_.find(id);
    return it == devices_.end() ? nullptr : it->second.get();
}

const device* registry::find(const std::string& id) const {
    auto it = devices_.find(id);
    return it == devices_.end() ? nullptr : it->second.get();
}

const std::vector<type_entry>& registry::by_type(const std::string& type) const {
    static const std::vector<type_entry> none;
    auto it = by_type_.find(type);
    return it == by_type_.end() ? none : it->second;
}

void registry::restore(device d) {
    auto& slot = devices_[d.id];
    if (slot) unindex(*slot);
    d.online = false;
    d.in_flight = 0;
    for (auto& t : d.tasks) t.in_flight = 0;
    std::string id = d.id;
    slot = std::make_unique<device>(std::move(d));
    index(*slot);
    pings_[id];
}

}  // namespace egw::devices
