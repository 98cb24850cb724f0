// SPDX-License-Identifier: Apache-2.0
#include "plugins/host/stage.h"

#include <algorithm>

#include "edge-gateway/plugin.h"
#include "gateway/log.h"
#include "gateway/topic.h"
#include "plugins/host/runtimes.h"

namespace egw::plugins {
namespace {

using clock = std::chrono::steady_clock;

// Rows per batch, and so per transaction: large enough that the commit's fixed cost is spread
// thin, small enough that outputs follow their inputs within milliseconds.
constexpr size_t batch_rows = 512;
constexpr auto retry_delay = std::chrono::milliseconds(500);  // after a failed commit
constexpr auto sample_window = std::chrono::seconds(60);      // p50/p99 "over the last minute"
constexpr size_t max_samples = 20000;

int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string_view device_of(std::string_view topic) {
    constexpr std::string_view prefix = "devices/";
    if (topic.substr(0, prefix.size()) != prefix) return {};
    auto rest = topic.substr(prefix.size());
    return rest.substr(0, rest.find('/'));
}

// The row an output becomes: its content type and user properties travel with it to the sinks
// (storage/row_props.h). Plugins have no retain flag.
storage::stage_output output_row(output&& o, uint64_t sinks, int64_t ts) {
    storage::stage_output r{std::move(o.topic), std::move(o.payload), sinks, ts, {}};
    r.props.content_type = std::move(o.content_type);
    r.props.user_properties = std::move(o.properties);
    return r;
}

sink_limits feed_limits() {
    sink_limits l;
    l.window = size_t{1} << 30;  // "in flight" = processed, commit pending: bounded by batches
    l.batch = batch_rows;
    l.live_cap = 4 * batch_rows;
    return l;
}

}  // namespace

uint64_t config_hash(const nlohmann::json& config) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : config.dump()) {
        h ^= c;
        h *= 1099511628211ull;
    }
    // Stored as a signed SQLite integer; keep it positive so it reads back the same.
    return h >> 1;
}

struct stage::batch {
    std::vector<storage::stored_row> rows;
    std::vector<slot*> timers;
    std::vector<storage::dead_letter> replays;
    std::function<void(size_t, std::string)> replay_done;
    storage::stage_batch commit;
    bool heavy = false;
    bool processed = false;
    std::string error;
    size_t stored = 0;
};

stage::stage(work_pool& pool, storage::buffer& buf, storage::buffer::stored_fn post)
    : pool_(pool),
      buf_(buf),
      post_(std::move(post)),
      bit_(buf.sink_bit(stage_sink_name)),
      feed_(feed_limits()) {
    feed_.on_connected();
}

stage::~stage() = default;

void stage::configure(const std::vector<stage_instance_def>& instances,
                      const std::vector<stage_route>& routes) {
    if (busy_) {
        pending_ = std::make_unique<pending_config>(pending_config{instances, routes});
        return;
    }
    auto lg = log::get("plugin");
    std::map<std::string, std::unique_ptr<slot>> next;
    std::map<std::string, storage::plugin_state_row> saved;
    bool loaded_saved = false;
    for (const stage_instance_def& d : instances) {
        const uint64_t h = config_hash(d.config);
        if (auto it = slots_.find(d.name); it != slots_.end() && it->second->def.path == d.path &&
                                           it->second->def.isolation == d.isolation &&
                                           it->second->hash == h) {
            next.emplace(d.name, std::move(it->second));  // unchanged: keeps object and state
            continue;
        }
        auto s = std::make_unique<slot>();
        s->def = d;
        s->hash = h;
        s->stats = std::make_shared<instance_stats>();
        instance_spec spec{d.name, d.path, d.config, d.limits};
        s->inst = make_instance(spec, d.isolation);  // throws: nothing changed yet
        if (s->inst->stateful()) {
            if (!loaded_saved) {
                for (auto& r : buf_.plugin_states()) saved.emplace(r.instance, std::move(r));
                loaded_saved = true;
            }
            auto it = saved.find(d.name);
            if (it != saved.end() && it->second.plugin == d.path && it->second.config_hash == h) {
                call_result r = s->inst->restore(it->second.state);
                if (r.ok()) {
                    s->timer_ms = it->second.timer_ms;
                    lg->info("{}: restored its state ({} bytes)", d.name, it->second.state.size());
                } else {
                    // A fresh instance rather than one in a state it does not understand.
                    s->inst = make_instance(spec, d.isolation);
                    lg->warn("{}: restoring its state failed ({}), starting fresh", d.name,
                             r.reason);
                }
            } else if (it != saved.end()) {
                lg->info("{}: plugin or config changed since its state was saved, starting fresh",
                         d.name);
            }
        }
        lg->info("{}: instance of {} ({}{})", d.name, d.path, s->inst->heavy() ? "heavy" : "fast",
                 s->inst->stateful() ? ", stateful" : "");
        next.emplace(d.name, std::move(s));
    }
    slots_ = std::move(next);  // removed and replaced instances are destroyed here
    routes_ = routes;
}

