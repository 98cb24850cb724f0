// SPDX-License-Identifier: Apache-2.0
#include "gateway/sinks/mqtt_sink.h"

#include <cctype>
#include <charconv>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "gateway/log.h"
#include "gateway/sinks/ndjson.h"

namespace egw {
namespace {

int64_t unix_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

bool is_v5(const sink_config& c) { return c.mqtt_version == 5; }

sink_limits limits_of(const sink_config& c) {
    sink_limits l;
    l.window = static_cast<size_t>(c.inflight);
    l.batch = static_cast<size_t>(c.batch);
    l.live_cap = std::max<size_t>(4096, 4 * l.batch);
    l.backoff_initial = std::chrono::milliseconds(c.backoff.initial_ms);
    l.backoff_max = std::chrono::milliseconds(c.backoff.max_ms);
    return l;
}

// Paho C takes `char*` for strings it only reads.
MQTTLenString len_string(std::string_view s) {
    return {static_cast<int>(s.size()), const_cast<char*>(s.data())};
}

MQTTProperty user_property(std::string_view name, std::string_view value) {
    MQTTProperty p{};
    p.identifier = MQTTPROPERTY_CODE_USER_PROPERTY;
    p.value.data = len_string(name);
    p.value.value = len_string(value);
    return p;
}

// Whether MQTT 5 takes `s` as a UTF-8 string (Content Type, user property key or value):
// well-formed UTF-8, at most 65535 bytes, and no control character (U+0000 is forbidden; brokers
// such as Mosquitto also refuse U+0001..U+001F and U+007F..U+009F and disconnect the client).
bool mqtt_string_ok(std::string_view s) {
    if (s.size() > 65535 || !ndjson::is_utf8(s)) return false;
    for (size_t i = 0; i < s.size(); ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x20 || c == 0x7f) return false;
        if (c == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) <= 0x9f)
            return false;  // U+0080..U+009F
    }
    return true;
}

// Paho's text for one of its return codes. MQTTAsync_strerror formats codes it does not know
// into a static buffer, which two threads must not share.
std::string paho_error(int code) {
    if (code <= MQTTASYNC_FAILURE && code >= MQTTASYNC_MAX_BUFFERED)
        return MQTTAsync_strerror(code);
    return "error " + std::to_string(code);
}

// How a failed connect or publish is told: the MQTT 5 reason code or the MQTT 3.1.1 CONNACK
// code (Paho passes either in `code` for a refused connection, and a PUBACK's reason in
// `reason`), else what Paho's return code means; then Paho's own text when it gives one.
std::string describe_failure(int code, int reason, const char* message) {
    static constexpr const char* connack_codes[] = {"",
                                                    "unacceptable protocol version",
                                                    "client identifier rejected",
                                                    "server unavailable",
                                                    "bad user name or password",
                                                    "not authorized"};
    if (reason < 0x80 && code >= 0x80) reason = code;
    std::string text;
    if (reason >= 0x80) {
        const char* name = MQTTReasonCode_toString(static_cast<MQTTReasonCodes>(reason));
        text = "refused with reason " + std::to_string(reason) +
               (name ? std::string(": ") + name : "");
    } else if (code >= 1 && code <= 5) {
        text = std::string("connection refused: ") + connack_codes[code];
    } else if (code == MQTTASYNC_FAILURE) {
        text = "connection failed (broker unreachable, refused, or TLS handshake failed)";
    } else {
        text = paho_error(code);
    }
    if (message && *message) text += std::string(" (") + message + ")";
    return text;
}

// The reason in one of OpenSSL's error lines, "<thread>:error:<code>:<library>:<function>:
// <reason>:<file>:<line>:", e.g. "certificate verify failed"; the whole line if it has another
// shape.
std::string openssl_reason(std::string_view line) {
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back())))
        line.remove_suffix(1);
    std::string_view rest = line;
    for (int field = 0; field < 5; ++field) {
        const auto colon = rest.find(':');
        if (colon == std::string_view::npos) return std::string(line);
        if (field == 1 && rest.substr(0, colon) != "error") return std::string(line);
        rest.remove_prefix(colon + 1);
    }
    const auto colon = rest.find(':');
    return std::string(colon == std::string_view::npos ? rest : rest.substr(0, colon));
}

}  // namespace

