// SPDX-License-Identifier: Apache-2.0
#include "gateway/devices/relay.h"

#include <chrono>
#include <optional>

#include "gateway/devices/downlink_config.h"
#include "gateway/sinks/mqtt_sink.h"
#include "gateway/topic.h"

namespace egw::devices {
namespace {

int64_t unix_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// The value of the MQTT 5 user property `name`, if the message has it.
std::optional<std::string_view> user_property(const MQTTAsync_message& m, std::string_view name) {
    for (int i = 0; i < m.properties.count; ++i) {
        const MQTTProperty& p = m.properties.array[i];
        if (p.identifier != MQTTPROPERTY_CODE_USER_PROPERTY) continue;
        std::string_view key(p.value.data.data, static_cast<size_t>(p.value.data.len));
        if (key == name)
            return std::string_view(p.value.value.data, static_cast<size_t>(p.value.value.len));
    }
    return std::nullopt;
}

const char* status_name(storage::append_status s) {
    switch (s) {
        case storage::append_status::stored:
            return "stored";
        case storage::append_status::dropped_full:
        case storage::append_status::full:
            return "buffer full";
        case storage::append_status::too_large:
            return "larger than the buffer";
        case storage::append_status::no_sink:
            return "downlink reconfigured";
        case storage::append_status::disk_full:
            return "disk full";
        case storage::append_status::failed:
            break;
    }
    return "buffer error";
}

}  // namespace

downlink_relay::downlink_relay(uv_loop_t* loop, std::string gateway_id, storage::buffer& buf,
                               storage::buffer::stored_fn on_stored)
    : gateway_id_(std::move(gateway_id)),
      submit_topic_("gateways/" + gateway_id_ + "/tasks/submit"),
      cancel_topic_("gateways/" + gateway_id_ + "/tasks/cancel"),
      buf_(buf),
      on_stored_(std::move(on_stored)) {
    tasks_ = std::make_unique<mailbox<task_command>>(loop, [this](std::vector<task_command>& b) {
        for (const auto& t : b)
            if (on_task) on_task(t);
    });
}

downlink_relay::~downlink_relay() = default;

void downlink_relay::close() {
    if (tasks_) tasks_->close();
}

std::vector<std::string> downlink_relay::filters() const { return downlink_filters(gateway_id_); }

std::shared_ptr<const downlink_relay::policy> downlink_relay::snapshot() const {
    std::lock_guard lock(mu_);
    return policy_;
}

void downlink_relay::configure(const config& c, std::map<int, std::unique_ptr<sink>>& sinks) {
    std::shared_ptr<policy> p;
    if (c.downlink) {
        p = std::make_shared<policy>();
        p->sink = c.downlink->sink;
        p->allow = c.downlink->allow;
        p->local_bit = buf_.sink_bit(downlink_sink_name);
        for (const route& r : c.routes) {
            uplink_route u{r.from, {}};
            for (const std::string& to : r.to) {
                auto it = c.sinks.find(to);
                if (it != c.sinks.end() && it->second.type == "mqtt")
                    u.templates.push_back(it->second.topic);
            }
            if (!u.templates.empty()) p->routes.push_back(std::move(u));
        }
    }
    {
        std::lock_guard lock(mu_);
        policy_ = p;
    }
    for (auto& [id, s] : sinks) {
        if (mqtt_sink* m = s->as_mqtt())
            m->set_inbox(p && s->config().name == p->sink ? this : nullptr);
    }
    if (!p) subscribed_.store(false);
}

std::string downlink_relay::loop_reason(const policy& p, std::string_view local) const {
    for (const auto& r : p.routes) {
        if (!topic_matches(r.from, local)) continue;
        for (const auto& t : r.templates) {
            const std::string up = uplink_filter(t, local, gateway_id_);
            if (is_downlink_topic(up, gateway_id_))
                return "would loop: route from '" + r.from + "' sends it back to " + up;
        }
    }
    return {};
}

void downlink_relay::on_message(int sink_bit, std::string_view topic,
                                const MQTTAsync_message& m) noexcept {
    try {
        handle(sink_bit, topic, m);
    } catch (const std::exception& e) {
        store_errors_.fetch_add(1, std::memory_order_relaxed);
        if (error_log_.allow())
            log::get("downlink")->error("downlink: {}: {}", std::string(topic), e.what());
    } catch (...) {
        store_errors_.fetch_add(1, std::memory_order_relaxed);
    }
}

void downlink_relay::handle(int sink_bit, std::string_view topic, const MQTTAsync_message& m) {
    const auto p = snapshot();
    if (!p) return;  // the subscription of a downlink since removed: its last messages
    const std::string_view payload(static_cast<const char*>(m.payload),
                                   static_cast<size_t>(std::max(0, m.payloadlen)));
    if (topic == submit_topic_ || topic == cancel_topic_) {
        tasks_received_.fetch_add(1, std::memory_order_relaxed);
        tasks_->post(task_command{topic == submit_topic_, std::string(payload)});
        return;
    }
    received_.fetch_add(1, std::memory_order_relaxed);
    // An uplink of this gateway that came back (a cloud bridge mirroring it into down/, or
    // another connection of ours): MQTT 5 carries the gateway id on everything the sinks send.
    if (user_property(m, "egw-gateway") == std::string_view(gateway_id_)) {
        refuse(sink_bit, topic, {}, "echo of the gateway's own uplink");
        return;
    }
    downlink_decision d =
        decide_downlink(p->allow, gateway_id_, topic, payload.size(), m.qos, m.retained != 0);
    if (!d.allowed) {
        refuse(sink_bit, topic, d.local_topic, d.reason);
        return;
    }
    if (std::string why = loop_reason(*p, d.local_topic); !why.empty()) {
        refuse(sink_bit, topic, d.local_topic, why);
        return;
    }
    auto r = buf_.append(encode_local_row(d.qos, d.local_topic), payload,
                         uint64_t{1} << p->local_bit, unix_ms(), on_stored_);
    if (r.status == storage::append_status::stored) {
        buffered_.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    if (error_log_.allow())
        log::get("downlink")
            ->error("downlink: storing {} for the local broker: {} {}", d.local_topic,
                    status_name(r.status), r.error);
    refuse(sink_bit, topic, d.local_topic, std::string("not stored: ") + status_name(r.status));
}

void downlink_relay::refuse(int sink_bit, std::string_view topic, std::string_view local_topic,
                            const std::string& reason) {
    auto starts = [&](std::string_view prefix) { return reason.rfind(prefix, 0) == 0; };
    std::atomic<uint64_t>& kind = reason == "not allowed"                  ? rejected_not_allowed_
                                  : starts("retained")                     ? rejected_retained_
                                  : starts("payload of")                   ? rejected_too_large_
                                  : starts("echo") || starts("would loop") ? rejected_loop_
                                                                           : rejected_other_;
    kind.fetch_add(1, std::memory_order_relaxed);
    if (refuse_log_.allow())
        log::get("downlink")
            ->warn("downlink: refused {}: {} ({} so far)", std::string(topic), reason,
                   refuse_log_.count());
    nlohmann::json answer = {{"topic", topic}, {"reason", reason}};
    if (!local_topic.empty()) answer["local_topic"] = local_topic;
    // Relative to the sink's topic template, like every row (gateways/{gw}/downlink/rejected
    // with the default template); outside down/#, so an answer never comes back as a downlink.
    auto r = buf_.append("downlink/rejected", answer.dump(), uint64_t{1} << sink_bit, unix_ms(),
                         on_stored_);
    if (r.status != storage::append_status::stored) {
        store_errors_.fetch_add(1, std::memory_order_relaxed);
        if (error_log_.allow())
            log::get("downlink")
                ->error("downlink: the answer to {} ({}) could not be stored: {} {}",
                        std::string(topic), reason, status_name(r.status), r.error);
    }
}

nlohmann::json downlink_relay::status() const {
    const auto p = snapshot();
    auto n = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
    return {{"enabled", p != nullptr},
            {"sink", p ? nlohmann::json(p->sink) : nlohmann::json(nullptr)},
            {"subscribed", subscribed_.load()},
            {"received", n(received_)},
            {"buffered", n(buffered_)},
            {"rejected",
             {{"not_allowed", n(rejected_not_allowed_)},
              {"retained", n(rejected_retained_)},
              {"too_large", n(rejected_too_large_)},
              {"loop", n(rejected_loop_)},
              {"other", n(rejected_other_)}}},
            {"tasks_received", n(tasks_received_)},
            {"store_errors", n(store_errors_)}};
}

}  // namespace egw::devices