void stage::apply_pending_config() {
    if (!pending_) return;
    auto p = std::move(pending_);
    try {
        configure(p->instances, p->routes);
    } catch (const std::exception& e) {
        log::get("plugin")->error("reload of plugin instances failed, keeping the running set: {}",
                                  e.what());
    }
}

void stage::on_live(const storage::stored_row& row) {
    if (!(row.sinks & (uint64_t{1} << bit_))) return;
    feed_.on_live(storage::stored_row(row));
}

void stage::pump() {
    if (busy_ || stopping_) return;
    if (failed_) {
        if (clock::now() < retry_at_) return;
        busy_ = true;
        auto b = std::move(failed_);
        auto* raw = b.release();
        pool_.submit(
            [this, raw] {
                try {
                    raw->error.clear();
                    raw->stored = buf_.commit_stage(raw->commit, post_);
                } catch (const std::exception& e) {
                    raw->error = e.what();
                }
            },
            [this, raw] {
                std::unique_ptr<batch> bb(raw);
                finish(*bb);
            });
        return;
    }
    if (!replays_.empty()) {
        auto [letters, done] = std::move(replays_.front());
        replays_.pop_front();
        start_batch({}, {}, std::move(letters), std::move(done));
        return;
    }
    std::vector<storage::stored_row> rows;
    while (rows.size() < batch_rows) {
        if (feed_.wants_read() && buf_.for_sink(bit_).rows.load() == 0) {
            // Nothing buffered for the stage: skip the read, which would scan every row of the
            // other sinks on the loop (a backlog of a million rows: a stall of about a second
            // at start-up). A row committed after the tally was read comes through on_live().
            feed_.on_read({}, feed_.read_after(), true);
        } else if (feed_.wants_read()) {
            std::vector<storage::stored_row> got;
            storage::buffer::read_result r;
            try {
                r = buf_.read(bit_, feed_.read_after(), batch_rows, feed_.read_budget(), got);
            } catch (const std::exception& e) {
                last_error_ = std::string("reading the buffer: ") + e.what();
                log::get("plugin")->error("stage: {}", last_error_);
                break;
            }
            feed_.on_read(std::move(got), r.vouched, r.complete);
        }
        const storage::stored_row* row = feed_.next();
        if (!row) break;
        rows.push_back(*row);
        feed_.sent();
    }
    std::vector<slot*> timers;
    const int64_t now = now_ms();
    for (auto& [name, s] : slots_) {
        if (s->timer_ms > 0 && s->timer_ms <= now) timers.push_back(s.get());
    }
    if (rows.empty() && timers.empty()) return;
    start_batch(std::move(rows), std::move(timers), {}, nullptr);
}

