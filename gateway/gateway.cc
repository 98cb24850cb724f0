// SPDX-License-Identifier: Apache-2.0
#include "gateway/gateway.h"

#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>

#include "gateway/log.h"
#include "gateway/plugin_control.h"
#include "gateway/sinks/priority.h"
#include "gateway/version.h"
#include "plugins/host/runtimes.h"

namespace egw {
namespace {

using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr auto tick_period = milliseconds(50);         // reconnect timers, ack commits
constexpr auto maintain_period = milliseconds(250);    // totals snapshot, WAL checkpoint
constexpr auto stop_budget = milliseconds(1000);       // local session at shutdown
constexpr uint64_t ack_batch_rows = 2048;              // commit acks before the tick past this many
constexpr auto held_retry_period = milliseconds(200);  // paused ingest tries to store again

double seconds_since(clock::time_point t) {
    return std::chrono::duration<double>(clock::now() - t).count();
}

const char* policy_name(storage::when_full p) {
    switch (p) {
        case storage::when_full::drop_oldest:
            return "drop-oldest";
        case storage::when_full::drop_newest:
            return "drop-newest";
        case storage::when_full::block:
            return "block";
    }
    return "?";
}

// A unit of work for the pool; `run` is on a worker thread, `done` back on the loop.
struct job {
    static void start(work_pool* pool, std::function<void()> run, std::function<void()> done) {
        pool->submit(std::move(run), std::move(done));
    }
};

}  // namespace

namespace {

volatile std::sig_atomic_t stop_requested = 0;

// The buffer cannot be opened (disk full, read-only file system, wrong permissions): rather
// than exit and be restarted in a loop by systemd, wait here, saying why, without connecting
// to the local broker, which keeps the site's messages in the gateway's persistent session
// meanwhile. Returns nullptr if SIGTERM/SIGINT arrives first.
std::unique_ptr<storage::buffer> open_buffer_when_possible(const config& cfg) {
    auto lg = log::get("buffer");
    // These handlers stay until run() installs libuv's, which then checks stop_requested.
    auto on_stop = [](int) { stop_requested = 1; };
    std::signal(SIGTERM, on_stop);
    std::signal(SIGINT, on_stop);
    std::signal(SIGHUP, SIG_IGN);  // nothing to reload yet
    std::unique_ptr<storage::buffer> buf;
    for (int attempt = 1; !stop_requested; ++attempt) {
        std::error_code ec;
        std::filesystem::create_directories(cfg.data_dir, ec);
        std::string error = ec ? "data_dir " + cfg.data_dir + ": " + ec.message() : "";
        if (!ec) {
            try {
                buf = std::make_unique<storage::buffer>(cfg.buffer);
                break;
            } catch (const std::exception& e) {
                error = e.what();
            }
        }
        if (attempt == 1 || attempt % 12 == 0) {
            lg->error(
                "cannot open the buffer {}: {}; not consuming from the local broker, "
                "retrying every 5 s",
                cfg.buffer.path, error);
        }
        sd_notifyf(0, "READY=1\nSTATUS=waiting for storage: %s\nWATCHDOG=1", error.c_str());
        for (int i = 0; i < 50 && !stop_requested; ++i) ::usleep(100'000);
    }
    return buf;
}

}  // namespace

gateway::gateway(config cfg, std::string config_path)
    : cfg_(std::move(cfg)), config_path_(std::move(config_path)) {
    buf_ = open_buffer_when_possible(cfg_);
    if (!buf_) throw stopped_before_start();
    if (buf_->quarantined()) {
        log::get("buffer")->error("{} was corrupt: moved to {} and started with an empty buffer",
                                  cfg_.buffer.path, buf_->quarantined_path());
    }
    log::get("buffer")->info("{}: {} row(s), {} byte(s) waiting, last seq {}", cfg_.buffer.path,
                             buf_->total().rows.load(), buf_->total().bytes.load(),
                             buf_->last_seq());
    uv_loop_init(&loop_);
    mb_ = std::make_unique<mailbox<event>>(&loop_, [this](std::vector<event>& b) { on_events(b); });
    plugins::register_builtin_runtimes();
    pool_ = std::make_unique<work_pool>(&loop_);
    mailbox<event>* mb = mb_.get();
    stage_ = std::make_unique<plugins::stage>(*pool_, *buf_,
                                              [mb](uint64_t seq, const storage::incoming& row) {
                                                  mb->post(storage::to_stored_row(seq, row));
                                              });
    relay_ = std::make_unique<devices::downlink_relay>(
        &loop_, cfg_.gateway_id, *buf_, [mb](uint64_t seq, const storage::incoming& row) {
            mb->post(storage::to_stored_row(seq, row));
        });
    apply_sinks_and_routes(cfg_);
    ingest_ = std::make_unique<ingest>(cfg_.local, cfg_.buffer.commit, *buf_, router_, cnt_, *mb_);
    start_devices();
}

// Devices and tasks (docs/devices.md): states and registry records go to every mqtt sink
// through the buffer, under the sink's topic template (gateways/{gw}/tasks/..., .../devices/...).
void gateway::start_devices() {
    devices::service::options o;
    o.loop = &loop_;
    o.local = cfg_.local;
    o.db_path = cfg_.buffer.path;
    o.gateway_id = cfg_.gateway_id;
    o.buf = buf_.get();
    o.cloud_bits = [this] {
        uint64_t bits = 0;
        // Not a priority sibling ("NAME!high"): it is the same cloud over a second connection,
        // and each state would reach the cloud twice.
        for (auto& [id, s] : sinks_)
            if (s->as_mqtt() && !s->config().priority_sibling) bits |= uint64_t{1} << s->bit();
        return bits;
    };
    mailbox<event>* mb = mb_.get();
    o.on_stored = [mb](uint64_t seq, const storage::incoming& row) {
        mb->post(storage::to_stored_row(seq, row));
    };
    devices_ = std::make_unique<devices::service>(std::move(o));
    // The cloud's task commands, on the downlink connection: the same path as the CLI's.
    relay_->on_task = [this](const devices::downlink_relay::task_command& t) {
        if (stopping_ || !devices_) return;
        if (t.submit) {
            devices_->cloud_submit(t.payload);
        } else {
            devices_->cloud_cancel(t.payload);
        }
    };
}

gateway::~gateway() {
    // A stage batch still committing posts its outputs to the mailbox: let it finish first.
    while (stage_ && stage_->busy()) uv_run(&loop_, UV_RUN_ONCE);
    // Before what its jobs use goes: the jobs still queued run, their `done` does not.
    if (pool_) pool_->close();
    ingest_.reset();
    sinks_.clear();
    retired_.clear();
    mb_.reset();
    if (relay_) relay_->close();
    uv_run(&loop_, UV_RUN_DEFAULT);  // lets close callbacks free their handles
    devices_.reset();                // after its last store write came back
    stage_.reset();
    uv_loop_close(&loop_);
}

// The stage first: creating an instance is what can fail, and then nothing has changed yet.
// Sink bits are stable names in the buffer file, so asking for a new sink's bit here is the
// same bit it gets below.
void gateway::configure_stage(const config& next) {
    std::vector<plugins::stage_instance_def> defs;
    for (const auto& [name, ic] : next.plugins.instances) {
        plugins::stage_instance_def d;
        d.name = name;
        d.plugin = ic.plugin;
        d.path = plugins::resolve_plugin(ic.plugin, next.plugins.dirs);
        d.isolation = ic.isolation;
        d.config = ic.config;
        d.limits.max_output_bytes = next.local.max_payload_bytes;
        defs.push_back(std::move(d));
    }
    auto bits_of = [&](const std::vector<std::string>& names) {
        uint64_t mask = 0;
        for (const std::string& n : names) mask |= uint64_t{1} << buf_->sink_bit(n);
        return mask;
    };
    const auto high_bits = priority_bits(next.sinks, *buf_);
    std::vector<plugins::stage_route> routes;
    for (size_t i = 0; i < next.routes.size(); ++i) {
        const route& r = next.routes[i];
        if (r.via.empty()) continue;
        plugins::stage_route sr;
        sr.index = static_cast<int>(i);
        sr.from = r.from;
        sr.via = r.via;
        sr.sinks = bits_of(r.to);
        for (const route_output& o : r.outputs) sr.outputs.emplace_back(o.filter, bits_of(o.to));
        sr.high = r.high_priority;
        sr.high_bits = high_bits;
        routes.push_back(std::move(sr));
    }
    stage_->configure(defs, routes);
}

void gateway::apply_sinks_and_routes(const config& next) {
    auto lg = log::get("gateway");
    configure_stage(next);
    // Retire sinks that are gone or changed. A changed sink keeps its bit, so its replacement
    // picks up every row it had not delivered.
    for (auto it = sinks_.begin(); it != sinks_.end();) {
        const std::string& name = it->second->config().name;
        auto n = next.sinks.find(name);
        if (n != next.sinks.end() && n->second == it->second->config()) {
            ++it;
            continue;
        }
        sink& s = *it->second;
        lg->info("sink {} {}", name, n == next.sinks.end() ? "removed" : "changed");
        try {
            buf_->ack(s.bit(), s.ack_committed(), s.acked_through());
        } catch (const std::exception& e) {
            log::get("buffer")->error("committing acks of {}: {}", name, e.what());
        }
        s.stop(gateway_status("offline"), milliseconds(500));
        retired_.push_back(std::move(it->second));
        it = sinks_.erase(it);
    }
    std::map<std::string, int> bits;
    for (const auto& [id, s] : sinks_) bits[s->config().name] = s->bit();
    for (const auto& [name, sc] : next.sinks) {
        if (bits.count(name)) continue;
        int bit = buf_->sink_bit(name);
        bits[name] = bit;
        int id = next_sink_id_++;
        sinks_.emplace(id, make_sink({id, sc, next.gateway_id, bit, *buf_, cnt_, *mb_, &loop_}));
    }
    uint64_t in_use = 0;
    for (const auto& [name, bit] : bits) in_use |= uint64_t{1} << bit;
    const uint64_t stage_mask = uint64_t{1} << stage_->bit();
    if (stage_->active()) in_use |= stage_mask;
    buf_->set_sinks_in_use(in_use);  // before the table that uses new sinks, see buffer.h
    auto table = std::make_shared<route_table>();
    const auto high_bits = priority_bits(next.sinks, *buf_);
    for (const route& r : next.routes) {
        uint64_t mask = 0;
        for (const std::string& to : r.to) mask |= uint64_t{1} << bits.at(to);
        if (r.high_priority) mask = to_high(mask, high_bits);  // docs/plugins.md, "Priority"
        // A via route's rows go to the stage, which stores their outputs for `to`.
        table->add(r.from, r.via.empty() ? mask : stage_mask);
    }
    router_.set(std::move(table));
    release_unconfigured_sinks(next);
    relay_->configure(next, sinks_);  // the downlink rides on the sink it names
}

// Rows waiting for a sink that is no longer configured would never leave the buffer and
// would crowd out everything else; the operator removed the sink, so release them.
void gateway::release_unconfigured_sinks(const config& next) {
    for (const auto& [name, bit] : buf_->sink_bits()) {
        if (next.sinks.count(name) || buf_->for_sink(bit).rows.load() == 0) continue;
        if (name == plugins::stage_sink_name && stage_->active()) continue;
        const int64_t rows = buf_->for_sink(bit).rows.load();
        try {
            buf_->ack(bit, 0, buf_->last_seq());
            log::get("buffer")->warn("sink {} is no longer configured: released its {} row(s)",
                                     name, rows);
        } catch (const std::exception& e) {
            log::get("buffer")->error("releasing the rows of removed sink {}: {}", name, e.what());
        }
    }
}

int gateway::run() {
    started_ = last_rate_tick_ = last_maintain_ = last_watchdog_ = clock::now();
    last_status_ = clock::time_point{};
    start_control_socket();
    start_metrics();
    devices_->start();

    uv_timer_init(&loop_, &tick_);
    tick_.data = this;
    uv_timer_start(
        &tick_, [](uv_timer_t* t) { static_cast<gateway*>(t->data)->on_tick(); },
        tick_period.count(), tick_period.count());

    // Acknowledgements are queued quietly (see mqtt_sink::on_success) and collected here: one
    // wake-up per millisecond instead of one per message.
    // It runs only while publishes are in flight, so an idle gateway stays asleep.
    uv_timer_init(&loop_, &ack_timer_);
    ack_timer_.data = this;
    // After every turn of the loop: a batch sink's upload completes on a worker's callback, not
    // through the mailbox, and should not wait for the next tick to have its rows removed.
    uv_check_init(&loop_, &ack_check_);
    ack_check_.data = this;
    uv_check_start(&ack_check_, [](uv_check_t* c) {
        static_cast<gateway*>(c->data)->schedule_acks_if_piled_up();
    });

    std::signal(SIGPIPE, SIG_IGN);
    for (auto [sig, h] : {std::pair{SIGTERM, &sigterm_}, {SIGINT, &sigint_}, {SIGHUP, &sighup_}}) {
        uv_signal_init(&loop_, h);
        h->data = this;
        uv_signal_start(
            h,
            [](uv_signal_t* s, int signum) { static_cast<gateway*>(s->data)->on_signal(signum); },
            sig);
    }

    if (sd_watchdog_enabled(0, &watchdog_usec_) <= 0) watchdog_usec_ = 0;
    if (stop_requested) shutdown();  // SIGTERM arrived before the handlers above
    pump_all();
    log::get("gateway")->info("ready");
    sd_notify(0, "READY=1\nSTATUS=running");
    uv_run(&loop_, UV_RUN_DEFAULT);
    log::get("gateway")->info("stopped");
    return 0;
}

void gateway::pump_all() {
    if (stopping_) return;
    ingest_->pump();
    // Before the sinks pump: a sink that just connected reads the buffer in its pump().
    bool connected = false;
    for (auto& [id, s] : sinks_) connected = connected || s->wants_live();
    ingest_->set_live_wanted(connected || stage_->active());
    stage_->pump();
    apply_priority_holds(sinks_, *buf_);
    bool inflight = false;
    for (auto& [id, s] : sinks_) {
        s->pump();
        inflight = inflight || s->polls_acks();
    }
    const bool active = uv_is_active(reinterpret_cast<uv_handle_t*>(&ack_timer_));
    if (inflight && !active) {
        uv_timer_start(
            &ack_timer_, [](uv_timer_t* t) { static_cast<gateway*>(t->data)->mb_->drain(); }, 1, 1);
    } else if (!inflight && active) {
        uv_timer_stop(&ack_timer_);
    }
}

void gateway::on_events(std::vector<event>& batch) {
    for (event& e : batch) {
        if (auto* row = std::get_if<storage::stored_row>(&e)) {
            stage_->on_live(*row);
            size_t left = sinks_.size();
            for (auto& [id, s] : sinks_) s->on_live(*row, --left == 0);
        } else if (auto* se = std::get_if<sink_event>(&e)) {
            if (auto it = sinks_.find(se->sink_id); it != sinks_.end()) {
                it->second->handle(*se);
            } else {
                for (auto& r : retired_) {
                    if (r->id() == se->sink_id) r->handle(*se);  // closes a late connect
                }
            }
        } else if (auto* ie = std::get_if<ingest_event>(&e)) {
            ingest_->handle(*ie);
        }
    }
    pump_all();
}

// Acknowledged rows are removed every tick; sooner only when many have piled up, because each
// removal is a write transaction that ingest must wait for.
void gateway::schedule_acks_if_piled_up() {
    uint64_t backlog = 0;
    for (auto& [id, s] : sinks_) backlog += s->acked_through() - s->ack_committed();
    if (backlog >= ack_batch_rows) schedule_acks();
}

void gateway::on_tick() {
    const auto now = clock::now();
    pump_all();
    schedule_acks();
    if (ingest_->paused() && !held_job_running_ && now - last_held_try_ >= held_retry_period) {
        last_held_try_ = now;
        schedule_held_retry();
    }
    if (now - last_maintain_ >= maintain_period) {
        last_maintain_ = now;
        schedule_maintenance();
    }
    if (now - last_rate_tick_ >= std::chrono::seconds(1)) {
        double secs = seconds_since(last_rate_tick_);
        last_rate_tick_ = now;
        for (auto& [id, s] : sinks_) s->tick(secs);
    }
    if (now - last_status_ >= milliseconds(cfg_.status_interval_ms)) {
        last_status_ = now;
        std::string st = gateway_status("online");
        for (auto& [id, s] : sinks_) s->publish_status(st);
    }
    if (watchdog_usec_ && now - last_watchdog_ >= std::chrono::microseconds(watchdog_usec_ / 2)) {
        last_watchdog_ = now;
        sd_notify(0, "WATCHDOG=1");
    }
}

void gateway::schedule_acks() {
    if (ack_job_running_ || stopping_) return;
    struct range {
        int sink_id, bit;
        uint64_t after, through;
    };
    auto ranges = std::make_shared<std::vector<range>>();
    for (auto& [id, s] : sinks_) {
        if (s->acked_through() > s->ack_committed()) {
            ranges->push_back({id, s->bit(), s->ack_committed(), s->acked_through()});
        }
    }
    if (ranges->empty()) return;
    ack_job_running_ = true;
    auto error = std::make_shared<std::string>();
    storage::buffer* buf = buf_.get();
    job::start(
        pool_.get(),
        [ranges, buf, error] {
            try {
                for (const range& r : *ranges) buf->ack(r.bit, r.after, r.through);
            } catch (const std::exception& e) {
                *error = e.what();
            }
        },
        [this, ranges, error] {
            ack_job_running_ = false;
            if (!error->empty()) {
                // The rows stay and are acknowledged again with the next batch.
                cnt_.errors_buffer.fetch_add(1, std::memory_order_relaxed);
                log::get("buffer")->error("removing acknowledged rows failed: {}", *error);
                return;
            }
            for (const range& r : *ranges) {
                if (auto it = sinks_.find(r.sink_id); it != sinks_.end()) {
                    it->second->ack_commit_done(r.through);
                }
            }
        });
}

void gateway::schedule_held_retry() {
    held_job_running_ = true;
    auto stored = std::make_shared<bool>(false);
    ingest* in = ingest_.get();
    job::start(
        pool_.get(), [in, stored] { *stored = in->store_held(); },
        [this, stored] {
            held_job_running_ = false;
            // Hysteresis: resume only with a tenth of the buffer free, or a full buffer under
            // when_full=block would reconnect and pause again for every acknowledged batch.
            const auto used = static_cast<uint64_t>(buf_->total().bytes.load());
            if (*stored && ingest_ && !stopping_ && used <= cfg_.buffer.max_bytes / 10 * 9) {
                ingest_->resume();
                pump_all();
            }
        });
}

void gateway::schedule_maintenance() {
    if (maintenance_running_) return;
    maintenance_running_ = true;
    auto error = std::make_shared<std::string>();
    storage::buffer* buf = buf_.get();
    auto held = std::make_shared<milliseconds>(0);
    job::start(
        pool_.get(),
        [buf, error, held] {
            try {
                *held = std::chrono::duration_cast<milliseconds>(buf->maintain());
            } catch (const std::exception& e) {
                *error = e.what();
            }
        },
        [this, error, held] {
            maintenance_running_ = false;
            if (!error->empty()) {
                cnt_.errors_buffer.fetch_add(1, std::memory_order_relaxed);
                log::get("buffer")->warn("maintenance: {}", *error);
            }
            if (*held >= milliseconds(50)) {
                log::get("buffer")->warn(
                    "WAL checkpoint held ingest for {} ms (its fsync; slow or busy disk?)",
                    held->count());
            }
        });
}

void gateway::on_signal(int signum) {
    if (signum == SIGHUP) {
        reload();
    } else {
        shutdown();
    }
}

void gateway::reload() {
    if (stopping_) return;
    sd_notify(0, "RELOADING=1");
    auto lg = log::get("gateway");
    try {
        config next = load_config(config_path_);
        if (next.local.uri != cfg_.local.uri || next.local.client_id != cfg_.local.client_id ||
            next.data_dir != cfg_.data_dir || next.gateway_id != cfg_.gateway_id ||
            next.metrics_listen != cfg_.metrics_listen) {
            lg->warn(
                "reload: changes to gateway_id, data_dir, local and metrics take effect at "
                "restart");
        }
        if (!log::set_level(next.log_level))
            lg->warn("reload: unknown log_level {}", next.log_level);
        apply_sinks_and_routes(next);
        for (auto& [id, s] : sinks_) s->on_reload();
        cfg_.routes = next.routes;
        cfg_.downlink = next.downlink;
        cfg_.sinks = next.sinks;
        cfg_.plugins = next.plugins;
        cfg_.status_interval_ms = next.status_interval_ms;
        cfg_.log_level = next.log_level;
        lg->info("reloaded {}: {} route(s), {} sink(s)", config_path_, cfg_.routes.size(),
                 cfg_.sinks.size());
    } catch (const config_error& e) {
        lg->error("reload refused, keeping the running configuration: {}", e.what());
    } catch (const std::exception& e) {
        lg->error("reload failed, keeping the running configuration: {}", e.what());
    }
    sd_notify(0, "READY=1");
    pump_all();
}

void gateway::shutdown() {
    if (stopping_) return;
    stopping_ = true;
    stage_->stop();
    sd_notify(0, "STOPPING=1");
    auto lg = log::get("gateway");
    lg->info("stopping");
    // Order: stop taking messages (a blocked append gives up), let the cloud know, then make
    // every acknowledgement durable so a restart resends as little as possible.
    if (devices_) devices_->stop();
    ingest_->stop(stop_budget);
    if (ingest_->held() > 0 && !ingest_->store_held()) {
        lg->error("{} message(s) held for lack of space are lost at shutdown", ingest_->held());
    }
    // One budget for all sinks together, so that SIGTERM ends within 5 s whatever their number.
    const std::string offline = gateway_status("offline");
    const auto each = std::max<milliseconds>(
        milliseconds(200),
        milliseconds(2500) / static_cast<int64_t>(std::max<size_t>(1, sinks_.size())));
    for (auto& [id, s] : sinks_) s->stop(offline, each);
    mb_->drain();
    for (auto& [id, s] : sinks_) {
        try {
            buf_->ack(s->bit(), s->ack_committed(), s->acked_through());
        } catch (const std::exception& e) {
            lg->error("committing acks of {}: {}", s->config().name, e.what());
        }
    }
    ingest_.reset();
    sinks_.clear();
    retired_.clear();
    relay_->close();
    mb_->close();
    for (uv_timer_t* t : {&tick_, &ack_timer_}) {
        uv_timer_stop(t);
        uv_close(reinterpret_cast<uv_handle_t*>(t), nullptr);
    }
    uv_check_stop(&ack_check_);
    uv_close(reinterpret_cast<uv_handle_t*>(&ack_check_), nullptr);
    for (uv_signal_t* h : {&sigterm_, &sigint_, &sighup_}) {
        uv_close(reinterpret_cast<uv_handle_t*>(h), nullptr);
    }
    if (metrics_) metrics_->close();
    if (lag_) lag_->close();
    if (control_) control_->stop();
}

// The retained status topic carries what `status --json` and /metrics show (plus the state and
// the short keys it had before), so the cloud sees the same figures as a local operator.
std::string gateway::gateway_status(const char* state) {
    nlohmann::json j = status_json();
    j["state"] = state;
    j["buffer_rows"] = buf_->total().rows.load();
    j["received"] = cnt_.received.load();
    j["acked"] = cnt_.acked.load();
    return j.dump();
}

void gateway::start_metrics() {
    lag_ = std::make_unique<lag_probe>(&loop_);
    if (cfg_.metrics_listen.empty()) return;
    try {
        metrics_ = std::make_unique<metrics_server>(
            &loop_, cfg_.metrics_listen, [this] { return status_json(); }, &lag_->histogram());
        log::get("metrics")->info("serving http://{}/metrics", cfg_.metrics_listen);
    } catch (const std::exception& e) {
        // Not fatal: the data path does not depend on metrics.
        log::get("metrics")->error("{}; no /metrics", e.what());
    }
}

nlohmann::json gateway::status_json() {
    using nlohmann::json;
    json sinks = json::object();
    double oldest_age_s = 0;
    for (auto& [id, s] : sinks_) {
        json st = s->status();
        oldest_age_s = std::max(oldest_age_s, st.value("oldest_age_s", 0.0));
        sinks[s->config().name] = std::move(st);
    }
    const lag_histogram& lag = lag_ ? lag_->histogram() : lag_histogram{};
    const auto& b = cfg_.buffer;
    return {
        {"gateway_id", cfg_.gateway_id},
        {"version", version},
        {"pid", ::getpid()},
        {"uptime_s", seconds_since(started_)},
        {"local", ingest_->status()},
        {"counters",
         {{"received", cnt_.received.load()},
          {"buffered", cnt_.buffered.load()},
          {"sent", cnt_.sent.load()},
          {"acked", cnt_.acked.load()},
          {"rejected", cnt_.rejected.load()},
          {"slow_writes", cnt_.slow_writes.load()},
          {"dropped",
           {{"no_route", cnt_.dropped_no_route.load()},
            {"too_large", cnt_.dropped_too_large.load()},
            {"buffer_full", cnt_.dropped_buffer_full.load()},
            {"disk_full", cnt_.dropped_disk_full.load()}}},
          {"errors",
           {{"buffer", cnt_.errors_buffer.load()},
            {"publish", cnt_.errors_publish.load()},
            {"disk_full", cnt_.errors_disk_full.load()}}}}},
        {"buffer",
         {{"path", b.path},
          {"rows", buf_->total().rows.load()},
          {"bytes", buf_->total().bytes.load()},
          {"oldest_age_s", oldest_age_s},
          {"max_bytes", b.max_bytes},
          {"when_full", policy_name(b.policy)},
          {"synchronous", b.sync == storage::sync_mode::full ? "full" : "normal"},
          {"commit", b.commit == storage::commit_mode::group ? "group" : "each"},
          {"last_seq", buf_->last_seq()},
          {"degraded", buf_->quarantined()},
          {"quarantined", buf_->quarantined() ? json(buf_->quarantined_path()) : json(nullptr)}}},
        {"loop",
         {{"lag_max_s", lag.max},
          {"lag_mean_s", lag.count ? lag.sum / static_cast<double>(lag.count) : 0.0}}},
        {"sinks", sinks},
        {"plugins", stage_->status()},
        {"devices", devices_ ? devices_->status() : nlohmann::json()},
        {"downlink", relay_->status()}};
}

void gateway::start_control_socket() {
    control_ = std::make_unique<control_server>(&loop_);
    control_->on_sync("status", [this](const nlohmann::json&) { return status_json(); });
    register_plugin_commands(*control_, &loop_, *buf_, *stage_);
    control_->on_sync("devices",
                      [this](const nlohmann::json&) { return devices_->devices_json(); });
    control_->on_sync("tasks", [this](const nlohmann::json& r) { return devices_->tasks_json(r); });
    control_->on_sync("task_submit", [this](const nlohmann::json& r) {
        return devices_->submit(r.value("payload", ""));
    });
    control_->on_sync("task_cancel", [this](const nlohmann::json& r) {
        return devices_->cancel(r.value("id", ""));
    });
    const std::string path = cfg_.data_dir + "/control.sock";
    if (int rc = control_->start(path); rc != 0) {
        log::get("gateway")->error("control socket {}: {}; `edge-gateway status` will not work",
                                   path, uv_strerror(rc));
    }
}

}  // namespace egw