void parse_mqtt_sink(const nlohmann::json& s, const std::string& path, const config& c,
                     sink_config& k, std::vector<config_problem>& problems) {
    k.uri = s.at("uri").get<std::string>();
    k.client_id = s.value("client_id", c.gateway_id + "-" + k.name);
    k.topic = s.value("topic", k.topic);
    k.qos = s.value("qos", k.qos);
    k.mqtt_version = s.value("mqtt_version", k.mqtt_version);
    k.inflight = s.value("inflight", k.inflight);
    k.batch = s.value("batch", k.batch);
    k.keepalive_s = s.value("keepalive_s", k.keepalive_s);
    k.username = s.value("username", "");
    k.password = s.value("password", "");
    if (s.contains("backoff")) {
        k.backoff.initial_ms = s["backoff"].value("initial_ms", k.backoff.initial_ms);
        k.backoff.max_ms = s["backoff"].value("max_ms", k.backoff.max_ms);
        if (k.backoff.max_ms < k.backoff.initial_ms) {
            problems.push_back({path + ".backoff.max_ms", "must be >= initial_ms"});
        }
    }
    if (s.contains("tls")) k.tls = read_tls(s["tls"], path + ".tls", problems);
    if (auto p = mqtt_uri_problem(k.uri, k.tls.has_value()); !p.empty()) {
        problems.push_back({path + ".uri", p});
    }
    k.uri = paho_uri(k.uri);
    // ssl:// without a tls section: verify the server against the system's CA store.
    if (k.uri.rfind("ssl://", 0) == 0 && !k.tls) k.tls = tls_config{};
    try {
        topic_template(k.topic, c.gateway_id);
    } catch (const std::invalid_argument& e) {
        problems.push_back({path + ".topic", e.what()});
    }
}

mqtt_sink::mqtt_sink(int id, sink_config cfg, const std::string& gateway_id, int bit,
                     storage::buffer& buf, counters& cnt, mailbox<event>& mb)
    : sink(id, std::move(cfg), bit),
      gateway_id_(gateway_id),
      status_topic_("gateways/" + gateway_id + "/status"),
      buf_(buf),
      cnt_(cnt),
      mb_(mb),
      topic_(cfg_.topic, gateway_id),
      machine_(limits_of(cfg_)) {
    link_ = std::make_unique<link>(*this, ++generation_);
}

mqtt_sink::~mqtt_sink() {
    if (link_->connected()) link_->disconnect(std::chrono::milliseconds(500));
}

// --- link: one Paho client ------------------------------------------------------------------
// The captureless lambdas below are Paho's callbacks (Paho threads). Paho C wants the MQTT 5
// flavour of the success and failure callbacks on an MQTT 5 client and the plain one otherwise.

mqtt_sink::link::link(mqtt_sink& sink, uint64_t generation) : self(sink), gen(generation) {
    const sink_config& c = sink.cfg_;
    MQTTAsync_createOptions copts = MQTTAsync_createOptions_initializer;
    copts.MQTTVersion = is_v5(c) ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
    // Paho counts every publish not yet written to the socket against this, connected or
    // not; the sink's window is the real limit.
    copts.maxBufferedMessages = std::max(1000, 2 * c.inflight);
    int rc = MQTTAsync_createWithOptions(&cli, c.uri.c_str(), c.client_id.c_str(),
                                         MQTTCLIENT_PERSISTENCE_NONE, nullptr, &copts);
    if (rc != MQTTASYNC_SUCCESS) {
        throw std::runtime_error("sink " + c.name + ": cannot create an MQTT client for " + c.uri +
                                 ": " + paho_error(rc));
    }
    rc = MQTTAsync_setCallbacks(
        cli, this,
        [](void* ctx, char* cause) {
            static_cast<link*>(ctx)->post(sink_event::lost, 0,
                                          cause && *cause ? cause : "connection lost");
        },
        message_arrived, nullptr);
    if (rc != MQTTASYNC_SUCCESS) {
        MQTTAsync_destroy(&cli);
        throw std::runtime_error("sink " + c.name + ": " + paho_error(rc));
    }
}