void stage::start_batch(std::vector<storage::stored_row> rows, std::vector<slot*> timers,
                        std::vector<storage::dead_letter> replays,
                        std::function<void(size_t, std::string)> replay_done) {
    auto b = std::make_unique<batch>();
    b->rows = std::move(rows);
    b->timers = std::move(timers);
    b->replays = std::move(replays);
    b->replay_done = std::move(replay_done);
    for (const auto& [name, s] : slots_) b->heavy = b->heavy || s->inst->heavy();
    busy_ = true;
    if (!b->heavy) process(*b);  // fast plugins run on the loop, as plugin.h promises
    auto* raw = b.release();
    pool_.submit(
        [this, raw] {
            try {
                if (!raw->processed) process(*raw);
                raw->stored = buf_.commit_stage(raw->commit, post_);
            } catch (const std::exception& e) {
                raw->error = e.what();
            }
        },
        [this, raw] {
            std::unique_ptr<batch> bb(raw);
            finish(*bb);
        });
}

uint64_t stage::sinks_for(const stage_route& r, const std::string& topic, int priority) const {
    uint64_t mask = r.sinks;
    for (const auto& [filter, sinks] : r.outputs) {
        if (topic_matches(filter, topic)) {
            mask = sinks;
            break;
        }
    }
    // A high-priority output goes to each sink's "!high" sibling, where it has one.
    const bool high = priority == EGW_PRIORITY_HIGH || (priority == EGW_PRIORITY_ROUTE && r.high);
    if (!high) return mask;
    for (const auto& [bit, sibling] : r.high_bits) {
        if (mask & (uint64_t{1} << bit))
            mask = (mask & ~(uint64_t{1} << bit)) | uint64_t{1} << sibling;
    }
    return mask;
}

void stage::record(slot& s, std::chrono::nanoseconds took, uint64_t outs) {
    std::lock_guard lock(stats_mu_);
    instance_stats& st = *s.stats;
    st.out += outs;
    const auto now = clock::now();
    st.samples.emplace_back(now,
                            static_cast<uint32_t>(std::min<int64_t>(took.count(), UINT32_MAX)));
    while (!st.samples.empty() &&
           (st.samples.size() > max_samples || now - st.samples.front().first > sample_window)) {
        st.samples.pop_front();
    }
}

bool stage::run_chain(batch& b, const stage_route& r, size_t from, std::vector<output>& msgs,
                      const storage::stored_row& input, int64_t ts) {
    for (size_t j = from; j < r.via.size(); ++j) {
        auto it = slots_.find(r.via[j]);
        if (it == slots_.end()) {
            // A reload whose instance could not be created kept the previous set: the message
            // waits in the dead letters for a fixed config rather than being dropped.
            storage::dead_letter d;
            d.ts_ms = now_ms();
            d.route = r.index;
            d.instance = r.via[j];
            d.kind = "missing";
            d.reason = "no instance named '" + r.via[j] + "' is running";
            d.seq = input.seq;
            d.msg_ts_ms = input.ts_ms;
            d.topic = input.topic;
            d.payload = input.payload;
            b.commit.dead.push_back(std::move(d));
            msgs.clear();
            return false;
        }
        slot& s = *it->second;
        std::vector<output> next;
        for (const output& m : msgs) {
            message_view v;
            v.topic = m.topic;
            v.payload = m.payload;
            v.ts_ms = ts;
            v.seq = input.seq;
            v.device_id = device_of(m.topic);
            v.content_type = m.content_type;
            const auto started = clock::now();
            call_result res = s.inst->on_message(v);
            // A transient failure (an isolated child that crashed and was restarted) may be
            // tried again, as often as the instance allows; the rest repeat for this input.
            for (unsigned attempts = 1; !res.ok() && s.inst->retry(res, attempts); ++attempts) {
                res = s.inst->on_message(v);
            }
            const auto took = clock::now() - started;
            {
                std::lock_guard lock(stats_mu_);
                s.stats->in += 1;
            }
            if (s.inst->stateful()) s.touched = true;
            if (res.timer_ms >= 0) {
                s.timer_ms = res.timer_ms;
                s.touched = s.touched || s.inst->stateful();
            }
            if (!res.ok()) {
                {
                    std::lock_guard lock(stats_mu_);
                    s.stats->errors[to_string(res.failure)] += 1;
                    s.stats->dead += 1;
                }
                if (error_log_.allow()) {
                    log::get("plugin")->warn("{}: {} on seq {} ({}): {}; dead-lettered", s.def.name,
                                             to_string(res.failure), input.seq, input.topic,
                                             res.reason);
                }
                storage::dead_letter d;
                d.ts_ms = now_ms();
                d.route = r.index;
                d.instance = s.def.name;
                d.kind = to_string(res.failure);
                d.reason = res.reason;
                d.seq = input.seq;
                d.msg_ts_ms = input.ts_ms;
                if (input.seq == 0) {
                    // A timer's output on its way down the chain has no input row to replay
                    // from: the letter is that output, replayed from this instance on (see
                    // process()), and its siblings go on.
                    d.topic = m.topic;
                    d.payload = m.payload;
                    b.commit.dead.push_back(std::move(d));
                    continue;
                }
                d.topic = input.topic;
                d.payload = input.payload;
                b.commit.dead.push_back(std::move(d));
                msgs.clear();
                return false;
            }
            record(s, std::chrono::duration_cast<std::chrono::nanoseconds>(took),
                   res.outputs.size());
            for (output& o : res.outputs) next.push_back(std::move(o));
        }
        msgs = std::move(next);
    }
    return true;
}

