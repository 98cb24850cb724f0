// SPDX-License-Identifier: Apache-2.0
#include "gateway/sinks/batch_sink.h"

#include <time.h>
#include <unistd.h>

#include <cassert>
#include <chrono>

#include "gateway/log.h"
#include "gateway/sinks/objects.h"

namespace egw {
namespace {

using clock = std::chrono::steady_clock;

int64_t unix_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// Batches prepared while one uploads: one is enough to keep the upload busy when preparing
// takes less time than uploading; the second absorbs the jitter of the pool (shared with the
// buffer's acks and plugins) and of the destination. Each holds its rows and encoded body.
constexpr size_t prepare_ahead = 2;

batch_limits pipelined(batch_limits l) {
    l.prepare_ahead = prepare_ahead;
    return l;
}

// CPU time of the calling thread: on a busy machine a turn's wall time also counts the time the
// thread waited for a CPU.
std::chrono::nanoseconds thread_cpu() {
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return std::chrono::seconds(t.tv_sec) + std::chrono::nanoseconds(t.tv_nsec);
}

struct work {
    uv_work_t req{};
    std::function<void()> run;
    std::function<void()> done;
};

}  // namespace

void parse_batch_options(const nlohmann::json& s, const std::string& path, batch_options& o,
                         std::vector<config_problem>& problems) {
    if (s.contains("batch")) {
        const auto& b = s["batch"];
        o.limits.max_rows = b.value("max_rows", o.limits.max_rows);
        o.limits.max_bytes = b.value("max_bytes", o.limits.max_bytes);
        o.limits.max_delay = std::chrono::milliseconds(
            b.value("max_delay_ms", static_cast<int64_t>(o.limits.max_delay.count())));
    }
    if (s.contains("backoff")) {
        const auto& b = s["backoff"];
        o.limits.backoff_initial = std::chrono::milliseconds(b.value("initial_ms", 500));
        o.limits.backoff_max = std::chrono::milliseconds(b.value("max_ms", 30000));
        if (o.limits.backoff_max < o.limits.backoff_initial) {
            problems.push_back({path + ".backoff.max_ms", "must be >= initial_ms"});
        }
    }
    o.gzip = s.value("compression", "gzip") != "none";
    if (s.contains("compression_level")) {
        const auto& l = s["compression_level"];
        if (!l.is_number_integer() || l.get<int64_t>() < 1 || l.get<int64_t>() > 9) {
            problems.push_back({path + ".compression_level", "must be an integer from 1 to 9"});
        } else {
            o.compression_level = l.get<int>();
        }
    }
    o.max_bytes_per_s = s.value("max_bytes_per_s", uint64_t{0});
    o.key = s.value("key", std::string(ndjson::default_key));
    // Without compression the default name says so.
    if (!s.contains("key") && !o.gzip) o.key.resize(o.key.size() - 3);
    try {
        ndjson::key_template t(o.key);
    } catch (const std::invalid_argument& e) {
        problems.push_back({path + ".key", e.what()});
    }
}

void parse_object_key(const nlohmann::json& s, const std::string& path, batch_options& o,
                      std::vector<config_problem>& problems) {
    o.object_key = s.value("object_key", "");
    if (o.object_key.empty()) return;
    if (o.object_key.find("{first_seq}") != std::string::npos ||
        o.object_key.find("{last_seq}") != std::string::npos) {
        problems.push_back({path + ".object_key",
                            "{first_seq} and {last_seq} name a batch, not a row: use {seq}"});
        return;
    }
    if (o.object_key.find("{seq}") == std::string::npos) {
        problems.push_back(
            {path + ".object_key", "must contain {seq}: every object needs a key of its own"});
        return;
    }
    try {
        ndjson::key_template t(o.object_key);
    } catch (const std::invalid_argument& e) {
        problems.push_back({path + ".object_key", e.what()});
    }
}

batch_sink::batch_sink(const sink_context& ctx, const batch_options& opts)
    : sink(ctx.id, ctx.cfg, ctx.bit),
      gateway_id_(ctx.gateway_id),
      buf_(ctx.buf),
      cnt_(ctx.cnt),
      loop_(ctx.loop),
      opts_(opts),
      key_(opts.key),
      object_key_(opts.object_key.empty()
                      ? nullptr
                      : std::make_shared<const ndjson::key_template>(opts.object_key)),
      machine_(pipelined(opts.limits)),
      store_(std::make_shared<storage::batch_store>(ctx.buf, ctx.bit)) {}

batch_sink::~batch_sink() { *alive_ = false; }

void batch_sink::run_job(std::function<void()> run, std::function<void()> done) {
    auto* w = new work{{}, std::move(run), std::move(done)};
    w->req.data = w;
    std::weak_ptr<bool> alive = alive_;
    // The sink may be replaced (reload) or destroyed (shutdown) while the job runs: `done`
    // captures `this`, so it runs only if the sink still exists.
    w->done = [this, alive, d = std::move(w->done)] {
        if (auto a = alive.lock(); a && *a) {
            const auto t0 = clock::now();
            const auto c0 = thread_cpu();
            d();
            note_loop_time(clock::now() - t0, thread_cpu() - c0);
        }
    };
    uv_queue_work(
        loop_, &w->req, [](uv_work_t* r) { static_cast<work*>(r->data)->run(); },
        [](uv_work_t* r, int) {
            std::unique_ptr<work> owned(static_cast<work*>(r->data));
            owned->done();
        });
}

void batch_sink::on_live(storage::stored_row& row, bool) {
    if (row.sinks & (uint64_t{1} << bit_)) machine_.on_new_row();
}

void batch_sink::pump() {
    if (stopping_) return;
    // A job that ends synchronously (an upload refused at once) calls pump() again from
    // execute(): that turn is taken by the loop below instead of recursing.
    if (pumping_) {
        repump_ = true;
        return;
    }
    pumping_ = true;
    do {
        repump_ = false;
        if (const uint64_t last = buf_.last_seq(); last != seen_last_seq_) {
            seen_last_seq_ = last;
            machine_.on_new_row();
        }
        for (;;) {
            const auto now = clock::now();
            auto a = machine_.next(now, unix_ms(), now >= not_before_);
            if (a.what == batch_machine::action::none) break;
            execute(std::move(a));
            if (stopping_) break;
        }
    } while (repump_ && !stopping_);
    pumping_ = false;
}

void batch_sink::execute(batch_machine::action a) {
    using action = batch_machine::action;
    auto store = store_;
    switch (a.what) {
        case action::none:
            return;
        case action::recover: {
            auto ranges = std::make_shared<std::vector<batch_range>>();
            auto through = std::make_shared<uint64_t>(0);
            auto error = std::make_shared<std::string>();
            run_job(
                [store, ranges, through, error] {
                    try {
                        for (const auto& r : store->open_ranges(*through))
                            ranges->push_back({r.first, r.last});
                    } catch (const std::exception& e) {
                        *error = e.what();
                    }
                },
                [this, ranges, through, error] {
                    if (!error->empty()) {
                        // Without its records the sink cannot know which ranges are decided:
                        // it must not send anything. Try again later.
                        log::get("sink")->error("{}: reading its batch records: {}", cfg_.name,
                                                *error);
                        last_error_ = "reading batch records: " + *error;
                        machine_.on_recover_failed(clock::now());
                        return;
                    }
                    if (!ranges->empty()) {
                        log::get("sink")->info(
                            "{}: {} recorded batch(es) to upload again, from seq {}", cfg_.name,
                            ranges->size(), ranges->front().first);
                    }
                    machine_.on_recovered(std::move(*ranges), *through);
                    pump();
                });
            return;
        }
        case action::read: {
            auto rows = std::make_shared<std::vector<storage::stored_row>>();
            auto complete = std::make_shared<bool>(false);
            auto error = std::make_shared<std::string>();
            run_job(
                [store, rows, complete, error, a, max_bytes = machine_.limits().max_bytes] {
                    try {
                        *complete = store->read(a.after, a.through, a.limit, *rows, max_bytes);
                    } catch (const std::exception& e) {
                        *error = e.what();
                    }
                },
                [this, rows, complete, error] {
                    if (!error->empty()) {
                        cnt_.errors_buffer.fetch_add(1, std::memory_order_relaxed);
                        log::get("sink")->error("{}: reading the buffer: {}", cfg_.name, *error);
                        last_error_ = "reading the buffer: " + *error;
                        machine_.on_read_failed(clock::now());
                        return;
                    }
                    machine_.on_read(std::move(*rows), *complete);
                    pump();
                });
            return;
        }
        case action::encode: {
            struct result {
                std::vector<storage::stored_row> rows, rest;
                std::shared_ptr<std::string> body;
                size_t ndjson_bytes = 0;
                std::string key, error;
                std::vector<object> objects;
            };
            auto r = std::make_shared<result>();
            r->rows = std::move(a.rows);
            const size_t max_bytes = machine_.limits().max_bytes;
            const bool gzip = opts_.gzip;
            const int level = opts_.compression_level;
            const uint64_t acked = machine_.ack_committed();
            const bool recorded = a.recorded;
            const batch_range range = a.range;
            run_job(
                [store, r, max_bytes, gzip, level, acked, recorded, range, gw = gateway_id_,
                 key = key_, object_key = object_key_, decoded = decoded_object_names()] {
                    try {
                        std::string text;
                        size_t raw = 0;
                        for (const auto& row : r->rows)
                            raw += row.topic.size() + row.payload.size();
                        // The keys, numbers and quotes of a line add about 80 bytes to it.
                        text.reserve(std::min(raw + 96 * r->rows.size(), max_bytes + 4096));
                        size_t used = 0;
                        for (const auto& row : r->rows) {
                            const size_t before = text.size();
                            if (object_key && objects::is_object_row(row)) {
                                // The key depends on the row alone: a retry, a split or a
                                // restart names the object the same way.
                                object o;
                                o.key = object_key->render(
                                    {gw, row.ts_ms, row.seq, row.seq, row.seq, row.topic});
                                o.content_type = objects::content_type_of(row);
                                o.body = std::make_shared<const std::string>(row.payload);
                                o.seq = row.seq;
                                objects::append_pointer_line(
                                    text, gw, row, decoded ? objects::decode_key(o.key) : o.key,
                                    o.content_type);
                                r->objects.push_back(std::move(o));
                            } else {
                                ndjson::append_line(text, gw, row);
                            }
                            // max_bytes counts the NDJSON before compression; a recorded range
                            // is sent whole, whatever the limit says now.
                            if (!recorded && used > 0 && text.size() > max_bytes) {
                                text.resize(before);
                                if (!r->objects.empty() && r->objects.back().seq == row.seq)
                                    r->objects.pop_back();
                                break;
                            }
                            ++used;
                        }
                        r->rest.assign(std::make_move_iterator(r->rows.begin() + used),
                                       std::make_move_iterator(r->rows.end()));
                        r->rows.resize(used);
                        const uint64_t first = recorded ? range.first : r->rows.front().seq;
                        const uint64_t last = recorded ? range.last : r->rows.back().seq;
                        r->ndjson_bytes = text.size();
                        r->body = std::make_shared<std::string>(gzip ? ndjson::gzip(text, level)
                                                                     : std::move(text));
                        r->key = key.render(
                            {gw, r->rows.front().ts_ms, first, last, r->rows.front().seq, {}});
                        if (!recorded) store->record(first, last, acked);
                    } catch (const std::exception& e) {
                        r->error = e.what();
                        for (auto& row : r->rows) r->rest.push_back(std::move(row));
                        r->rows.clear();
                        r->objects.clear();
                    }
                },
                [this, r] {
                    const auto now = clock::now();
                    if (!r->error.empty()) {
                        last_error_ = "preparing a batch: " + r->error;
                        log::get("sink")->error("{}: {}", cfg_.name, last_error_);
                        machine_.on_encoded({}, std::move(r->rest), now, true);
                        return;
                    }
                    const size_t n = r->rows.size();
                    machine_.on_encoded(std::move(r->rows), std::move(r->rest), now);
                    const batch_range c = machine_.newest();
                    uploads_.push_back(upload{c.first, c.last, n, r->body, std::move(r->key),
                                              std::move(r->objects)});
                    pump();
                });
            return;
        }
        case action::upload:
            assert(uploads_.size() == machine_.prepared());
            not_before_ = clock::now();
            start_upload(uploads_.front());
            return;
        case action::split: {
            auto ok = std::make_shared<bool>(false);
            run_job(
                [store, a, ok] {
                    try {
                        store->split(a.range.first, {a.halves[0].first, a.halves[0].last},
                                     {a.halves[1].first, a.halves[1].last});
                        *ok = true;
                    } catch (const std::exception&) {
                    }
                },
                [this, ok, a] {
                    log::get("sink")->warn("{}: batch {}-{} refused as a whole ({}); splitting it",
                                           cfg_.name, a.range.first, a.range.last, last_error_);
                    // The machine prepares the halves, and what was prepared behind, again.
                    if (*ok) uploads_.clear();
                    machine_.on_split_recorded(*ok, clock::now());
                    pump();
                });
            return;
        }
        case action::drop: {
            // The row goes to the dead letters (edge-gateway dead-letters lists it) in the
            // same transaction that marks its record done: never lost, never sent again.
            auto ok = std::make_shared<bool>(false);
            auto kept = std::make_shared<bool>(false);
            const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count();
            run_job(
                [store, a, ok, kept, name = cfg_.name, reason = last_error_, now_ms] {
                    try {
                        *kept = store->dead_letter(a.range.first, name, reason, now_ms);
                        *ok = true;
                    } catch (const std::exception&) {
                    }
                },
                [this, ok, kept, a] {
                    if (drop_log_.allow()) {
                        log::get("sink")->error(
                            "{}: row seq {} refused on its own ({}); {} ({} so far)", cfg_.name,
                            a.range.first, last_error_,
                            *kept ? "moved to the dead letters" : "dropped (no longer buffered)",
                            drop_log_.count());
                    }
                    if (*ok) uploads_.pop_front();
                    machine_.on_dropped(*ok, clock::now());
                    release_rows();
                    pump();
                });
            return;
        }
        case action::forget: {
            auto ok = std::make_shared<bool>(false);
            run_job(
                [store, a, ok] {
                    try {
                        store->forget(a.range.first);
                        *ok = true;
                    } catch (const std::exception&) {
                    }
                },
                [this, ok] {
                    machine_.on_forgotten(*ok, clock::now());
                    pump();
                });
            return;
        }
    }
}

void batch_sink::upload_done(upload_outcome outcome, std::string error) {
    const auto now = clock::now();
    auto lg = log::get("sink");
    const upload& u = uploads_.front();
    if (outcome != upload_outcome::ok) {
        last_error_ = std::move(error);
        if (outcome == upload_outcome::refused || outcome == upload_outcome::local) {
            lg->error("{}: batch {}-{}: {}; retrying in {} s", cfg_.name, u.first_seq, u.last_seq,
                      last_error_, machine_.limits().error_retry.count() / 1000);
        } else if (outcome == upload_outcome::transient && machine_.failures() % 10 == 0) {
            lg->warn("{}: batch {}-{}: {} (attempt {}), retrying with backoff", cfg_.name,
                     u.first_seq, u.last_seq, last_error_, machine_.failures() + 1);
        }
        machine_.on_uploaded(outcome, now);
        if (outcome == upload_outcome::too_large) pump();
        return;
    }
    if (!marks_uploaded_itself()) {
        // The record says "uploaded" before the rows are acknowledged: a crash in between
        // must not upload the range again with fewer rows (see batch_machine.h).
        auto ok = std::make_shared<bool>(false);
        run_job(
            [store = store_, first = u.first_seq, ok] {
                try {
                    store->mark_uploaded(first);
                    *ok = true;
                } catch (const std::exception&) {
                }
            },
            [this, ok] {
                if (!*ok) {
                    upload_done(upload_outcome::local, "recording the upload failed");
                    return;
                }
                uploaded();
            });
        return;
    }
    uploaded();
}

void batch_sink::uploaded() {
    auto lg = log::get("sink");
    const auto now = clock::now();
    const upload& u = uploads_.front();
    const uint64_t bytes = u.total_bytes();
    bytes_uploaded_ += bytes;
    rows_uploaded_ += u.rows;
    ++batches_uploaded_;
    cnt_.sent.fetch_add(u.rows, std::memory_order_relaxed);
    cnt_.acked.fetch_add(u.rows, std::memory_order_relaxed);
    if (opts_.max_bytes_per_s > 0) {
        not_before_ += std::chrono::microseconds(bytes * 1'000'000 / opts_.max_bytes_per_s);
    }
    if (machine_.failures() > 0) lg->info("{}: uploading again", cfg_.name);
    last_error_.clear();
    uploads_.pop_front();
    machine_.on_uploaded(upload_outcome::ok, now);
    release_rows();
    pump();
}

void batch_sink::note_loop_time(clock::duration wall, clock::duration cpu) {
    loop_max_ = std::max(loop_max_, wall);
    loop_cpu_max_ = std::max(loop_cpu_max_, cpu);
}

void batch_sink::release_rows() {
    auto rows = std::make_shared<std::vector<storage::stored_row>>(machine_.take_finished());
    if (rows->empty()) return;
    run_job([rows] { rows->clear(); }, [] {});
}

void batch_sink::tick(double seconds) {
    if (seconds <= 0) return;
    const double now_rate = static_cast<double>(rows_uploaded_ - rows_at_last_tick_) / seconds;
    rows_at_last_tick_ = rows_uploaded_;
    rate_ = rate_ == 0 ? now_rate : 0.7 * rate_ + 0.3 * now_rate;
}

void batch_sink::stop(const std::string&, std::chrono::milliseconds) {
    // A batch under way is recorded: the next start uploads it again under the same key.
    stopping_ = true;
}

nlohmann::json batch_sink::status() {
    const auto& t = buf_.for_sink(bit_);
    const int64_t rows = t.rows.load();
    nlohmann::json eta = nullptr;
    if (rows == 0) {
        eta = 0;
    } else if (machine_.state() != batch_state::offline && machine_.state() != batch_state::error &&
               rate_ > 0.5) {
        eta = static_cast<double>(rows) / rate_;
    }
    nlohmann::json in_flight = nullptr;
    if (!uploads_.empty()) {
        const upload& u = uploads_.front();
        in_flight = {
            {"first_seq", u.first_seq}, {"last_seq", u.last_seq}, {"rows", u.rows},
            {"bytes", u.total_bytes()}, {"key", u.key},           {"objects", u.objects.size()}};
    }
    nlohmann::json j = {{"type", cfg_.type},
                        {"state", to_string(machine_.state())},
                        {"connected", machine_.state() == batch_state::online ||
                                          machine_.state() == batch_state::draining},
                        {"rows_waiting", rows},
                        {"bytes_waiting", t.bytes.load()},
                        {"eta_s", eta},
                        {"batch_in_flight", in_flight},
                        {"batches_uploaded", batches_uploaded_},
                        {"rows_uploaded", rows_uploaded_},
                        {"bytes_uploaded", bytes_uploaded_},
                        {"rate_msg_s", rate_},
                        {"dropped", machine_.dropped()},
                        {"failures", machine_.failures()},
                        {"loop_max_s", std::chrono::duration<double>(loop_max_).count()},
                        {"loop_cpu_max_s", std::chrono::duration<double>(loop_cpu_max_).count()},
                        {"last_error", last_error_}};
    add_status(j);
    return j;
}

}  // namespace egw