mqtt_sink::link::~link() { MQTTAsync_destroy(&cli); }

void mqtt_sink::link::post(sink_event::kind what, uint64_t seq, std::string text, int code,
                           int32_t slot_index) {
    sink_event e{self.id_, what, seq, std::move(text), code, gen, slot_index};
    if (what == sink_event::acked) {
        // Quiet: the loop's ack timer (gateway.cc) collects acknowledgements every millisecond.
        self.mb_.post_quiet(std::move(e));
    } else {
        self.mb_.post(std::move(e));
    }
}

mqtt_sink::link::slot* mqtt_sink::link::take_slot(uint64_t seq) {
    if (free_slots.empty()) {
        slots.push_back(slot{this, static_cast<uint32_t>(slots.size()), seq});
        return &slots.back();
    }
    slot* s = &slots[static_cast<size_t>(free_slots.back())];
    free_slots.pop_back();
    s->seq = seq;
    return s;
}

void mqtt_sink::link::release_slot(int32_t index) {
    if (index >= 0) free_slots.push_back(index);
}

void mqtt_sink::link::disconnect(std::chrono::milliseconds wait) {
    const bool v5 = is_v5(self.cfg_);
    MQTTAsync_disconnectOptions o = MQTTAsync_disconnectOptions_initializer;
    if (v5) o = MQTTAsync_disconnectOptions_initializer5;  // reason 0: no last will
    o.timeout = static_cast<int>(wait.count());            // for in-flight publishes to complete
    o.context = this;
    if (wait.count() > 0) {
        if (v5) {
            o.onSuccess5 = [](void* ctx, MQTTAsync_successData5*) { disconnected(ctx); };
            o.onFailure5 = [](void* ctx, MQTTAsync_failureData5*) { disconnected(ctx); };
        } else {
            o.onSuccess = [](void* ctx, MQTTAsync_successData*) { disconnected(ctx); };
            o.onFailure = [](void* ctx, MQTTAsync_failureData*) { disconnected(ctx); };
        }
    }
    std::unique_lock lock(mu);
    disconnect_done = false;
    lock.unlock();
    if (MQTTAsync_disconnect(cli, &o) != MQTTASYNC_SUCCESS || wait.count() == 0) return;
    lock.lock();
    // Paho waits up to `timeout` for in-flight publishes, then closes: allow it a little more.
    cv.wait_for(lock, wait + std::chrono::milliseconds(100), [this] { return disconnect_done; });
}

void mqtt_sink::link::disconnected(void* ctx) {
    auto* l = static_cast<link*>(ctx);
    std::lock_guard lock(l->mu);
    l->disconnect_done = true;
    l->cv.notify_all();
}