// A failed on_timer is handled like a failed message: counted by kind, logged (throttled) and
// dead-lettered. The letter has no input (seq 0, empty topic and payload); the instance's state,
// which is what the timer was about (a window to close), stays in the instance and in its
// snapshot, and replaying the letter fires the instance's timer again. A timer the hook had
// asked for again before failing stays armed.
void stage::timer_failed(batch& b, slot& s, const call_result& res, int64_t now) {
    {
        std::lock_guard lock(stats_mu_);
        s.stats->errors[to_string(res.failure)] += 1;
        s.stats->dead += 1;
    }
    if (error_log_.allow()) {
        log::get("plugin")->warn("{}: {} in on_timer: {}; dead-lettered", s.def.name,
                                 to_string(res.failure), res.reason);
    }
    storage::dead_letter d;
    d.ts_ms = now;
    d.route = -1;
    for (const stage_route& r : routes_) {
        if (std::find(r.via.begin(), r.via.end(), s.def.name) != r.via.end()) {
            d.route = r.index;
            break;
        }
    }
    d.instance = s.def.name;
    d.kind = to_string(res.failure);
    d.reason = "on_timer: " + res.reason;
    d.msg_ts_ms = now;
    b.commit.dead.push_back(std::move(d));
}

// Replays a letter with no input row (seq 0): a failed on_timer (empty topic) fires the
// instance's timer in the next batch; a timer's output that failed further down its chain
// continues from the instance that failed. Either way the letter is deleted with this batch.
void stage::replay_timer_letter(batch& b, const storage::dead_letter& dl) {
    b.commit.drop_dead.push_back(dl.id);
    auto it = slots_.find(dl.instance);
    if (it == slots_.end()) return;  // the instance is gone: nothing left to replay into
    slot& s = *it->second;
    const int64_t now = now_ms();
    if (dl.topic.empty()) {
        s.timer_ms = now;
        s.touched = s.touched || s.inst->stateful();
        return;
    }
    auto r = std::find_if(routes_.begin(), routes_.end(),
                          [&](const stage_route& x) { return x.index == dl.route; });
    if (r == routes_.end()) return;
    auto pos = std::find(r->via.begin(), r->via.end(), dl.instance);
    if (pos == r->via.end()) return;
    std::vector<output> msgs(1);
    msgs[0].topic = dl.topic;
    msgs[0].payload = dl.payload;
    storage::stored_row none{0, now, 0, {}, {}, {}};
    run_chain(b, *r, static_cast<size_t>(pos - r->via.begin()), msgs, none, now);
    for (output& o : msgs) {
        const uint64_t sinks = sinks_for(*r, o.topic, o.priority);
        b.commit.outputs.push_back(output_row(std::move(o), sinks, now));
    }
}

