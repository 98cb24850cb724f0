// SPDX-License-Identifier: Apache-2.0
#include "gateway/ingest.h"

#include <algorithm>
#include <chrono>
#include <iterator>

#include "gateway/paho.h"

namespace egw {
namespace {

int64_t unix_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// Group commit: at most this many messages per transaction, and at most this many queued before
// Paho's thread waits for the writer (a bound on memory, and on what a crash can lose).
constexpr size_t group_batch = 512;
constexpr size_t group_queue_max = 4096;

// A write that holds ingest this long is worth a log line: a commit normally takes tens of
// microseconds, and while it lasts no message from the local broker is received.
constexpr auto slow_write_threshold = std::chrono::milliseconds(50);

sink_limits reconnect_policy() {
    sink_limits l;
    l.backoff_initial = std::chrono::milliseconds(250);
    l.backoff_max = std::chrono::milliseconds(10000);
    return l;
}

}  // namespace

ingest::ingest(local_config cfg, storage::commit_mode commit, storage::buffer& buf, router& routes,
               counters& cnt, mailbox<event>& mb)
    : cfg_(std::move(cfg)),
      buf_(buf),
      routes_(routes),
      cnt_(cnt),
      mb_(mb),
      post_([this](uint64_t seq, const storage::incoming& row) { post_live(seq, row); }),
      log_(log::get("ingest")),
      conn_(reconnect_policy()),
      group_(commit == storage::commit_mode::group) {
    subscribe_listener_.self = this;
    cli_ = std::make_unique<mqtt::async_client>(cfg_.uri, cfg_.client_id, nullptr);
    cli_->set_callback(*this);
    // Last: nothing after it may throw, or the joinable thread would end the process.
    if (group_) writer_ = std::thread([this] { write_queued(); });
}

ingest::~ingest() {
    stop_writer();
    try {
        if (cli_ && cli_->is_connected())
            cli_->disconnect(0)->wait_for(std::chrono::milliseconds(500));
    } catch (...) {
        // Shutting down: the connection goes with the process.
    }
}

void ingest::connect() {
    mqtt::connect_options opts;
    // A persistent session lets the local broker hold QoS 1/2 messages while the gateway
    // restarts; the broker needs max_queued_messages 0 (unlimited) for that to be lossless.
    opts.set_clean_session(cfg_.clean_session);
    opts.set_keep_alive_interval(cfg_.keepalive_s);
    opts.set_connect_timeout(connect_timeout);
    if (!cfg_.username.empty()) opts.set_user_name(cfg_.username);
    if (!cfg_.password.empty()) opts.set_password(cfg_.password);
    if (cfg_.tls) opts.set_ssl(ssl_options_for(*cfg_.tls));
    conn_.connecting();
    try {
        cli_->connect(opts, nullptr, *this);
    } catch (const mqtt::exception& e) {
        last_error_ = e.what();
        conn_.on_disconnected(sink_machine::clock::now());
    }
}

void ingest::subscribe() {
    auto filters = std::make_shared<mqtt::string_collection>();
    std::vector<int> qos;
    for (const auto& s : cfg_.subscribe) {
        filters->push_back(s.filter);
        qos.push_back(s.qos);
    }
    try {
        cli_->subscribe(filters, qos, nullptr, subscribe_listener_);
    } catch (const mqtt::exception& e) {
        mb_.post(ingest_event{ingest_event::subscribe_failed, e.what()});
    }
}

void ingest::on_success(const mqtt::token&) { mb_.post(ingest_event{ingest_event::connected, {}}); }

void ingest::on_failure(const mqtt::token& tok) {
    mb_.post(ingest_event{ingest_event::connect_failed, describe(tok)});
}

void ingest::subscribe_listener::on_success(const mqtt::token&) {
    self->mb_.post(ingest_event{ingest_event::subscribed, {}});
}

void ingest::subscribe_listener::on_failure(const mqtt::token& tok) {
    self->mb_.post(ingest_event{ingest_event::subscribe_failed, describe(tok)});
}

void ingest::connection_lost(const std::string& cause) {
    mb_.post(ingest_event{ingest_event::lost, cause.empty() ? "connection lost" : cause});
}

void ingest::message_arrived(mqtt::const_message_ptr msg) {
    // Called by C code (Paho's receive thread): nothing may escape.
    try {
        cnt_.received.fetch_add(1, std::memory_order_relaxed);
        const std::string& topic = msg->get_topic();
        const mqtt::binary_ref& payload = msg->get_payload_ref();
        const size_t size = payload ? payload.size() : 0;
        std::string_view body = size ? std::string_view(payload.data(), size) : std::string_view();
        const auto& lg = log_;
        if (size > cfg_.max_payload_bytes) {
            cnt_.dropped_too_large.fetch_add(1, std::memory_order_relaxed);
            if (too_large_log_.allow()) {
                lg->warn(
                    "dropped a {} byte message on {}: larger than local.max_payload_bytes ({}); "
                    "{} so far",
                    size, topic, cfg_.max_payload_bytes, too_large_log_.count());
            }
            return;
        }
        uint64_t sinks = routes_.get()->match(topic);
        if (!sinks) {
            cnt_.dropped_no_route.fetch_add(1, std::memory_order_relaxed);
            if (no_route_log_.allow()) lg->debug("no route for {}", topic);
            return;
        }
        const int64_t ts = unix_ms();
        if (group_) {
            queue(topic, body, sinks, ts);
            return;
        }
        {
            std::lock_guard lock(held_mu_);
            if (holding_) {
                // Behind a held message: keep the order, hold this one too.
                held_.push_back({std::string(topic), std::string(body), sinks, ts});
                return;
            }
        }
        const auto started = std::chrono::steady_clock::now();
        auto r = buf_.append(topic, body, sinks, ts, post_);
        timed(started, 1);
        if (!counted(r, topic)) {
            // The local broker already has its PUBACK, so the message stays in memory; the
            // loop pauses the local session and stores it once there is room.
            std::lock_guard lock(held_mu_);
            held_.push_back({std::string(topic), std::string(body), sinks, ts});
            holding_ = true;
            mb_.post(ingest_event{ingest_event::pause, r.status == storage::append_status::full
                                                           ? "buffer full (when_full block)"
                                                           : r.error});
        }
    } catch (const std::exception& e) {
        cnt_.errors_buffer.fetch_add(1, std::memory_order_relaxed);
        if (error_log_.allow()) log::get("ingest")->error("message handling failed: {}", e.what());
    } catch (...) {
        cnt_.errors_buffer.fetch_add(1, std::memory_order_relaxed);
    }
}

// Counts and logs the outcome of an append. False when the message must be held and retried:
// the buffer is full under when_full=block, the disk is full, or SQLite failed.
bool ingest::counted(const storage::append_result& r, std::string_view topic) {
    const auto& lg = log_;
    switch (r.status) {
        case storage::append_status::stored:
            cnt_.buffered.fetch_add(1, std::memory_order_relaxed);
            if (r.evicted) {
                cnt_.dropped_buffer_full.fetch_add(r.evicted, std::memory_order_relaxed);
                if (full_log_.allow()) {
                    lg->warn("buffer full: dropped the {} oldest row(s)", r.evicted);
                }
            }
            return true;
        case storage::append_status::dropped_full:
            cnt_.dropped_buffer_full.fetch_add(1, std::memory_order_relaxed);
            if (full_log_.allow()) lg->warn("buffer full: dropped a new message on {}", topic);
            return true;
        case storage::append_status::too_large:
            cnt_.dropped_too_large.fetch_add(1, std::memory_order_relaxed);
            if (too_large_log_.allow()) {
                lg->warn("dropped a message on {}: larger than buffer.max_bytes", topic);
            }
            return true;
        case storage::append_status::no_sink:
            cnt_.dropped_no_route.fetch_add(1, std::memory_order_relaxed);
            return true;
        case storage::append_status::full:
            return false;
        case storage::append_status::disk_full:
            cnt_.errors_disk_full.fetch_add(1, std::memory_order_relaxed);
            return false;
        case storage::append_status::failed:
            cnt_.errors_buffer.fetch_add(1, std::memory_order_relaxed);
            if (error_log_.allow()) lg->error("buffer write failed: {}", r.error);
            return false;
    }
    return false;
}

void ingest::timed(std::chrono::steady_clock::time_point started, size_t rows) {
    using namespace std::chrono;
    const auto took = steady_clock::now() - started;
    if (took < slow_write_threshold) return;
    cnt_.slow_writes.fetch_add(1, std::memory_order_relaxed);
    if (slow_log_.allow()) {
        log_->warn(
            "writing {} row(s) to the buffer held ingest for {} ms (slow or busy disk?); {} "
            "slow write(s) so far",
            rows, duration_cast<milliseconds>(took).count(), slow_log_.count());
    }
}

// Right after a commit (ingest or writer thread, buffer's write lock held). While no sink is
// connected nobody takes live rows, so an outage costs no copy and no loop wake-up per message.
// Why skipping is safe: a sink reads the buffer only after set_live_wanted(true), and the
// fences make sure that either that read sees this commit or this load sees the flag.
void ingest::post_live(uint64_t seq, const storage::incoming& row) {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (!live_wanted_.load(std::memory_order_relaxed)) return;
    mb_.post(storage::to_stored_row(seq, row));
}

void ingest::set_live_wanted(bool wanted) {
    live_wanted_.store(wanted, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
}

// Group commit, Paho's thread: hands the message to the writer. Waits only while the queue is
// at its bound and the writer is storing (never while storing fails: then the sinks'
// acknowledgements, which this thread carries, are what frees space).
void ingest::queue(std::string_view topic, std::string_view body, uint64_t sinks, int64_t ts) {
    std::unique_lock lock(held_mu_);
    room_cv_.wait(lock, [&] { return held_.size() < group_queue_max || holding_ || stop_writer_; });
    held_.push_back({std::string(topic), std::string(body), sinks, ts});
    if (held_.size() == 1) queued_cv_.notify_one();
}

void ingest::write_queued() {
    for (;;) {
        {
            std::unique_lock lock(held_mu_);
            queued_cv_.wait(lock, [&] { return stop_writer_ || (!held_.empty() && !holding_); });
            if (stop_writer_) return;
        }
        try {
            store_held();  // on failure it holds and pauses; the loop retries every 200 ms
        } catch (const std::exception& e) {
            // Not SQLite (append_batch reports those): out of memory and the like.
            cnt_.errors_buffer.fetch_add(1, std::memory_order_relaxed);
            if (error_log_.allow()) log_->error("group commit failed: {}", e.what());
        }
    }
}

void ingest::stop_writer() {
    if (!writer_.joinable()) return;
    {
        std::lock_guard lock(held_mu_);
        stop_writer_ = true;
    }
    queued_cv_.notify_one();
    room_cv_.notify_all();
    writer_.join();
}

bool ingest::store_held() {
    std::lock_guard store(store_mu_);
    std::vector<held_message> batch;
    std::vector<storage::incoming> in;
    std::vector<storage::append_result> out;
    for (;;) {
        bool was_holding = false;
        {
            std::lock_guard lock(held_mu_);
            if (held_.empty()) {
                holding_ = false;
                return true;
            }
            was_holding = holding_;
            const size_t n = std::min(held_.size(), group_batch);
            batch.assign(std::make_move_iterator(held_.begin()),
                         std::make_move_iterator(held_.begin() + static_cast<ptrdiff_t>(n)));
            held_.erase(held_.begin(), held_.begin() + static_cast<ptrdiff_t>(n));
        }
        room_cv_.notify_all();
        in.clear();
        out.clear();
        for (const held_message& h : batch) in.push_back({h.topic, h.payload, h.sinks, h.ts});
        storage::buffer::batch_result r;
        const auto started = std::chrono::steady_clock::now();
        try {
            r = buf_.append_batch(in, post_, out);
            timed(started, in.size());
        } catch (...) {
            // Not SQLite (append_batch reports those): keep the batch, then let the caller know.
            hold_again(batch, 0);
            throw;
        }
        for (size_t i = 0; i < r.handled; ++i) counted(out[i], batch[i].topic);
        if (r.handled == batch.size()) continue;

        // Put the rest back in front, in order, and hold. A block policy that is still full is
        // not news; anything else is counted and logged (throttled) by counted().
        const std::string topic = batch[r.handled].topic;
        hold_again(batch, r.handled);
        storage::append_result failure;
        failure.status = r.stopped;
        failure.error = r.error;
        if (r.stopped != storage::append_status::full) counted(failure, topic);
        if (!was_holding) {
            mb_.post(ingest_event{ingest_event::pause, r.stopped == storage::append_status::full
                                                           ? "buffer full (when_full block)"
                                                           : r.error});
        }
        return false;
    }
}

// Puts batch[from...] back in front of the held messages, in order, and marks storing as
// failed. Paho's thread may be waiting for room: holding lets it queue again (it must never wait
// while storing fails, see queue()).
void ingest::hold_again(std::vector<held_message>& batch, size_t from) {
    {
        std::lock_guard lock(held_mu_);
        held_.insert(held_.begin(),
                     std::make_move_iterator(batch.begin() + static_cast<ptrdiff_t>(from)),
                     std::make_move_iterator(batch.end()));
        holding_ = true;
    }
    room_cv_.notify_all();
}

size_t ingest::held() const {
    std::lock_guard lock(held_mu_);
    return held_.size();
}

void ingest::resume() {
    if (!paused_) return;
    paused_ = false;
    log_->debug("buffer has room again: resuming the local session");
    conn_ = sink_machine(reconnect_policy());  // connect now, not after a backoff
}

void ingest::handle(ingest_event& e) {
    auto lg = log::get("ingest");
    switch (e.what) {
        case ingest_event::connected:
            // Paho C++ 1.2 over Paho C 1.3 may report one connect twice.
            if (stopping_ || paused_ || conn_.connected()) return;
            conn_.on_connected();
            last_error_.clear();
            lg->info("connected to {}", cfg_.uri);
            subscribe();
            break;
        case ingest_event::connect_failed:
        case ingest_event::lost: {
            if (e.what == ingest_event::lost ? !conn_.connected() : !conn_.is_connecting()) return;
            subscribed_ = false;
            conn_.on_disconnected(sink_machine::clock::now());
            last_error_ = e.text;
            if (log_failure(conn_.failures())) {
                lg->warn("{} {}: {} (attempt {}), retrying with backoff",
                         e.what == ingest_event::lost ? "lost" : "cannot connect to", cfg_.uri,
                         e.text, conn_.failures());
            }
            break;
        }
        case ingest_event::subscribed:
            if (subscribed_ || !conn_.connected()) return;
            subscribed_ = true;
            lg->info("subscribed to {} filter(s)", cfg_.subscribe.size());
            break;
        case ingest_event::pause:
            if (paused_ || stopping_) return;
            paused_ = true;
            if (pause_log_.allow()) {
                lg->warn(
                    "cannot store ({}): pausing the local session; the broker keeps the "
                    "messages that follow ({} pause(s) so far)",
                    e.text, pause_log_.count());
            }
            subscribed_ = false;
            conn_.on_disconnected(sink_machine::clock::now());
            try {
                cli_->disconnect(0);
            } catch (const mqtt::exception&) {
                // Already disconnected.
            }
            break;
        case ingest_event::subscribe_failed:
            last_error_ = "subscribe: " + e.text;
            lg->error("subscribe failed: {}", e.text);
            break;
    }
}

void ingest::pump() {
    if (stopping_ || paused_) return;
    const auto now = sink_machine::clock::now();
    if (conn_.connect_overdue(now, connect_timeout + std::chrono::seconds(5))) {
        last_error_ = "connect attempt got no answer";
        conn_.on_disconnected(now);
    }
    if (conn_.wants_connect(now)) connect();
}

void ingest::stop(std::chrono::milliseconds budget) {
    stopping_ = true;
    try {
        if (cli_->is_connected())
            cli_->disconnect(static_cast<int>(budget.count()))->wait_for(budget);
    } catch (const mqtt::exception& e) {
        log::get("ingest")->warn("disconnect: {}", e.what());
    }
    stop_writer();
}

nlohmann::json ingest::status() const {
    return {{"uri", cfg_.uri},           {"connected", conn_.connected()},
            {"paused", paused_},         {"held", held()},
            {"subscribed", subscribed_}, {"reconnects", conn_.reconnects()},
            {"last_error", last_error_}};
}

}  // namespace egw
