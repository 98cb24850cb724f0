// SPDX-License-Identifier: Apache-2.0
#include "gateway/devices/engine.h"

#include <algorithm>
#include <cassert>

namespace egw::devices {

attempt* task::current() {
    if (attempts.empty() || attempts.back().ended_ms != 0) return nullptr;
    return &attempts.back();
}

const attempt* task::current() const {
    if (attempts.empty() || attempts.back().ended_ms != 0) return nullptr;
    return &attempts.back();
}

engine::engine(engine_options opts) : opts_(opts), reg_(opts.registry), sched_(opts.scheduler) {}

void engine::collect(effects& fx) {
    for (auto& id : reg_.take_dirty()) {
        if (std::find(fx.devices_changed.begin(), fx.devices_changed.end(), id) ==
            fx.devices_changed.end()) {
            fx.devices_changed.push_back(std::move(id));
        }
    }
}

void engine::publish(task& t, task_state s, std::string reason, bool final, time_ms now,
                     effects& fx) {
    assert(!t.final);
    t.state = s;
    t.reason = std::move(reason);
    t.final = final;
    t.updated_ms = now;
    ++t.seq;
    fx.states.push_back(task_state_message(t, now));
    if (std::find(fx.tasks_changed.begin(), fx.tasks_changed.end(), t.spec.id) ==
        fx.tasks_changed.end()) {
        fx.tasks_changed.push_back(t.spec.id);
    }
}

engine::submit_result engine::submit(std::string_view payload, time_ms now, effects& fx) {
    auto p = parse_submit(payload);
    if (!p) {
        ++counters_.invalid_submits;
        return {false, false, p.error};
    }
    return submit(std::move(*p.value), now, fx);
}

engine::submit_result engine::submit(task_spec spec, time_ms now, effects& fx) {
    if (auto it = tasks_.find(spec.id); it != tasks_.end()) {
        // Idempotent: the cloud may resend a submit (QoS 1, a retry of its own). Repeat the
        // current state with its existing seq so a sender that lost track learns where it is.
        ++counters_.duplicate_submits;
        fx.states.push_back(task_state_message(it->second, now));
        return {true, true, {}};
    }
    if (spec.max_attempts <= 0) spec.max_attempts = opts_.default_max_attempts;
    if (spec.attempt_timeout_ms <= 0) spec.attempt_timeout_ms = opts_.default_attempt_timeout_ms;
    if (spec.deadline_ms <= 0) spec.deadline_ms = opts_.default_deadline_ms;
    ++counters_.submitted;
    std::string id = spec.id;
    task& t = tasks_[id];
    t.spec = std::move(spec);
    t.submitted_ms = now;
    t.order = next_order_++;
    if (t.spec.deadline_ms > 0) {
        t.deadline_at_ms = now + t.spec.deadline_ms;
        timers_.emplace(t.deadline_at_ms, id);
    }
    // Every transition is published, queued included, so the cloud sees the task arrive.
    publish(t, task_state::queued, {}, false, now, fx);
    place(t, now, fx);
    collect(fx);
    return {true, false, {}};
}

bool engine::try_dispatch(task& t, time_ms now, effects& fx, std::string* why_not) {
    auto c = sched_.pick(reg_, t, now);
    if (!c.best) {
        if (why_not) *why_not = std::string("no eligible device: ") + to_string(c.why_not);
        return false;
    }
    device& d = *c.best;
    attempt a;
    a.n = static_cast<int>(t.attempts.size()) + 1;
    a.device = d.id;
    a.boot = d.boot;
    a.dispatched_ms = now;
    a.timeout_at_ms = now + t.spec.attempt_timeout_ms;
    a.state = task_state::dispatched;
    t.attempts.push_back(a);
    ++d.in_flight;
    if (task_cap* tc = d.find_task(t.spec.type)) ++tc->in_flight;
    active_by_device_[d.id].insert(t.spec.id);
    timers_.emplace(a.timeout_at_ms, t.spec.id);
    ++counters_.dispatched;
    if (a.n > 1) ++counters_.retried;
    queue_.erase(key(t));
    int64_t ttl = t.spec.attempt_timeout_ms;
    if (t.deadline_at_ms > 0) ttl = std::min<int64_t>(ttl, t.deadline_at_ms - now);
    device_command cmd;
    cmd.what = device_command::kind::task;
    cmd.device = d.id;
    cmd.task = t.spec.id;
    cmd.attempt = a.n;
    cmd.payload = task_message(t, t.attempts.back(), ttl).dump();
    cmd.ttl_ms = ttl;
    fx.to_devices.push_back(std::move(cmd));
    publish(t, task_state::dispatched, {}, false, now, fx);
    return true;
}

void engine::place(task& t, time_ms now, effects& fx) {
    if (t.deadline_at_ms > 0 && now >= t.deadline_at_ms) {
        expire(t, "deadline passed", now, fx);
        return;
    }
    std::string why;
    if (try_dispatch(t, now, fx, &why)) return;
    if (t.state != task_state::queued) {
        publish(t, task_state::queued, why, false, now, fx);
    } else if (t.reason != why) {
        t.reason = why;  // the reason reported when it expires; not a transition
        fx.tasks_changed.push_back(t.spec.id);
    }
    queue_.insert(key(t));
}

void engine::end_attempt(task& t, task_state outcome, const std::string& reason, bool charge,
                         time_ms now) {
    attempt* a = t.current();
    if (!a) return;
    a->ended_ms = now;
    a->state = outcome;
    a->reason = reason;
    auto act = active_by_device_.find(a->device);
    if (act != active_by_device_.end()) {
        act->second.erase(t.spec.id);
        if (act->second.empty()) active_by_device_.erase(act);
    }
    if (device* d = reg_.find(a->device)) {
        if (d->in_flight > 0) --d->in_flight;
        if (task_cap* tc = d->find_task(t.spec.type); tc && tc->in_flight > 0) --tc->in_flight;
        if (charge) reg_.charge_failure(*d, now);
    }
    if (charge) t.excluded.insert(a->device);
    capacity_freed_ = true;
}

void engine::attempt_failed(task& t, task_state outcome, const std::string& reason, bool retryable,
                            time_ms now, effects& fx) {
    int used = static_cast<int>(t.attempts.size());
    bool out_of_attempts = used >= t.spec.max_attempts;
    bool final = !retryable || out_of_attempts;
    std::string why = reason;
    if (retryable && out_of_attempts)
        why += "; max_attempts (" + std::to_string(used) + ") reached";
    publish(t, outcome, why, final, now, fx);
    if (!final) place(t, now, fx);
}

void engine::expire(task& t, const std::string& reason, time_ms now, effects& fx) {
    if (attempt* a = t.current()) {
        device_command cmd;
        cmd.what = device_command::kind::cancel;
        cmd.device = a->device;
        cmd.task = t.spec.id;
        cmd.attempt = a->n;
        cmd.payload = json{{"task", t.spec.id}, {"attempt", a->n}}.dump();
        fx.to_devices.push_back(std::move(cmd));
        end_attempt(t, task_state::expired, "deadline passed", false, now);
    }
    queue_.erase(key(t));
    ++counters_.expired;
    std::string why = reason;
    if (t.state == task_state::queued && !t.reason.empty())
        why += " while queued (" + t.reason + ")";
    publish(t, task_state::expired, why, true, now, fx);
}

engine::cancel_result engine::cancel(const std::string& id, time_ms now, effects& fx) {
    auto it = tasks_.find(id);
    if (it == tasks_.end()) return {false, "no such task"};
    task& t = it->second;
    if (t.final) return {false, std::string("task already ") + to_string(t.state)};
    if (attempt* a = t.current()) {
        device_command cmd;
        cmd.what = device_command::kind::cancel;
        cmd.device = a->device;
        cmd.task = t.spec.id;
        cmd.attempt = a->n;
        cmd.payload = json{{"task", t.spec.id}, {"attempt", a->n}}.dump();
        fx.to_devices.push_back(std::move(cmd));
        end_attempt(t, task_state::canceled, "canceled", false, now);
    }
    queue_.erase(key(t));
    ++counters_.canceled;
    publish(t, task_state::canceled, "canceled", true, now, fx);
    drain_queue(now, fx);
    collect(fx);
    return {true, {}};
}

void engine::lose_attempts(const std::string& device, const std::string* boot,
                           const std::string& reason, bool charge, time_ms now, effects& fx) {
    auto act = active_by_device_.find(device);
    if (act == active_by_device_.end()) return;
    std::vector<std::string> ids(act->second.begin(), act->second.end());
    for (const auto& id : ids) {
        task& t = tasks_.at(id);
        attempt* a = t.current();
        if (!a || a->device != device || (boot && a->boot != *boot)) continue;
        ++counters_.lost;
        end_attempt(t, task_state::failed, reason, charge, now);
        attempt_failed(t, task_state::failed, reason, true, now, fx);
    }
}

registry::register_result engine::on_register(const std::string& device, std::string_view payload,
                                              time_ms now, effects& fx) {
    auto r = reg_.on_register(device, payload, now);
    if (r.ok && r.new_boot) {
        lose_attempts(device, &r.old_boot, "device restarted (new boot)", true, now, fx);
    }
    if (r.ok) drain_queue(now, fx);
    collect(fx);
    return r;
}

registry::status_result engine::on_status(const std::string& device, std::string_view payload,
                                          time_ms now, effects& fx) {
    std::string old_boot;
    if (const auto* d = reg_.find(device)) old_boot = d->boot;
    bool new_boot = false;
    auto r = reg_.on_status(device, payload, now, &new_boot);
    if (r == registry::status_result::offline) {
        // The will of the boot that holds the attempts: they end now, not at their timeout.
        lose_attempts(device, &old_boot, "device offline (will)", true, now, fx);
    } else if (r == registry::status_result::online) {
        if (new_boot) {
            lose_attempts(device, &old_boot, "device restarted (new boot)", true, now, fx);
        }
        drain_queue(now, fx);
    }
    collect(fx);
    return r;
}

void engine::on_pong(const std::string& device, std::string_view nonce, time_ms now, effects& fx) {
    reg_.on_pong(device, nonce, now);
    collect(fx);
}

engine::report_result engine::on_report(const std::string& device, const std::string& task_id,
                                        std::string_view payload, time_ms now, effects& fx,
                                        std::string* error) {
    auto fail = [&](report_result r, uint64_t& counter, std::string why) {
        ++counter;
        if (error) *error = std::move(why);
        return r;
    };
    auto p = parse_device_report(payload);
    if (!p) return fail(report_result::invalid, counters_.invalid_reports, p.error);
    const device_report& rep = *p.value;
    if (rep.task != task_id) {
        return fail(report_result::invalid, counters_.invalid_reports,
                    "task: '" + rep.task + "' does not match the topic's '" + task_id + "'");
    }
    reg_.seen(device, now);
    auto it = tasks_.find(task_id);
    if (it == tasks_.end()) {
        return fail(report_result::unknown_task, counters_.unknown_task_reports, "no such task");
    }
    task& t = it->second;
    size_t n = static_cast<size_t>(rep.attempt);
    if (n == 0 || n > t.attempts.size() || t.attempts[n - 1].device != device) {
        return fail(report_result::not_given, counters_.not_given_reports,
                    "attempt " + std::to_string(rep.attempt) + " was not given to " + device);
    }
    attempt* a = t.current();
    if (t.final || !a || a->n != rep.attempt) {
        return fail(report_result::stale, counters_.stale_reports,
                    "attempt " + std::to_string(rep.attempt) + " is over");
    }
    if (!rep.progress.is_null()) t.progress = rep.progress;
    report_result result = report_result::applied;
    switch (rep.state) {
        case task_state::accepted:
            if (t.state == task_state::dispatched) {
                a->state = task_state::accepted;
                publish(t, task_state::accepted, {}, false, now, fx);
            } else {
                result = report_result::duplicate;
            }
            break;
        case task_state::running:
            if (t.state == task_state::dispatched || t.state == task_state::accepted) {
                a->state = task_state::running;
                publish(t, task_state::running, {}, false, now, fx);
            } else {
                result = report_result::duplicate;
                fx.tasks_changed.push_back(t.spec.id);  // progress
            }
            break;
        case task_state::succeeded:
            t.result = rep.result;
            end_attempt(t, task_state::succeeded, {}, false, now);
            ++counters_.succeeded;
            publish(t, task_state::succeeded, {}, true, now, fx);
            break;
        case task_state::failed: {
            std::string why = rep.error.empty() ? "failed on the device" : rep.error;
            ++counters_.failed;
            end_attempt(t, task_state::failed, why, true, now);
            attempt_failed(t, task_state::failed, why, rep.retryable, now, fx);
            break;
        }
        case task_state::rejected: {
            std::string why = rep.error.empty() ? "rejected by the device" : rep.error;
            ++counters_.rejected;
            end_attempt(t, task_state::rejected, why, true, now);
            attempt_failed(t, task_state::rejected, why, true, now, fx);
            break;
        }
        default:
            break;
    }
    drain_queue(now, fx);
    collect(fx);
    return result;
}

void engine::drain_queue(time_ms now, effects& fx) {
    if (queue_.empty()) {
        capacity_freed_ = false;
        return;
    }
    // Copy the keys: a dispatch erases from the queue.
    std::vector<queue_key> keys(queue_.begin(), queue_.end());
    for (const auto& k : keys) {
        auto it = tasks_.find(std::get<2>(k));
        if (it == tasks_.end() || it->second.final) {
            queue_.erase(k);
            continue;
        }
        place(it->second, now, fx);
    }
    capacity_freed_ = false;
}

void engine::tick(time_ms now, effects& fx) {
    while (!timers_.empty() && timers_.begin()->first <= now) {
        auto [when, id] = *timers_.begin();
        timers_.erase(timers_.begin());
        auto it = tasks_.find(id);
        if (it == tasks_.end() || it->second.final) continue;
        task& t = it->second;
        if (t.deadline_at_ms > 0 && when == t.deadline_at_ms && now >= t.deadline_at_ms) {
            expire(t, "deadline passed", now, fx);
            continue;
        }
        attempt* a = t.current();
        if (a && a->timeout_at_ms == when) {
            device_command cmd;
            cmd.what = device_command::kind::cancel;
            cmd.device = a->device;
            cmd.task = t.spec.id;
            cmd.attempt = a->n;
            cmd.payload = json{{"task", t.spec.id}, {"attempt", a->n}}.dump();
            fx.to_devices.push_back(std::move(cmd));
            ++counters_.timed_out;
            std::string why = "no result within attempt_timeout_ms (" +
                              std::to_string(t.spec.attempt_timeout_ms) + ")";
            end_attempt(t, task_state::timed_out, why, true, now);
            attempt_failed(t, task_state::timed_out, why, true, now, fx);
        }
    }
    if (reconcile_at_ != 0 && now >= reconcile_at_) {
        reconcile_at_ = 0;
        std::vector<std::pair<std::string, std::string>> lost;  // device, task
        for (const auto& [dev, ids] : active_by_device_) {
            const device* d = reg_.find(dev);
            for (const auto& id : ids) {
                const attempt* a = tasks_.at(id).current();
                if (!d || !d->online || (a && a->boot != d->boot)) lost.emplace_back(dev, id);
            }
        }
        for (const auto& [dev, id] : lost) {
            task& t = tasks_.at(id);
            if (!t.current()) continue;
            ++counters_.lost;
            std::string why = "device not online after the gateway restarted";
            end_attempt(t, task_state::failed, why, false, now);
            attempt_failed(t, task_state::failed, why, true, now, fx);
        }
    }
    for (auto& [dev, nonce] : reg_.due_pings(now)) {
        device_command cmd;
        cmd.what = device_command::kind::ping;
        cmd.device = dev;
        cmd.payload = nonce;
        fx.to_devices.push_back(std::move(cmd));
    }
    if (capacity_freed_) drain_queue(now, fx);
    collect(fx);
}

time_ms engine::next_wakeup() const {
    time_ms next = 0;
    auto consider = [&](time_ms t) {
        if (t > 0 && (next == 0 || t < next)) next = t;
    };
    if (!timers_.empty()) consider(timers_.begin()->first);
    consider(reg_.next_ping_ms());
    consider(reconcile_at_);
    return next;
}

void engine::restore_task(task t) {
    std::string id = t.spec.id;
    next_order_ = std::max(next_order_, t.order + 1);
    if (!t.final) {
        if (t.deadline_at_ms > 0) timers_.emplace(t.deadline_at_ms, id);
        if (attempt* a = t.current()) {
            timers_.emplace(a->timeout_at_ms, id);
            active_by_device_[a->device].insert(id);
            if (device* d = reg_.find(a->device)) {
                ++d->in_flight;
                if (task_cap* tc = d->find_task(t.spec.type)) ++tc->in_flight;
            }
        } else {
            queue_.insert(key(t));
        }
    }
    tasks_[id] = std::move(t);
}

void engine::restored(time_ms now) { reconcile_at_ = now + opts_.reconcile_grace_ms; }

const task* engine::find_task(const std::string& id) const {
    auto it = tasks_.find(id);
    return it == tasks_.end() ? nullptr : &it->second;
}

}  // namespace egw::devices