void stage::process(batch& b) {
    b.processed = true;
    for (const storage::stored_row& row : b.rows) {
        for (const stage_route& r : routes_) {
            if (!topic_matches(r.from, row.topic)) continue;
            std::vector<output> msgs(1);
            msgs[0].topic = row.topic;
            msgs[0].payload = row.payload;
            msgs[0].content_type = row.props.content_type;
            if (!run_chain(b, r, 0, msgs, row, row.ts_ms)) continue;
            for (output& o : msgs) {
                const uint64_t sinks = sinks_for(r, o.topic, o.priority);
                b.commit.outputs.push_back(output_row(std::move(o), sinks, row.ts_ms));
            }
        }
    }
    for (const storage::dead_letter& dl : b.replays) {
        if (dl.seq == 0) {
            replay_timer_letter(b, dl);
            continue;
        }
        storage::stored_row row{dl.seq, dl.msg_ts_ms, 0, dl.topic, dl.payload, {}};
        auto r = std::find_if(routes_.begin(), routes_.end(),
                              [&](const stage_route& x) { return x.index == dl.route; });
        if (r == routes_.end()) {
            r = std::find_if(routes_.begin(), routes_.end(),
                             [&](const stage_route& x) { return topic_matches(x.from, dl.topic); });
        }
        b.commit.drop_dead.push_back(dl.id);
        if (r == routes_.end()) continue;  // no via route takes it any more: just dropped
        std::vector<output> msgs(1);
        msgs[0].topic = row.topic;
        msgs[0].payload = row.payload;
        if (!run_chain(b, *r, 0, msgs, row, row.ts_ms)) continue;  // dead again, new letter
        for (output& o : msgs) {
            const uint64_t sinks = sinks_for(*r, o.topic, o.priority);
            b.commit.outputs.push_back(output_row(std::move(o), sinks, row.ts_ms));
        }
    }
    const int64_t now = now_ms();
    for (slot* s : b.timers) {
        s->timer_ms = 0;  // one shot; the hook asks again if it wants
        const auto started = clock::now();
        call_result res = s->inst->on_timer(now);
        for (unsigned attempts = 1; !res.ok() && s->inst->retry(res, attempts); ++attempts) {
            res = s->inst->on_timer(now);
        }
        const auto took = clock::now() - started;
        if (s->inst->stateful()) s->touched = true;
        if (res.timer_ms > 0) s->timer_ms = res.timer_ms;
        {
            std::lock_guard lock(stats_mu_);
            s->stats->timers += 1;
        }
        if (!res.ok()) {
            timer_failed(b, *s, res, now);
            continue;
        }
        record(*s, std::chrono::duration_cast<std::chrono::nanoseconds>(took), res.outputs.size());
        // A timer's outputs continue down every route the instance is in, after it.
        for (const stage_route& r : routes_) {
            auto pos = std::find(r.via.begin(), r.via.end(), s->def.name);
            if (pos == r.via.end()) continue;
            std::vector<output> msgs = res.outputs;
            storage::stored_row none{0, now, 0, {}, {}, {}};
            if (!run_chain(b, r, static_cast<size_t>(pos - r.via.begin()) + 1, msgs, none, now))
                continue;
            for (output& o : msgs) {
                const uint64_t sinks = sinks_for(r, o.topic, o.priority);
                b.commit.outputs.push_back(output_row(std::move(o), sinks, now));
            }
        }
    }
    for (auto& [name, s] : slots_) {
        if (!s->touched) continue;
        s->touched = false;
        storage::plugin_state_row st;
        st.instance = name;
        st.plugin = s->def.path;
        st.config_hash = s->hash;
        st.timer_ms = s->timer_ms;
        call_result res = s->inst->snapshot(st.state);
        if (!res.ok()) {
            // The previous snapshot stays; a restart then replays from it, which the plugin
            // had refused to describe: count it loudly.
            std::lock_guard lock(stats_mu_);
            s->stats->errors["snapshot"] += 1;
            if (error_log_.allow())
                log::get("plugin")->error("{}: snapshot failed: {}", name, res.reason);
            continue;
        }
        b.commit.states.push_back(std::move(st));
    }
    if (!b.rows.empty()) {
        b.commit.bit = bit_;
        b.commit.after = released_;
        b.commit.through = b.rows.back().seq;
    }
}

