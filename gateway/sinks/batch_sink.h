// SPDX-License-Identifier: Apache-2.0
// The I/O half shared by the batch sinks (dir, http, s3), around batch_machine: it runs the
// machine's reads, encodings (NDJSON, gzip, and the payload hash for types that sign it) and
// records as jobs on the libuv worker pool (never on the loop), keeps the encoded bodies of
// the prepared batches for their uploads and retries, and leaves the transfer itself to the
// type (start_upload).
//
// Pipelined (batch_machine "Pipeline", prepare_ahead batches): while one batch uploads, the
// next is encoded and recorded on the pool and the rows of the one after it are read. So up to
// three jobs of one sink run at once (a read, an encoding with its record, an upload or its
// mark), plus the freeing of uploaded rows; they share the sink's batch_store, which keeps
// reads on one connection and writes on another. Loop thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "gateway/log.h"
#include "gateway/sinks/batch_machine.h"
#include "gateway/sinks/ndjson.h"
#include "gateway/sinks/sink.h"
#include "storage/batches.h"

namespace egw {

// The settings every batch type shares (config keys batch, key, compression, max_bytes_per_s).
struct batch_options : sink_options {
    batch_limits limits;
    std::string key;
    bool gzip = true;
    // zlib level 1..9 (key compression_level). The type sets its default before parsing: 6 for
    // s3 and http (bytes over a link), 1 for dir (local disk: about 2.3x less CPU per batch for
    // about 30 % more bytes, see docs/sinks.md). Part of the bytes of a batch: changing it
    // changes the bytes of a batch retried afterwards, never its key or its rows.
    int compression_level = 6;
    uint64_t max_bytes_per_s = 0;  // 0: unlimited
    // Binary payloads become objects of their own under this template (objects.h); empty:
    // they go into the batch as payload_b64. Types that support it parse it (parse_object_key).
    std::string object_key;
};

// Parses the shared keys into `o`; `default_max_rows` etc. come from the type.
void parse_batch_options(const nlohmann::json& s, const std::string& path, batch_options& o,
                         std::vector<config_problem>& problems);
// Parses `object_key` into `o` (s3 and dir): a template of the row alone ({topic}, {seq}, ...),
// never of the batch's range, so that a retry after a split keeps every object's key.
void parse_object_key(const nlohmann::json& s, const std::string& path, batch_options& o,
                      std::vector<config_problem>& problems);

class batch_sink : public sink {
public:
    batch_sink(const sink_context& ctx, const batch_options& opts);
    ~batch_sink() override;

    void handle(sink_event&) override {}
    void on_live(storage::stored_row& row, bool last) override;
    void pump() override;
    void tick(double seconds) override;
    void stop(const std::string& offline_status, std::chrono::milliseconds budget) override;
    nlohmann::json status() override;
    // Batch sinks read everything from the buffer; a new row is noticed from last_seq.
    bool wants_live() const override { return false; }
    uint64_t ack_committed() const override { return machine_.ack_committed(); }
    uint64_t acked_through() const override { return machine_.acked_through(); }
    void ack_commit_done(uint64_t through) override { machine_.ack_commit_done(through); }
    void on_reload() override { machine_.on_reload(); }

protected:
    // A binary row stored as an object of its own, before the batch that points to it.
    struct object {
        std::string key;  // encoded ([A-Za-z0-9/._-] and %XX), as in a URL path or file name
        std::string content_type;
        std::shared_ptr<const std::string> body;
        uint64_t seq = 0;
    };
    struct upload {
        uint64_t first_seq, last_seq;
        size_t rows;
        std::shared_ptr<const std::string> body;  // compressed unless compression is none
        std::string key;
        std::vector<object> objects;  // in seq order; stored before the batch object
        uint64_t total_bytes() const {
            uint64_t n = body->size();
            for (const auto& o : objects) n += o.body->size();
            return n;
        }
    };
    // Starts the transfer of `u`; the type calls upload_done() exactly once, on the loop.
    virtual void start_upload(const upload& u) = 0;
    void upload_done(upload_outcome outcome, std::string error);
    // Marks the batch uploaded in its record: a worker job, before its rows are acknowledged.
    // Types whose upload already runs on a worker call store().mark_uploaded() there instead.
    virtual bool marks_uploaded_itself() const { return false; }
    // Extra status fields of the type.
    virtual void add_status(nlohmann::json&) {}
    // How a pointer line names an object: false, its encoded key (a file name under dir's
    // path); true, the key decoded (what an S3 service stores for the encoded URL path).
    virtual bool decoded_object_names() const { return false; }

    // A unit of work for the pool: `run` on a worker, `done` back on the loop unless the sink
    // is gone by then.
    void run_job(std::function<void()> run, std::function<void()> done);

    const std::shared_ptr<storage::batch_store>& store() const { return store_; }
    const std::string& gateway_id() const { return gateway_id_; }
    uv_loop_t* loop() const { return loop_; }
    counters& cnt() { return cnt_; }

    std::string last_error_;
    bool stopping_ = false;

private:
    void execute(batch_machine::action a);
    void uploaded();
    // Frees the rows of finished batches on a worker instead of the loop.
    void release_rows();
    // The longest the sink kept the loop busy in one go (a job's completion, with the pump
    // and upload start it triggers), in wall time and in the loop thread's CPU time: its own
    // share of loop.lag_max_s. Status loop_max_s, loop_cpu_max_s.
    void note_loop_time(std::chrono::steady_clock::duration wall,
                        std::chrono::steady_clock::duration cpu);

    std::string gateway_id_;
    storage::buffer& buf_;
    counters& cnt_;
    uv_loop_t* loop_;
    batch_options opts_;
    ndjson::key_template key_;
    std::shared_ptr<const ndjson::key_template> object_key_;  // null: no objects of their own
    batch_machine machine_;
    std::shared_ptr<storage::batch_store> store_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
    uint64_t seen_last_seq_ = 0;
    // The prepared batches, oldest (uploading or next) first, as machine_.prepared() counts them.
    std::deque<upload> uploads_;
    bool pumping_ = false, repump_ = false;
    std::chrono::steady_clock::time_point not_before_{};  // max_bytes_per_s
    uint64_t bytes_uploaded_ = 0, batches_uploaded_ = 0, rows_uploaded_ = 0;
    uint64_t rows_at_last_tick_ = 0;
    double rate_ = 0;  // rows per second
    std::chrono::steady_clock::duration loop_max_{}, loop_cpu_max_{};
    log::throttle drop_log_;
};

}  // namespace egw