void mqtt_sink::connect() {
    const bool v5 = is_v5(cfg_);
    machine_.connecting();
    if (link_->connected()) {
        // Paho still holds a connection we gave up on: close it cleanly (no last will) and
        // start over with the next attempt.
        link_->disconnect();
        machine_.on_disconnected(sink_machine::clock::now());
        return;
    }
    if (link_->used) {
        // See link. Destroying the old client closes its socket, and once MQTTAsync_destroy
        // returns none of its callbacks runs (they all run under Paho's global mutex).
        auto fresh = std::make_unique<link>(*this, generation_ + 1);
        ++generation_;
        link_ = std::move(fresh);
    }
    link_->used = true;

    MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer;
    if (v5) {
        opts = MQTTAsync_connectOptions_initializer5;
        opts.cleanstart = 1;
    } else {
        opts.MQTTVersion = MQTTVERSION_3_1_1;
        // A clean session: after a reconnect the gateway resends from its own buffer in
        // order, and Paho must not interleave its own retries of the old in-flight messages.
        opts.cleansession = 1;
    }
    opts.keepAliveInterval = cfg_.keepalive_s;
    opts.connectTimeout = static_cast<int>(connect_timeout.count());
    opts.maxInflight = cfg_.inflight;
    const std::string offline =
        nlohmann::json{{"gateway_id", gateway_id_}, {"state", "offline"}}.dump();
    MQTTAsync_willOptions will = MQTTAsync_willOptions_initializer;
    will.topicName = status_topic_.c_str();
    will.message = offline.c_str();
    will.qos = 1;
    will.retained = 1;
    // The sibling of a priority sink leaves the gateway's status to its main sink.
    if (!cfg_.priority_sibling) opts.will = &will;
    if (!cfg_.username.empty()) opts.username = cfg_.username.c_str();
    if (!cfg_.password.empty()) opts.password = cfg_.password.c_str();
    MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
    if (cfg_.tls) {
        const tls_config& t = *cfg_.tls;
        if (!t.ca_file.empty()) ssl.trustStore = t.ca_file.c_str();
        if (!t.cert_file.empty()) ssl.keyStore = t.cert_file.c_str();
        if (!t.key_file.empty()) ssl.privateKey = t.key_file.c_str();
        ssl.enableServerCertAuth = t.verify ? 1 : 0;
        ssl.verify = t.verify ? 1 : 0;  // the host name, too
        // OpenSSL's own words for a failed handshake ("certificate verify failed", ...).
        ssl.ssl_error_context = link_.get();
        ssl.ssl_error_cb = [](const char* str, size_t len, void* ctx) {
            auto* l = static_cast<link*>(ctx);
            std::lock_guard lock(l->mu);
            l->tls_error = openssl_reason(std::string_view(str, len));
            return 0;
        };
        opts.ssl = &ssl;
    }
    opts.context = link_.get();
    if (v5) {
        opts.onSuccess5 = [](void* ctx, MQTTAsync_successData5* d) {
            // An MQTT 5 broker caps our in-flight publishes with Receive Maximum (Mosquitto:
            // its max_inflight_messages, 20 by default) and disconnects a client that
            // exceeds it.
            uint64_t receive_max = 0;
            if (d && MQTTProperties_hasProperty(&d->properties, MQTTPROPERTY_CODE_RECEIVE_MAXIMUM))
                receive_max = static_cast<uint64_t>(MQTTProperties_getNumericValue(
                    &d->properties, MQTTPROPERTY_CODE_RECEIVE_MAXIMUM));
            static_cast<link*>(ctx)->post(sink_event::connected, receive_max, {});
        };
        opts.onFailure5 = [](void* ctx, MQTTAsync_failureData5* d) {
            static_cast<link*>(ctx)->on_connect_failed(
                d ? d->code : MQTTASYNC_FAILURE, d ? d->reasonCode : 0, d ? d->message : nullptr);
        };
    } else {
        opts.onSuccess = [](void* ctx, MQTTAsync_successData*) {
            static_cast<link*>(ctx)->post(sink_event::connected, 0, {});
        };
        opts.onFailure = [](void* ctx, MQTTAsync_failureData* d) {
            static_cast<link*>(ctx)->on_connect_failed(d ? d->code : MQTTASYNC_FAILURE, 0,
                                                       d ? d->message : nullptr);
        };
    }
    const int rc = MQTTAsync_connect(link_->cli, &opts);
    if (rc != MQTTASYNC_SUCCESS) {
        last_error_ = describe_failure(rc, 0, nullptr);
        machine_.on_disconnected(sink_machine::clock::now());
    }
}

void mqtt_sink::link::on_connect_failed(int code, int reason, const char* message) {
    std::string why = describe_failure(code, reason, message);
    if (self.cfg_.tls && code == MQTTASYNC_FAILURE) {
        std::lock_guard lock(mu);
        why = tls_error.empty()
                  ? "TLS connection failed: broker unreachable, or the handshake failed (server "
                    "certificate not signed by tls.ca_file, name mismatch, or client "
                    "certificate refused)"
                  : "TLS handshake failed: " + tls_error;
        tls_error.clear();
    }
    post(sink_event::connect_failed, 0, why);
}

void mqtt_sink::force_reconnect(const std::string& why) {
    log::get("sink")->warn("{}: {}; reconnecting", cfg_.name, why);
    last_error_ = why;
    machine_.on_disconnected(sink_machine::clock::now());
    link_->disconnect();
}