void stage::finish(batch& b) {
    busy_ = false;
    if (!b.error.empty()) {
        ++commit_errors_;
        last_error_ = b.error;
        log::get("plugin")->error("stage: committing a batch of {} row(s) failed, retrying: {}",
                                  b.rows.size(), b.error);
        retry_at_ = clock::now() + retry_delay;
        failed_ = std::make_unique<batch>(std::move(b));
        return;
    }
    ++batches_;
    rows_in_ += b.rows.size();
    outputs_ += b.stored;
    dead_ += b.commit.dead.size();
    if (b.commit.through > released_) released_ = b.commit.through;
    for (const storage::stored_row& r : b.rows) feed_.on_ack(r.seq);
    feed_.ack_commit_done(feed_.acked_through());
    if (b.replay_done) b.replay_done(b.replays.size(), {});
    apply_pending_config();
    if (!stopping_) pump();
}

void stage::replay(std::vector<storage::dead_letter> letters,
                   std::function<void(size_t, std::string)> done) {
    replays_.emplace_back(std::move(letters), std::move(done));
    pump();
}

nlohmann::json stage::status() const {
    using nlohmann::json;
    json instances = json::object();
    std::lock_guard lock(stats_mu_);
    for (const auto& [name, s] : slots_) {
        const instance_stats& st = *s->stats;
        std::vector<uint32_t> ns;
        ns.reserve(st.samples.size());
        const auto now = clock::now();
        for (const auto& [t, v] : st.samples) {
            if (now - t <= sample_window) ns.push_back(v);
        }
        json p50 = nullptr, p99 = nullptr;
        if (!ns.empty()) {
            std::sort(ns.begin(), ns.end());
            p50 = ns[ns.size() / 2] / 1000.0;
            p99 = ns[std::min(ns.size() - 1, ns.size() * 99 / 100)] / 1000.0;
        }
        json errors = json::object();
        for (const auto& [k, v] : st.errors) errors[k] = v;
        instances[name] = {{"plugin", s->def.plugin},
                           {"path", s->def.path},
                           {"isolation", s->def.isolation},
                           {"heavy", s->inst->heavy()},
                           {"stateful", s->inst->stateful()},
                           {"in", st.in},
                           {"out", st.out},
                           {"timers", st.timers},
                           {"errors", errors},
                           {"dead_letters", st.dead},
                           {"p50_us", p50},
                           {"p99_us", p99},
                           {"restarts", s->inst->restarts()},
                           {"timer_ms", s->timer_ms}};
    }
    return {{"instances", instances},
            {"stage",
             {{"rows_waiting", buf_.for_sink(bit_).rows.load()},
              {"batches", batches_},
              {"rows_in", rows_in_},
              {"outputs", outputs_},
              {"dead_letters", dead_},
              {"commit_errors", commit_errors_},
              {"released_through", released_},
              {"last_error", last_error_.empty() ? json(nullptr) : json(last_error_)}}}};
}

}  // namespace egw::plugins
