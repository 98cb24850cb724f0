// SPDX-License-Identifier: Apache-2.0
#include "gateway/devices/downlink_sink.h"

#include <chrono>
#include <stdexcept>

#include "gateway/devices/downlink.h"
#include "gateway/log.h"
#include "gateway/paho.h"

namespace egw::devices {
namespace {

std::string paho_text(int code) {
    if (code <= MQTTASYNC_FAILURE && code >= MQTTASYNC_MAX_BUFFERED)
        return MQTTAsync_strerror(code);
    if (code >= 1 && code <= 5) return "connection refused (CONNACK " + std::to_string(code) + ")";
    return "error " + std::to_string(code);
}

sink_limits limits_of(const sink_config& c) {
    sink_limits l;
    l.window = static_cast<size_t>(c.inflight);
    l.batch = static_cast<size_t>(c.batch);
    l.backoff_initial = std::chrono::milliseconds(c.backoff.initial_ms);
    l.backoff_max = std::chrono::milliseconds(c.backoff.max_ms);
    return l;
}

}  // namespace

// --- client: one Paho client (its callbacks run on Paho's threads and only post) -------------

downlink_sink::client::client(downlink_sink& sink, uint64_t generation)
    : self(sink), gen(generation) {
    const sink_config& c = sink.cfg_;
    MQTTAsync_createOptions copts = MQTTAsync_createOptions_initializer;
    copts.MQTTVersion = MQTTVERSION_3_1_1;
    copts.maxBufferedMessages = std::max(100, 2 * c.inflight);
    int rc = MQTTAsync_createWithOptions(&cli, c.uri.c_str(), c.client_id.c_str(),
                                         MQTTCLIENT_PERSISTENCE_NONE, nullptr, &copts);
    if (rc != MQTTASYNC_SUCCESS)
        throw std::runtime_error("downlink: cannot create an MQTT client for " + c.uri + ": " +
                                 paho_text(rc));
    rc = MQTTAsync_setCallbacks(
        cli, this,
        [](void* ctx, char* cause) {
            static_cast<client*>(ctx)->post(sink_event::lost, 0,
                                            cause && *cause ? cause : "connection lost");
        },
        [](void*, char* topic, int, MQTTAsync_message* m) {
            // Never subscribes; Paho requires the callback all the same.
            MQTTAsync_freeMessage(&m);
            MQTTAsync_free(topic);
            return 1;
        },
        nullptr);
    if (rc != MQTTASYNC_SUCCESS) {
        MQTTAsync_destroy(&cli);
        throw std::runtime_error("downlink: " + paho_text(rc));
    }
}

downlink_sink::client::~client() {
    if (MQTTAsync_isConnected(cli)) {
        MQTTAsync_disconnectOptions o = MQTTAsync_disconnectOptions_initializer;
        o.timeout = 0;
        MQTTAsync_disconnect(cli, &o);
    }
    // Once this returns none of the client's callbacks runs any more.
    MQTTAsync_destroy(&cli);
}

void downlink_sink::client::post(sink_event::kind what, uint64_t seq, std::string text,
                                 int32_t slot_index) {
    self.mb_.post(sink_event{self.id_, what, seq, std::move(text), 0, gen, slot_index});
}

downlink_sink::client::slot* downlink_sink::client::take_slot(uint64_t seq) {
    if (free_slots.empty()) {
        slots.push_back(slot{this, static_cast<int32_t>(slots.size()), seq});
        return &slots.back();
    }
    slot* s = &slots[static_cast<size_t>(free_slots.back())];
    free_slots.pop_back();
    s->seq = seq;
    return s;
}

// --- the sink ------------------------------------------------------------------------------

downlink_sink::downlink_sink(int id, sink_config cfg, int bit, storage::buffer& buf,
                             mailbox<event>& mb)
    : sink(id, std::move(cfg), bit), buf_(buf), mb_(mb), machine_(limits_of(cfg_)) {
    cli_ = std::make_unique<client>(*this, ++generation_);
}

downlink_sink::~downlink_sink() = default;

void downlink_sink::connect() {
    machine_.connecting();
    if (cli_->used) cli_ = std::make_unique<client>(*this, ++generation_);
    cli_->used = true;
    MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer;
    opts.MQTTVersion = MQTTVERSION_3_1_1;
    opts.cleansession = 1;  // the rows wait in the buffer, not in a broker session
    opts.keepAliveInterval = cfg_.keepalive_s;
    opts.connectTimeout = static_cast<int>(connect_timeout.count());
    opts.maxInflight = cfg_.inflight;
    if (!cfg_.username.empty()) opts.username = cfg_.username.c_str();
    if (!cfg_.password.empty()) opts.password = cfg_.password.c_str();
    MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
    if (cfg_.tls) {
        const tls_config& t = *cfg_.tls;
        if (!t.ca_file.empty()) ssl.trustStore = t.ca_file.c_str();
        if (!t.cert_file.empty()) ssl.keyStore = t.cert_file.c_str();
        if (!t.key_file.empty()) ssl.privateKey = t.key_file.c_str();
        ssl.enableServerCertAuth = t.verify ? 1 : 0;
        ssl.verify = t.verify ? 1 : 0;
        opts.ssl = &ssl;
    }
    opts.context = cli_.get();
    opts.onSuccess = [](void* ctx, MQTTAsync_successData*) {
        static_cast<client*>(ctx)->post(sink_event::connected, 0, {});
    };
    opts.onFailure = [](void* ctx, MQTTAsync_failureData* d) {
        std::string why = paho_text(d ? d->code : MQTTASYNC_FAILURE);
        if (d && d->message && *d->message) why += std::string(" (") + d->message + ")";
        static_cast<client*>(ctx)->post(sink_event::connect_failed, 0, std::move(why));
    };
    if (const int rc = MQTTAsync_connect(cli_->cli, &opts); rc != MQTTASYNC_SUCCESS) {
        last_error_ = paho_text(rc);
        machine_.on_disconnected(sink_machine::clock::now());
    }
}

void downlink_sink::handle(sink_event& e) {
    if (e.gen != cli_->gen) return;  // from a client replaced since
    if (e.slot >= 0) cli_->free_slots.push_back(e.slot);
    auto lg = log::get("downlink");
    if (stopping_ && e.what != sink_event::acked) return;
    switch (e.what) {
        case sink_event::connected:
            if (machine_.connected()) return;
            machine_.on_connected(0);
            last_error_.clear();
            lg->info("downlink: connected to the local broker {}", cfg_.uri);
            break;
        case sink_event::connect_failed:
        case sink_event::lost:
            if (e.what == sink_event::lost ? !machine_.connected() : !machine_.is_connecting())
                return;
            machine_.on_disconnected(sink_machine::clock::now());
            last_error_ = e.text;
            if (log_failure(machine_.failures()))
                lg->warn("downlink: local broker {}: {} (attempt {}); downlinks wait in the buffer",
                         cfg_.uri, e.text, machine_.failures());
            break;
        case sink_event::acked:
            if (machine_.on_ack(e.seq)) ++acked_;
            break;
        case sink_event::publish_failed:
            // 3.1.1 has no per-message refusal: a failed publish is a failed connection.
            if (machine_.connected()) {
                last_error_ = "publish failed: " + e.text;
                machine_.on_disconnected(sink_machine::clock::now());
                MQTTAsync_disconnectOptions o = MQTTAsync_disconnectOptions_initializer;
                MQTTAsync_disconnect(cli_->cli, &o);
            }
            break;
    }
}

void downlink_sink::on_live(storage::stored_row& row, bool last) {
    if (!(row.sinks & (uint64_t{1} << bit_))) return;
    machine_.on_live(last ? std::move(row) : storage::stored_row(row));
}

void downlink_sink::pump() {
    if (stopping_) return;
    const auto now = sink_machine::clock::now();
    if (machine_.connect_overdue(now, connect_timeout + std::chrono::seconds(5))) {
        last_error_ = "connect attempt got no answer";
        machine_.on_disconnected(now);
    }
    if (machine_.wants_connect(now)) connect();
    while (machine_.connected()) {
        if (machine_.wants_read()) {
            scratch_.clear();
            storage::buffer::read_result r;
            try {
                r = buf_.read(bit_, machine_.read_after(), machine_.limits().batch,
                              machine_.read_budget(), scratch_);
            } catch (const std::exception& e) {
                log::get("downlink")->error("downlink: reading the buffer: {}", e.what());
                return;
            }
            machine_.on_read(std::move(scratch_), r.vouched, r.complete);
        }
        const storage::stored_row* row = machine_.next();
        if (!row) return;
        const uint64_t seq = row->seq;
        const int rc = publish(*row);
        if (rc == MQTTASYNC_MAX_BUFFERED_MESSAGES) return;
        if (rc == MQTTASYNC_BAD_STRUCTURE) {
            // Not a row the relay wrote (downlink.h encode_local_row): let it go, counted.
            ++malformed_;
            machine_.sent();
            machine_.on_ack(seq);
            continue;
        }
        if (rc != MQTTASYNC_SUCCESS) {
            last_error_ = "publish failed: " + paho_text(rc);
            machine_.on_disconnected(sink_machine::clock::now());
            if (rc != MQTTASYNC_DISCONNECTED) {
                MQTTAsync_disconnectOptions o = MQTTAsync_disconnectOptions_initializer;
                MQTTAsync_disconnect(cli_->cli, &o);
            }
            return;
        }
        machine_.sent();
        ++sent_;
    }
}

int downlink_sink::publish(const storage::stored_row& row) {
    int qos = 0;
    std::string_view topic;
    if (!decode_local_row(row.topic, qos, topic)) return MQTTASYNC_BAD_STRUCTURE;
    const std::string topic_z(topic);
    client::slot* slot = cli_->take_slot(row.seq);
    MQTTAsync_message msg = MQTTAsync_message_initializer;
    msg.payload = const_cast<char*>(row.payload.data());
    msg.payloadlen = static_cast<int>(row.payload.size());
    msg.qos = qos;
    msg.retained = 0;  // a downlink is never retained locally
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.context = slot;
    ro.onSuccess = [](void* ctx, MQTTAsync_successData*) {
        auto* s = static_cast<client::slot*>(ctx);
        s->owner->post(sink_event::acked, s->seq, {}, s->index);
    };
    ro.onFailure = [](void* ctx, MQTTAsync_failureData* d) {
        auto* s = static_cast<client::slot*>(ctx);
        s->owner->post(sink_event::publish_failed, s->seq,
                       paho_text(d ? d->code : MQTTASYNC_FAILURE), s->index);
    };
    const int rc = MQTTAsync_sendMessage(cli_->cli, topic_z.c_str(), &msg, &ro);
    if (rc != MQTTASYNC_SUCCESS) cli_->free_slots.push_back(slot->index);
    return rc;
}

void downlink_sink::stop(const std::string&, std::chrono::milliseconds budget) {
    stopping_ = true;
    if (!MQTTAsync_isConnected(cli_->cli)) return;
    // Gives the local broker a moment to acknowledge what is in flight; what it does not
    // acknowledge is sent again after the restart (at least once).
    MQTTAsync_disconnectOptions o = MQTTAsync_disconnectOptions_initializer;
    o.timeout = static_cast<int>(budget.count() / 2);
    MQTTAsync_disconnect(cli_->cli, &o);
}

nlohmann::json downlink_sink::status() {
    const auto& t = buf_.for_sink(bit_);
    double oldest_age = 0;  // `edge-gateway status` shows it for every sink
    if (t.rows.load() > 0) {
        try {
            const int64_t ts = buf_.oldest_ts(bit_, machine_.acked_through());
            const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count();
            if (ts >= 0) oldest_age = static_cast<double>(now - ts) / 1000.0;
        } catch (const std::exception&) {
            // Status stays useful without the age.
        }
    }
    return {{"state", to_string(machine_.state())},
            {"oldest_age_s", oldest_age},
            {"connected", machine_.connected()},
            {"uri", cfg_.uri},
            {"rows_waiting", t.rows.load()},
            {"bytes_waiting", t.bytes.load()},
            {"eta_s", t.rows.load() == 0 ? nlohmann::json(0) : nlohmann::json(nullptr)},
            {"sent", sent_},
            {"acked", acked_},
            {"inflight", machine_.inflight()},
            {"reconnects", machine_.reconnects()},
            {"skipped", malformed_},
            {"last_error", last_error_}};
}

std::unique_ptr<sink> make_downlink_sink(const sink_context& x) {
    return std::make_unique<downlink_sink>(x.id, x.cfg, x.bit, x.buf, x.mb);
}

void parse_downlink_sink(const nlohmann::json&, const std::string& path, const config&,
                         sink_config&, std::vector<config_problem>& problems) {
    problems.push_back({path + ".type", "is internal (set by downlink)"});
}

}  // namespace egw::devices