void mqtt_sink::handle(sink_event& e) {
    if (e.gen != link_->gen) return;  // from a client replaced since, see link
    link_->release_slot(e.slot);      // the publish's callbacks are done with it
    auto lg = log::get("sink");
    if (stopping_ && e.what != sink_event::acked) {
        // Retired or shutting down: a connect that completes now is closed at once. Acks still
        // count, so that the final commit removes everything the cloud has.
        if (e.what == sink_event::connected) link_->disconnect();
        return;
    }
    switch (e.what) {
        case sink_event::connected:
            if (stopping_ || machine_.connected()) return;
            machine_.on_connected(static_cast<size_t>(e.seq));
            connected_at_ = std::chrono::steady_clock::now();
            last_error_.clear();
            lg->info("{}: connected to {} (window {})", cfg_.name, cfg_.uri, machine_.window());
            if (!last_status_.empty()) publish_status(last_status_);
            subscribe_inbox();
            break;
        case sink_event::connect_failed:
        case sink_event::lost: {
            if (e.what == sink_event::lost ? !machine_.connected() : !machine_.is_connecting())
                return;
            machine_.on_disconnected(sink_machine::clock::now());
            if (cloud_inbox* inbox = inbox_.load()) inbox->on_subscribed(false);
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

// --- the downlink: what the cloud sends on this connection (cloud_inbox.h) ---------------

int mqtt_sink::message_arrived(void* ctx, char* topic, int topic_len, MQTTAsync_message* m) {
    auto* l = static_cast<link*>(ctx);
    if (cloud_inbox* inbox = l->self.inbox_.load()) {
        const size_t n = topic_len > 0 ? static_cast<size_t>(topic_len) : std::strlen(topic);
        inbox->on_message(l->self.bit_, std::string_view(topic, n), *m);
    }
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1;  // handled: Paho acknowledges it now
}

void mqtt_sink::set_inbox(cloud_inbox* inbox) {
    cloud_inbox* old = inbox_.exchange(inbox);
    if (old == inbox || !machine_.connected()) return;
    if (inbox) {
        subscribe_inbox();
        return;
    }
    // Removed on reload: stop taking what nobody would answer.
    const std::vector<std::string> filters = old->filters();
    std::vector<char*> topics;
    for (const auto& f : filters) topics.push_back(const_cast<char*>(f.c_str()));
    MQTTAsync_unsubscribeMany(link_->cli, static_cast<int>(topics.size()), topics.data(), nullptr);
    old->on_subscribed(false);
}

void mqtt_sink::subscribe_inbox() {
    cloud_inbox* inbox = inbox_.load();
    if (!inbox || cfg_.priority_sibling) return;
    const std::vector<std::string> filters = inbox->filters();
    std::vector<char*> topics;
    for (const auto& f : filters) topics.push_back(const_cast<char*>(f.c_str()));
    const std::vector<int> qos(filters.size(), 1);
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.context = link_.get();
    // MQTT 5: No Local (our own uplink never comes back on this connection) and Retain As
    // Published (a retained downlink shows as such, so that it can be refused).
    std::vector<MQTTSubscribe_options> options(filters.size(), MQTTSubscribe_options_initializer);
    for (auto& o : options) {
        o.noLocal = 1;
        o.retainAsPublished = 1;
    }
    if (is_v5(cfg_)) {
        ro.subscribeOptionsCount = static_cast<int>(options.size());
        ro.subscribeOptionsList = options.data();
        ro.onSuccess5 = [](void* ctx, MQTTAsync_successData5* d) {
            auto* l = static_cast<link*>(ctx);
            bool ok = true;
            for (int i = 0; d && i < d->alt.sub.reasonCodeCount; ++i)
                ok = ok && d->alt.sub.reasonCodes[i] < 0x80;
            if (!ok)
                log::get("sink")->error("{}: the cloud broker refused the downlink subscription",
                                        l->self.cfg_.name);
            if (cloud_inbox* in = l->self.inbox_.load()) in->on_subscribed(ok);
        };
        ro.onFailure5 = [](void* ctx, MQTTAsync_failureData5* d) {
            auto* l = static_cast<link*>(ctx);
            log::get("sink")->error(
                "{}: subscribing to the downlink: {}", l->self.cfg_.name,
                describe_failure(d ? d->code : MQTTASYNC_FAILURE, d ? d->reasonCode : 0,
                                 d ? d->message : nullptr));
        };
    } else {
        ro.onSuccess = [](void* ctx, MQTTAsync_successData*) {
            // Paho C gives 3.1.1's granted QoS list without its length; a refused filter shows
            // only in the broker's log (and in nothing arriving).
            auto* l = static_cast<link*>(ctx);
            if (cloud_inbox* in = l->self.inbox_.load()) in->on_subscribed(true);
        };
        ro.onFailure = [](void* ctx, MQTTAsync_failureData* d) {
            auto* l = static_cast<link*>(ctx);
            log::get("sink")->error(
                "{}: subscribing to the downlink: {}", l->self.cfg_.name,
                describe_failure(d ? d->code : MQTTASYNC_FAILURE, 0, d ? d->message : nullptr));
        };
    }
    const int rc = MQTTAsync_subscribeMany(link_->cli, static_cast<int>(topics.size()),
                                           topics.data(), const_cast<int*>(qos.data()), &ro);
    if (rc != MQTTASYNC_SUCCESS)
        log::get("sink")->error("{}: subscribing to the downlink: {}", cfg_.name, paho_error(rc));
}

void mqtt_sink::on_live(storage::stored_row& row, bool last) {
    if (!(row.sinks & (uint64_t{1} << bit_))) return;
    machine_.on_live(last ? std::move(row) : storage::stored_row(row));
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
        if (held_) return;  // the "!high" sibling goes first (docs/plugins.md, "Priority")
        const storage::stored_row* row = machine_.next();
        if (!row) return;
        if (const int rc = publish(*row); rc != MQTTASYNC_SUCCESS) {
            if (rc == MQTTASYNC_MAX_BUFFERED_MESSAGES) return;  // Paho's queue is full: next ack
            cnt_.errors_publish.fetch_add(1, std::memory_order_relaxed);
            if (rc == MQTTASYNC_DISCONNECTED) {
                // Paho already knows the connection is gone; connection_lost is on its way.
                last_error_ = "connection lost";
                machine_.on_disconnected(sink_machine::clock::now());
                return;
            }
            force_reconnect("publish failed: " + paho_error(rc));
            return;
        }
        machine_.sent();
        ++sent_;
        cnt_.sent.fetch_add(1, std::memory_order_relaxed);
    }
}

int mqtt_sink::publish(const storage::stored_row& row) {
    const std::string topic = topic_.render(row.topic, row.seq);
    link::slot* slot = link_->take_slot(row.seq);
    MQTTAsync_message msg = MQTTAsync_message_initializer;
    msg.payload = const_cast<char*>(row.payload.data());
    msg.payloadlen = static_cast<int>(row.payload.size());
    msg.qos = cfg_.qos;
    msg.retained = row.props.retain ? 1 : 0;
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.context = slot;
    // The user properties point into this frame: Paho copies them (and the payload) before
    // MQTTAsync_sendMessage returns.
    char seq_text[24];
    const auto seq_end = std::to_chars(std::begin(seq_text), std::end(seq_text), row.seq).ptr;
    if (is_v5(cfg_)) {
        props_.clear();
        props_.push_back(user_property("egw-gateway", gateway_id_));
        props_.push_back(user_property(
            "egw-seq", std::string_view(seq_text, static_cast<size_t>(seq_end - seq_text))));
        if (!row.props.empty()) add_row_properties(row);
        const int n = static_cast<int>(props_.size());
        msg.properties = MQTTProperties{n, n, 0, props_.data()};
        ro.onSuccess5 = [](void* ctx, MQTTAsync_successData5*) {
            auto* s = static_cast<link::slot*>(ctx);
            s->owner->post(sink_event::acked, s->seq, {}, 0, static_cast<int32_t>(s->index));
        };
        ro.onFailure5 = [](void* ctx, MQTTAsync_failureData5* d) {
            auto* s = static_cast<link::slot*>(ctx);
            // Only a PUBACK carries a reason; when a write fails Paho leaves it uninitialised.
            const int reason = d && d->code == MQTTASYNC_SUCCESS ? d->reasonCode : 0;
            s->owner->post(
                sink_event::publish_failed, s->seq,
                describe_failure(d ? d->code : MQTTASYNC_FAILURE, reason, d ? d->message : nullptr),
                reason, static_cast<int32_t>(s->index));
        };
    } else {
        ro.onSuccess = [](void* ctx, MQTTAsync_successData*) {
            auto* s = static_cast<link::slot*>(ctx);
            s->owner->post(sink_event::acked, s->seq, {}, 0, static_cast<int32_t>(s->index));
        };
        ro.onFailure = [](void* ctx, MQTTAsync_failureData* d) {
            auto* s = static_cast<link::slot*>(ctx);
            s->owner->post(
                sink_event::publish_failed, s->seq,
                describe_failure(d ? d->code : MQTTASYNC_FAILURE, 0, d ? d->message : nullptr), 0,
                static_cast<int32_t>(s->index));
        };
    }
    const int rc = MQTTAsync_sendMessage(link_->cli, topic.c_str(), &msg, &ro);
    if (rc != MQTTASYNC_SUCCESS) link_->release_slot(static_cast<int32_t>(slot->index));
    return rc;
}

// MQTT 5: the row's Content Type and user properties, after the gateway's own two. What MQTT 5
// cannot carry is left out, counted and logged, and the row still goes: a broker disconnects a
// client that sends a malformed string, so one bad property would stall the sink on its row
// forever. A user property named egw-gateway or egw-seq is left out too: those two are the
// gateway's, and a consumer de-duplicating on them must not see a second value.
void mqtt_sink::add_row_properties(const storage::stored_row& row) {
    const storage::row_props& p = row.props;
    size_t dropped = 0;
    if (!p.content_type.empty()) {
        if (mqtt_string_ok(p.content_type)) {
            MQTTProperty ct{};
            ct.identifier = MQTTPROPERTY_CODE_CONTENT_TYPE;
            ct.value.data = len_string(p.content_type);
            props_.push_back(ct);
        } else {
            ++dropped;
        }
    }
    for (const auto& [key, value] : p.user_properties) {
        if (key == "egw-gateway" || key == "egw-seq" || !mqtt_string_ok(key) ||
            !mqtt_string_ok(value)) {
            ++dropped;
            continue;
        }
        props_.push_back(user_property(key, value));
    }
    if (!dropped) return;
    props_dropped_ += dropped;
    if (props_log_.allow()) {
        log::get("sink")->warn(
            "{}: left {} propert{} of seq {} ({}) out of its publish: not a valid MQTT 5 string "
            "or a reserved egw- name; {} so far",
            cfg_.name, dropped, dropped == 1 ? "y" : "ies", row.seq, row.topic, props_dropped_);
    }
}

void mqtt_sink::publish_status(const std::string& json) {
    if (cfg_.priority_sibling) return;
    last_status_ = json;
    if (!machine_.connected()) return;
    // QoS 0 and no callbacks: status is best effort, repeated every period, and must not take
    // one of the broker's Receive Maximum slots from the data window. A failure is retried by
    // the next period.
    MQTTAsync_send(link_->cli, status_topic_.c_str(), static_cast<int>(json.size()), json.data(), 0,
                   1, nullptr);
}

void mqtt_sink::stop(const std::string& offline_status, std::chrono::milliseconds budget) {
    stopping_ = true;
    if (!machine_.connected()) {
        // An attempt may be under way; handle() closes it if it succeeds later.
        if (link_->connected()) link_->disconnect();
        return;
    }
    // The disconnect is queued behind this publish and waits up to its timeout for it to be
    // acknowledged (MQTTAsync_waitForCompletion would poll in steps of 100 ms).
    const int rc = cfg_.priority_sibling ? MQTTASYNC_SUCCESS
                                         : MQTTAsync_send(link_->cli, status_topic_.c_str(),
                                                          static_cast<int>(offline_status.size()),
                                                          offline_status.data(), 1, 1, nullptr);
    if (rc != MQTTASYNC_SUCCESS) {
        log::get("sink")->warn("{}: publishing the offline status: {}", cfg_.name, paho_error(rc));
    }
    link_->disconnect(budget / 2);
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
            {"properties_dropped", props_dropped_},
            {"last_error", last_error_}};
}

}  // namespace egw
