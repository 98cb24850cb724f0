// SPDX-License-Identifier: Apache-2.0
#include "gateway/devices/service.h"

#include <algorithm>
#include <chrono>
#include <cstdint>

#include "gateway/devices/messages.h"
#include "gateway/log.h"
#include "gateway/paho.h"

namespace egw::devices {

namespace {

using json = nlohmann::json;

// Messages to devices Paho may hold unsent (see the constructor).
constexpr int k_max_buffered_to_devices = 1'000'000;

time_ms wall_now() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// devices/{id}/{rest...} -> id and the parts after it.
std::vector<std::string> split(const std::string& topic) {
    std::vector<std::string> parts;
    size_t start = 0;
    for (;;) {
        size_t slash = topic.find('/', start);
        parts.push_back(topic.substr(start, slash - start));
        if (slash == std::string::npos) break;
        start = slash + 1;
    }
    return parts;
}

// One uv_work_t carrying a closure to the worker pool and its completion back to the loop.
struct work {
    uv_work_t req{};
    std::function<void()> run, done;
    static void start(uv_loop_t* loop, std::function<void()> run, std::function<void()> done) {
        auto* w = new work{{}, std::move(run), std::move(done)};
        w->req.data = w;
        uv_queue_work(
            loop, &w->req, [](uv_work_t* r) { static_cast<work*>(r->data)->run(); },
            [](uv_work_t* r, int) {
                std::unique_ptr<work> owned(static_cast<work*>(r->data));
                owned->done();
            });
    }
};

// A task message with its MQTT 5 request/response properties (docs/devices.md): it expires with
// its attempt, the device answers on its state topic, and the Correlation Data names the attempt
// (`{task}/{attempt}`) for a device that answers through a generic request/response library.
mqtt::message_ptr task_publication(const std::string& topic, const device_command& c) {
    auto msg = mqtt::make_message(topic, c.payload, 1, false);
    mqtt::properties props;
    if (c.ttl_ms > 0) {
        // Whole seconds, rounded up: a message must not expire before its attempt does.
        const int64_t s = std::min<int64_t>((c.ttl_ms + 999) / 1000, INT32_MAX);
        props.add({mqtt::property::MESSAGE_EXPIRY_INTERVAL, static_cast<int32_t>(s)});
    }
    props.add({mqtt::property::RESPONSE_TOPIC, topic + "/state"});
    props.add({mqtt::property::CORRELATION_DATA, c.task + "/" + std::to_string(c.attempt)});
    msg->set_properties(std::move(props));
    return msg;
}

// Paho's action listener for connect: posts the outcome.
struct connect_listener : mqtt::iaction_listener {
    std::function<void(std::string)> failed;
    void on_success(const mqtt::token&) override {}
    void on_failure(const mqtt::token& tok) override { failed(describe(tok)); }
};

}  // namespace

service::service(options o) : o_(std::move(o)) {
    store_ = std::make_unique<store>(o_.db_path);
    const time_ms now = wall_now();
    size_t bad = store_->load(eng_, now);
    auto lg = log::get("devices");
    lg->info("devices: {} device(s), {} task(s) restored{}", eng_.devices().all().size(),
             eng_.tasks().size(), bad ? fmt::format(", {} unreadable row(s) skipped", bad) : "");
    // Tasks whose latest state may not have reached the buffer: append it again (same seq).
    for (const auto& [id, seq] : store_->unpublished()) {
        if (const task* t = eng_.find_task(id)) {
            pending_cloud_.push_back(
                {"tasks/" + id + "/state", task_state_message(*t, now).dump()});
            pending_.published.emplace_back(id, t->seq);
        }
    }
    mb_ = std::make_unique<mailbox<inbound>>(o_.loop,
                                             [this](std::vector<inbound>& b) { on_inbound(b); });
    std::string client_id = o_.local.client_id + "-devices";
    // MQTT 5, so that a task message carries Message Expiry, Response Topic and Correlation
    // Data (devices on 3.1.1 still receive it: the broker leaves the properties out for them).
    // Paho refuses a publish (-12) once 100 are waiting for its send thread, the default; one
    // loop turn can place many more (a device with a large max_concurrent coming online with
    // queued tasks, a burst of submits), and a refused task message would wait out its attempt
    // timeout. What waits here is bounded by the attempts in flight (one message each, plus
    // cancels and pings), so the limit is only a backstop.
    mqtt::create_options create(MQTTVERSION_5);
    create.set_max_buffered_messages(k_max_buffered_to_devices);
    cli_ = std::make_unique<mqtt::async_client>(o_.local.uri, client_id, create, nullptr);
    cli_->set_callback(*this);
}

service::~service() {
    try {
        if (cli_ && cli_->is_connected())
            cli_->disconnect(0)->wait_for(std::chrono::milliseconds(500));
    } catch (...) {
        // Shutting down: the connection goes with the process.
    }
}

void service::start() {
    timer_ = new uv_timer_t;
    uv_timer_init(o_.loop, timer_);
    timer_->data = this;
    reconnect_ = new uv_timer_t;
    uv_timer_init(o_.loop, reconnect_);
    reconnect_->data = this;
    connect();
    effects fx;
    eng_.tick(wall_now(), fx);
    apply(fx);
}

void service::stop() {
    stopping_ = true;
    for (uv_timer_t** t : {&timer_, &reconnect_}) {
        if (!*t) continue;
        uv_timer_stop(*t);
        uv_close(reinterpret_cast<uv_handle_t*>(*t),
                 [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
        *t = nullptr;
    }
    try {
        if (cli_ && cli_->is_connected())
            cli_->disconnect(0)->wait_for(std::chrono::milliseconds(500));
    } catch (...) {
    }
    // A write in flight finishes on the worker pool; what is still pending is written now, on
    // the loop thread, because the loop is about to end (shutdown may block).
    if (!writing_ && !pending_.empty()) {
        try {
            store_->write(pending_);
        } catch (const std::exception& e) {
            log::get("devices")->error("devices: writing the task table at shutdown: {}", e.what());
        }
    }
    if (mb_) mb_->close();
}

void service::connect() {
    if (stopping_) return;
    mqtt::connect_options opts;
    opts.set_mqtt_version(MQTTVERSION_5);
    opts.set_clean_start(true);  // the subscriptions are made again on every connect
    opts.set_keep_alive_interval(o_.local.keepalive_s);
    opts.set_connect_timeout(connect_timeout);
    if (!o_.local.username.empty()) opts.set_user_name(o_.local.username);
    if (!o_.local.password.empty()) opts.set_password(o_.local.password);
    if (o_.local.tls) opts.set_ssl(ssl_options_for(*o_.local.tls));
    if (!connect_listener_) {
        auto l = std::make_unique<connect_listener>();
        mailbox<inbound>* mb = mb_.get();
        l->failed = [mb](std::string why) {
            mb->post(inbound{inbound::connect_failed, {}, std::move(why)});
        };
        connect_listener_ = std::move(l);
    }
    try {
        cli_->connect(opts, nullptr, *connect_listener_);
    } catch (const mqtt::exception& e) {
        mb_->post(inbound{inbound::connect_failed, {}, e.what()});
    }
}

void service::subscribe() {
    auto filters = std::make_shared<mqtt::string_collection>();
    for (const char* f :
         {"devices/+/register", "devices/+/status", "devices/+/tasks/+/state", "devices/+/pong"})
        filters->push_back(f);
    try {
        cli_->subscribe(filters, std::vector<int>{1, 1, 1, 0});
    } catch (const mqtt::exception& e) {
        log::get("devices")->error("devices: subscribing: {}", e.what());
    }
}

void service::connected(const std::string&) { mb_->post(inbound{inbound::connected, {}, {}}); }

void service::connection_lost(const std::string& cause) {
    mb_->post(inbound{inbound::lost, {}, cause});
}

void service::message_arrived(mqtt::const_message_ptr msg) {
    // Paho's thread, called from C: nothing may escape.
    try {
        mb_->post(inbound{inbound::message, msg->get_topic(), msg->get_payload_str()});
    } catch (...) {
    }
}

void service::on_inbound(std::vector<inbound>& batch) {
    if (stopping_) return;
    auto lg = log::get("devices");
    for (auto& in : batch) {
        switch (in.what) {
            case inbound::connected:
                connected_ = true;
                lg->info("devices: connected to {}", o_.local.uri);
                subscribe();
                break;
            case inbound::connect_failed:
            case inbound::lost:
                connected_ = false;
                lg->warn("devices: local broker: {}", in.payload);
                if (reconnect_)
                    uv_timer_start(
                        reconnect_,
                        [](uv_timer_t* t) { static_cast<service*>(t->data)->connect(); }, 1000, 0);
                break;
            case inbound::message:
                try {
                    handle_message(in.topic, in.payload, wall_now());
                } catch (const std::exception& e) {
                    lg->error("devices: {}: {}", in.topic, e.what());
                }
                break;
        }
    }
}

void service::handle_message(const std::string& topic, const std::string& payload, time_ms now) {
    auto p = split(topic);
    if (p.size() < 3 || p[0] != "devices") return;
    const std::string& id = p[1];
    effects fx;
    if (p.size() == 3 && p[2] == "register") {
        auto r = eng_.on_register(id, payload, now, fx);
        if (!r.ok) {
            ++refused_registers_;
            log::get("devices")->warn("devices: register of {} refused: {}", id, r.error);
            try {
                if (connected_)
                    cli_->publish(topic + "/error", json{{"error", r.error}}.dump(), 1, false);
            } catch (const mqtt::exception&) {
            }
        }
    } else if (p.size() == 3 && p[2] == "status") {
        eng_.on_status(id, payload, now, fx);
    } else if (p.size() == 3 && p[2] == "pong") {
        eng_.on_pong(id, payload, now, fx);
    } else if (p.size() == 5 && p[2] == "tasks" && p[4] == "state") {
        std::string error;
        auto r = eng_.on_report(id, p[3], payload, now, fx, &error);
        if (r != engine::report_result::applied && r != engine::report_result::duplicate)
            log::get("devices")->info("devices: report from {} on {} not applied: {}", id, p[3],
                                      error);
    }
    apply(fx);
}

void service::apply(effects& fx) {
    const time_ms now = wall_now();
    for (const auto& c : fx.to_devices) {
        std::string topic = "devices/" + c.device;
        int qos = 1;
        if (c.what == device_command::kind::task) {
            topic += "/tasks/" + c.task;
        } else if (c.what == device_command::kind::cancel) {
            topic += "/tasks/" + c.task + "/cancel";
        } else {
            topic += "/ping";
            qos = 0;
        }
        if (!connected_) {
            // The attempt times out and moves on; the local broker being away is no loss here.
            ++publish_errors_;
            continue;
        }
        try {
            if (c.what == device_command::kind::task)
                cli_->publish(task_publication(topic, c));
            else
                cli_->publish(topic, c.payload, qos, false);
            ++published_to_devices_;
        } catch (const mqtt::exception& e) {
            ++publish_errors_;
            log::get("devices")->warn("devices: publishing {}: {}", topic, e.what());
        }
    }
    for (const auto& id : fx.tasks_changed)
        if (const task* t = eng_.find_task(id)) pending_.add_task(*t);
    for (const auto& id : fx.devices_changed) {
        if (const device* d = eng_.devices().find(id)) {
            pending_.add_device(*d, now);
            pending_cloud_.push_back({"devices/" + id, device_record(*d).dump()});
        }
    }
    for (const auto& s : fx.states) {
        const std::string task = s.value("task", "");
        pending_cloud_.push_back({"tasks/" + task + "/state", s.dump()});
        pending_.published.emplace_back(task, s.value("seq", uint64_t{0}));
    }
    flush();
    arm_timer();
}

// One batch at a time on the worker pool: the store, then the buffer, then published marks.
void service::flush() {
    if (writing_ || (pending_.empty() && pending_cloud_.empty())) return;
    writing_ = true;
    auto b = std::make_shared<batch>(std::move(pending_));
    auto rows = std::make_shared<std::vector<cloud_row>>(std::move(pending_cloud_));
    pending_ = batch{};
    pending_cloud_.clear();
    auto error = std::make_shared<std::string>();
    const uint64_t bits = o_.cloud_bits ? o_.cloud_bits() : 0;
    store* st = store_.get();
    storage::buffer* buf = o_.buf;
    auto on_stored = o_.on_stored;
    // Registry records (devices/{id}) are published retained, so that a cloud consumer that
    // subscribes later still gets each device's latest record; task states are not.
    static const storage::row_props retained = [] {
        storage::row_props p;
        p.retain = true;
        return p;
    }();
    work::start(
        o_.loop,
        [b, rows, error, bits, st, buf, on_stored] {
            try {
                batch first = *b;
                first.published.clear();
                st->write(first);
                if (bits) {
                    const int64_t ts = wall_now();
                    for (const auto& r : *rows) {
                        const bool record = r.topic.rfind("devices/", 0) == 0;
                        buf->append(r.topic, r.payload, bits, ts, on_stored,
                                    record ? &retained : nullptr);
                    }
                }
                if (!b->published.empty()) {
                    batch marks;
                    marks.published = b->published;
                    st->write(marks);
                }
            } catch (const std::exception& e) {
                *error = e.what();
            }
        },
        [this, b, rows, error] {
            writing_ = false;
            if (!error->empty()) {
                ++store_errors_;
                log::get("devices")->error("devices: writing the task table: {}", *error);
                // Keep it and try again with the next batch (a write is idempotent).
                for (auto& d : b->devices) pending_.devices.push_back(std::move(d));
                for (auto& t : b->tasks) pending_.tasks.push_back(std::move(t));
                for (auto& p : b->published) pending_.published.push_back(std::move(p));
                rows->insert(rows->end(), pending_cloud_.begin(), pending_cloud_.end());
                pending_cloud_ = std::move(*rows);
                if (timer_)
                    uv_timer_start(
                        timer_, [](uv_timer_t* t) { static_cast<service*>(t->data)->on_timer(); },
                        1000, 0);
                return;
            }
            if (!stopping_) flush();
        });
}

void service::arm_timer() {
    if (!timer_ || stopping_) return;
    time_ms next = eng_.next_wakeup();
    if (next == 0) next = wall_now() + 1000;
    int64_t delay = std::max<int64_t>(1, next - wall_now());
    uv_timer_start(
        timer_, [](uv_timer_t* t) { static_cast<service*>(t->data)->on_timer(); },
        static_cast<uint64_t>(std::min<int64_t>(delay, 1000)), 0);
}

void service::on_timer() {
    effects fx;
    eng_.tick(wall_now(), fx);
    apply(fx);
}

nlohmann::json service::devices_json() const {
    json out = json::array();
    for (const auto& [id, d] : eng_.devices().all()) {
        json r = device_record(*d);
        r["in_flight"] = d->in_flight;
        out.push_back(std::move(r));
    }
    return json{{"devices", out}};
}

nlohmann::json service::tasks_json(const nlohmann::json& req) const {
    const std::string id = req.value("id", "");
    if (!id.empty()) {
        const task* t = eng_.find_task(id);
        if (!t) return json{{"error", "no task " + id}};
        return json{{"task", task_document(*t)}};
    }
    const std::string state = req.value("state", "");
    json out = json::array();
    const time_ms now = wall_now();
    for (const auto& [tid, t] : eng_.tasks()) {
        if (!state.empty() && state != to_string(t.state)) continue;
        json r = task_state_message(t, now);
        r["type"] = t.spec.type;
        r["final"] = t.final;
        out.push_back(std::move(r));
    }
    return json{{"tasks", out}};
}

nlohmann::json service::submit(const std::string& payload) {
    effects fx;
    auto r = eng_.submit(payload, wall_now(), fx);
    apply(fx);
    if (!r.ok) return json{{"error", r.error}};
    return json{{"ok", true}, {"duplicate", r.duplicate}};
}

nlohmann::json service::cancel(const std::string& id) {
    effects fx;
    auto r = eng_.cancel(id, wall_now(), fx);
    apply(fx);
    if (!r.ok) return json{{"error", r.error}};
    return json{{"ok", true}};
}

void service::answer_refused(const std::string& what, const std::string& reason) {
    ++refused_cloud_commands_;
    log::get("devices")->warn("devices: {} from the cloud refused: {}", what, reason);
    pending_cloud_.push_back(
        {"downlink/rejected",
         json{{"topic", "gateways/" + o_.gateway_id + "/tasks/" + what}, {"reason", reason}}
             .dump()});
}

void service::cloud_submit(std::string_view payload) {
    effects fx;
    auto r = eng_.submit(payload, wall_now(), fx);
    if (!r.ok) answer_refused("submit", r.error);
    apply(fx);
}

void service::cloud_cancel(std::string_view payload) {
    auto id = parse_cancel(payload);
    if (!id) {
        answer_refused("cancel", id.error);
        flush();
        return;
    }
    auto r = cancel(*id.value);
    if (r.contains("error")) {
        answer_refused("cancel", r.value("error", ""));
        flush();
    }
}

nlohmann::json service::status() const {
    const auto& rc = eng_.devices().counters();
    const auto& tc = eng_.counters();
    size_t online = 0;
    for (const auto& [id, d] : eng_.devices().all()) online += d->online ? 1 : 0;
    size_t active = 0;
    for (const auto& [id, t] : eng_.tasks()) active += t.final ? 0 : 1;
    return json{{"connected", connected_},
                {"devices", eng_.devices().all().size()},
                {"online", online},
                {"registered", rc.registered},
                {"register_refused", refused_registers_},
                {"cloud_commands_rejected", refused_cloud_commands_},
                {"stale_wills", rc.stale_wills},
                {"pongs", rc.pongs},
                {"tasks",
                 {{"total", eng_.tasks().size()},
                  {"active", active},
                  {"queued", eng_.queued()},
                  {"submitted", tc.submitted},
                  {"duplicate_submits", tc.duplicate_submits},
                  {"invalid_submits", tc.invalid_submits},
                  {"dispatched", tc.dispatched},
                  {"retried", tc.retried},
                  {"succeeded", tc.succeeded},
                  {"failed", tc.failed},
                  {"timed_out", tc.timed_out},
                  {"rejected", tc.rejected},
                  {"lost", tc.lost},
                  {"canceled", tc.canceled},
                  {"expired", tc.expired},
                  {"not_given_reports", tc.not_given_reports},
                  {"stale_reports", tc.stale_reports}}},
                {"published_to_devices", published_to_devices_},
                {"publish_errors", publish_errors_},
                {"store_errors", store_errors_}};
}

}  // namespace egw::devices
