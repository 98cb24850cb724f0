// SPDX-License-Identifier: Apache-2.0
#include "gateway/mqtt_sink.h"

#include <chrono>

#include "gateway/log.h"

namespace egw {
namespace {

int64_t unix_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

sink_limits limits_of(const sink_config& c) {
    sink_limits l;
    l.window = static_cast<size_t>(c.inflight);
    l.batch = static_cast<size_t>(c.batch);
    l.live_cap = std::max<size_t>(4096, 4 * l.batch);
    l.backoff_initial = std::chrono::milliseconds(c.backoff.initial_ms);
    l.backoff_max = std::chrono::milliseconds(c.backoff.max_ms);
    return l;
}

}  // namespace

mqtt_sink::mqtt_sink(int id, sink_config cfg, const std::string& gateway_id, int bit,
                     storage::buffer& buf, counters& cnt, mailbox<event>& mb)
    : id_(id),
      cfg_(std::move(cfg)),
      gateway_id_(gateway_id),
      status_topic_("gateways/" + gateway_id + "/status"),
      bit_(bit),
      buf_(buf),
      cnt_(cnt),
      mb_(mb),
      topic_(cfg_.topic, gateway_id),
      machine_(limits_of(cfg_)) {
    link_ = std::make_unique<link>(*this, ++generation_);
}

mqtt_sink::~mqtt_sink() {
    try {
        if (link_->cli->is_connected())
            link_->cli->disconnect(0)->wait_for(std::chrono::milliseconds(500));
    } catch (...) {
        // Shutting down: the connection goes with the process.
    }
}

mqtt_sink::link::link(mqtt_sink& sink, uint64_t generation) : self(sink), gen(generation) {
    on_connect.l = this;
    const sink_config& c = sink.cfg_;
    // Paho counts every publish not yet written to the socket against max_buffered_messages
    // (default 100), connected or not; the sink's window is the real limit.
    mqtt::create_options copts(c.mqtt_version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1,
                               std::max(1000, 2 * c.inflight));
    cli = std::make_unique<mqtt::async_client>(c.uri, c.client_id, copts, nullptr);
    cli->set_callback(*this);
}

void mqtt_sink::link::post(sink_event::kind what, uint64_t seq, std::string text, int code) {
    sink_event e{self.id_, what, seq, std::move(text), code, gen};
    if (what == sink_event::acked) {
        // Quiet: the loop's ack timer (gateway.cc) collects acknowledgements every millisecond.
        self.mb_.post_quiet(std::move(e));
    } else {
        self.mb_.post(std::move(e));
    }
}

void mqtt_sink::connect() {
    mqtt::connect_options opts;
    opts.set_mqtt_version(cfg_.mqtt_version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1);
    // A clean session: after a reconnect the gateway resends from its own buffer in order,
    // and Paho must not interleave its own retries of the old in-flight messages.
    if (cfg_.mqtt_version == 5) {
        opts.set_clean_start(true);
    } else {
        opts.set_clean_session(true);
    }
    opts.set_keep_alive_interval(cfg_.keepalive_s);
    opts.set_connect_timeout(connect_timeout);
    opts.set_max_inflight(cfg_.inflight);
    const std::string offline =
        nlohmann::json{{"gateway_id", gateway_id_}, {"state", "offline"}}.dump();
    opts.set_will(mqtt::will_options(status_topic_, offline, 1, true));
    if (!cfg_.username.empty()) opts.set_user_name(cfg_.username);
    if (!cfg_.password.empty()) opts.set_password(cfg_.password);
    if (cfg_.tls) opts.set_ssl(ssl_options_for(*cfg_.tls));
    machine_.connecting();
    if (link_->cli->is_connected()) {
        // Paho still holds a connection we gave up on: close it cleanly (no last will) and
        // start over with the next attempt.
        try {
            link_->cli->disconnect(0);
        } catch (const mqtt::exception&) {
            // Gone meanwhile.
        }
        machine_.on_disconnected(sink_machine::clock::now());
        return;
    }
    if (link_->used) link_ = std::make_unique<link>(*this, ++generation_);  // see link
    link_->used = true;
    try {
        link_->cli->connect(opts, nullptr, link_->on_connect);
    } catch (const mqtt::exception& e) {
        last_error_ = e.what();
        machine_.on_disconnected(sink_machine::clock::now());
    }
}

void mqtt_sink::link::connect_listener::on_success(const mqtt::token& tok) {
    // An MQTT 5 broker caps our in-flight publishes with Receive Maximum (Mosquitto: its
    // max_inflight_messages, 20 by default) and disconnects a client that exceeds it.
    uint64_t receive_max = 0;
    try {
        mqtt::properties props = tok.get_connect_response().get_properties();
        if (props.contains(mqtt::property::RECEIVE_MAXIMUM)) {
            receive_max = mqtt::get<uint16_t>(props.get(mqtt::property::RECEIVE_MAXIMUM));
        }
    } catch (const std::exception&) {
        // MQTT 3.1.1 has no such property.
    }
    l->post(sink_event::connected, receive_max, {});
}

void mqtt_sink::link::connect_listener::on_failure(const mqtt::token& tok) {
    std::string why = describe(tok);
    if (l->self.cfg_.tls && tok.get_return_code() == MQTTASYNC_FAILURE) {
        why =
            "TLS connection failed: broker unreachable, or the handshake failed (server "
            "certificate not signed by tls.ca_file, name mismatch, or client certificate "
            "refused)";
    }
    l->post(sink_event::connect_failed, 0, why);
}

void mqtt_sink::link::connection_lost(const std::string& cause) {
    post(sink_event::lost, 0, cause.empty() ? "connection lost" : cause);
}

void mqtt_sink::link::on_success(const mqtt::token& tok) {
    post(sink_event::acked, reinterpret_cast<uintptr_t>(tok.get_user_context()), {});
}

void mqtt_sink::link::on_failure(const mqtt::token& tok) {
    post(sink_event::publish_failed, reinterpret_cast<uintptr_t>(tok.get_user_context()),
         describe(tok), static_cast<int>(tok.get_reason_code()));
}

void mqtt_sink::force_reconnect(const std::string& why) {
    log::get("sink")->warn("{}: {}; reconnecting", cfg_.name, why);
    last_error_ = why;
    machine_.on_disconnected(sink_machine::clock::now());
    try {
        link_->cli->disconnect(0);
    } catch (const mqtt::exception&) {
        // Already disconnected.
    }
}

void mqtt_sink::handle(sink_event& e) {
    if (e.gen != link_->gen) return;  // from a client replaced since, see link
    auto lg = log::get("sink");
    if (stopping_ && e.what != sink_event::acked) {
        // Retired or shutting down: a connect that completes now is closed at once. Acks still
        // count, so that the final commit removes everything the cloud has.
        if (e.what == sink_event::connected) {
            try {
                link_->cli->disconnect(0);
            } catch (const mqtt::exception&) {
                // Not connected after all.
            }
        }
        return;
    }
    switch (e.what) {
        case sink_event::connected:
            // Paho C++ 1.2 over Paho C 1.3 may report one connect twice.
            if (stopping_ || machine_.connected()) return;
            machine_.on_connected(static_cast<size_t>(e.seq));
            last_error_.clear();
            lg->info("{}: connected to {} (window {})", cfg_.name, cfg_.uri, machine_.window());
            if (!last_status_.empty()) publish_status(last_status_);
            break;
        case sink_event::connect_failed:
        case sink_event::lost: {
            if (e.what == sink_event::lost ? !machine_.connected() : !machine_.is_connecting())
                return;
            machine_.on_disconnected(sink_machine::clock::now());
            // A TLS error reported just before the failure says more than Paho's code.
            if (e.what == sink_event::lost || last_error_.rfind("TLS", 0) != 0)
                last_error_ = e.text;
            if (log_failure(machine_.failures())) {
                lg->warn("{}: {} {}: {} (attempt {}), retrying with backoff", cfg_.name,
                         e.what == sink_event::lost ? "lost" : "cannot connect to", cfg_.uri,
                         last_error_, machine_.failures());
            }
            break;
        }
        case sink_event::acked:
            if (machine_.on_ack(e.seq)) {
                ++acked_;
                cnt_.acked.fetch_add(1, std::memory_order_relaxed);
            }
            break;
        case sink_event::publish_failed:
            cnt_.errors_publish.fetch_add(1, std::memory_order_relaxed);
            if (e.code >= 0x80 && machine_.connected()) {
                // The broker refused this one message (not authorized, quota, topic name...)
                // and kept the connection. Retrying it would block every row behind it for
                // ever, so it is counted, logged and let go.
                if (machine_.on_ack(e.seq)) {
                    cnt_.rejected.fetch_add(1, std::memory_order_relaxed);
                    if (reject_log_.allow()) {
                        lg->error("{}: the broker rejected seq {} ({}); dropped, {} so far",
                                  cfg_.name, e.seq, e.text, reject_log_.count());
                    }
                }
                break;
            }
            if (machine_.connected())
                force_reconnect("publish of seq " + std::to_string(e.seq) + " failed: " + e.text);
            break;
    }
}

void mqtt_sink::on_live(const storage::stored_row& row) {
    if (!(row.sinks & (uint64_t{1} << bit_))) return;
    machine_.on_live(storage::stored_row(row));
}

void mqtt_sink::pump() {
    if (stopping_) return;
    const auto now = sink_machine::clock::now();
    if (machine_.connect_overdue(now, connect_timeout + std::chrono::seconds(5))) {
        // Paho never answered the attempt; do not wait for it forever.
        last_error_ = "connect attempt got no answer";
        machine_.on_disconnected(now);
    }
    if (machine_.wants_connect(now)) connect();
    while (machine_.connected()) {
        if (machine_.wants_read()) {
            read_scratch_.clear();
            storage::buffer::read_result r;
            try {
                r = buf_.read(bit_, machine_.read_after(), machine_.limits().batch,
                              machine_.read_budget(), read_scratch_);
            } catch (const std::exception& e) {
                cnt_.errors_buffer.fetch_add(1, std::memory_order_relaxed);
                log::get("sink")->error("{}: reading the buffer failed: {}", cfg_.name, e.what());
                return;
            }
            machine_.on_read(std::move(read_scratch_), r.vouched, r.complete);
        }
        const storage::stored_row* row = machine_.next();
        if (!row) return;
        auto msg = mqtt::message::create(topic_.render(row->topic, row->seq), row->payload.data(),
                                         row->payload.size(), cfg_.qos, false);
        if (cfg_.mqtt_version == 5) {
            mqtt::properties props;
            props.add(mqtt::property(mqtt::property::USER_PROPERTY, "egw-gateway", gateway_id_));
            props.add(
                mqtt::property(mqtt::property::USER_PROPERTY, "egw-seq", std::to_string(row->seq)));
            msg->set_properties(std::move(props));
        }
        try {
            link_->cli->publish(msg, reinterpret_cast<void*>(static_cast<uintptr_t>(row->seq)),
                                *link_);
        } catch (const mqtt::exception& e) {
            const int rc = e.get_return_code();
            if (rc == MQTTASYNC_MAX_MESSAGES_INFLIGHT) {
                // Paho's own in-flight limit is below our window: use what it allows.
                machine_.shrink_window();
                return;
            }
            if (rc == MQTTASYNC_MAX_BUFFERED_MESSAGES) return;  // Paho's queue is full: next ack

            cnt_.errors_publish.fetch_add(1, std::memory_order_relaxed);
            if (rc == MQTTASYNC_DISCONNECTED) {
                // Paho already knows the connection is gone; connection_lost is on its way.
                last_error_ = "connection lost";
                machine_.on_disconnected(sink_machine::clock::now());
                return;
            }
            force_reconnect(std::string("publish failed: ") + e.what());
            return;
        }
        machine_.sent();
        ++sent_;
        cnt_.sent.fetch_add(1, std::memory_order_relaxed);
    }
}

void mqtt_sink::publish_status(const std::string& json) {
    last_status_ = json;
    if (!machine_.connected()) return;
    try {
        // QoS 0 and no listener: status is best effort, repeated every period, and must not
        // take one of the broker's Receive Maximum slots from the data window.
        link_->cli->publish(status_topic_, json.data(), json.size(), 0, true);
    } catch (const mqtt::exception&) {
        // Next period publishes it again.
    }
}

void mqtt_sink::stop(const std::string& offline_status, std::chrono::milliseconds budget) {
    stopping_ = true;
    if (!machine_.connected()) {
        // An attempt may be under way; handle() closes it if it succeeds later.
        try {
            if (link_->cli->is_connected()) link_->cli->disconnect(0);
        } catch (const mqtt::exception&) {
            // Nothing to close.
        }
        return;
    }
    try {
        link_->cli->publish(status_topic_, offline_status.data(), offline_status.size(), 1, true)
            ->wait_for(budget / 2);
        link_->cli->disconnect(static_cast<int>(budget.count() / 2))->wait_for(budget / 2);
    } catch (const mqtt::exception& e) {
        log::get("sink")->warn("{}: disconnect: {}", cfg_.name, e.what());
    }
}

void mqtt_sink::tick(double seconds) {
    if (seconds <= 0) return;
    double now_rate = static_cast<double>(acked_ - acked_at_last_tick_) / seconds;
    acked_at_last_tick_ = acked_;
    rate_ = rate_ == 0 ? now_rate : 0.7 * rate_ + 0.3 * now_rate;
}

nlohmann::json mqtt_sink::status() {
    const auto& t = buf_.for_sink(bit_);
    int64_t rows = t.rows.load();
    double oldest_age = 0;
    if (rows > 0) {
        try {
            int64_t ts = buf_.oldest_ts(bit_, machine_.acked_through());
            if (ts >= 0) oldest_age = static_cast<double>(unix_ms() - ts) / 1000.0;
        } catch (const std::exception&) {
            // Status stays useful without the age.
        }
    }
    nlohmann::json eta = nullptr;  // unknown: offline, or no delivery rate measured yet
    if (rows == 0) {
        eta = 0;
    } else if (machine_.connected() && rate_ > 0.5) {
        eta = static_cast<double>(rows) / rate_;
    }
    return {{"state", to_string(machine_.state())},
            {"connected", machine_.connected()},
            {"uri", cfg_.uri},
            {"rows_waiting", rows},
            {"bytes_waiting", t.bytes.load()},
            {"oldest_age_s", oldest_age},
            {"eta_s", eta},
            {"sent", sent_},
            {"acked", acked_},
            {"rate_msg_s", rate_},
            {"inflight", machine_.inflight()},
            {"window", machine_.window()},
            {"reconnects", machine_.reconnects()},
            {"last_error", last_error_}};
}

}  // namespace egw
