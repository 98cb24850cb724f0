// SPDX-License-Identifier: Apache-2.0
#include "gateway/devices/downlink_config.h"

#include "gateway/topic.h"

namespace egw::devices {
namespace {

using nlohmann::json;

bool is_mqtt(const config& c, const std::string& name) {
    auto it = c.sinks.find(name);
    return it != c.sinks.end() && it->second.type == "mqtt";
}

// Every mqtt sink (priority siblings included: they publish with the same template) that
// `names` sends to: the uplink topics of a route.
void check_uplink(const config& c, const std::string& filter, const std::vector<std::string>& names,
                  const std::string& path, std::vector<config_problem>& problems) {
    for (const std::string& name : names) {
        if (!is_mqtt(c, name)) continue;
        const std::string up = uplink_filter(c.sinks.at(name).topic, filter, c.gateway_id);
        if (auto p = uplink_loop_problem(up, c.gateway_id); !p.empty())
            problems.push_back({path, "through sink '" + name + "': " + p});
    }
}

}  // namespace

void read_downlink(const json& doc, config& c, std::vector<config_problem>& problems) {
    if (!doc.contains("downlink")) return;
    const json& d = doc["downlink"];
    downlink_config dl;
    dl.sink = d.value("sink", "");
    if (dl.sink.empty()) {
        std::vector<std::string> mqtt;
        for (const auto& [name, s] : c.sinks)
            if (s.type == "mqtt" && !s.priority_sibling) mqtt.push_back(name);
        if (mqtt.size() == 1) {
            dl.sink = mqtt.front();
        } else {
            problems.push_back({"downlink.sink", "name the mqtt sink that carries the downlink (" +
                                                     std::to_string(mqtt.size()) +
                                                     " mqtt sinks are configured)"});
        }
    } else if (!c.sinks.count(dl.sink)) {
        problems.push_back({"downlink.sink", "no sink named '" + dl.sink + "'"});
    } else if (!is_mqtt(c, dl.sink)) {
        problems.push_back({"downlink.sink", "sink '" + dl.sink + "' is not an mqtt sink"});
    }
    if (d.contains("allow")) {
        const json& allow = d["allow"];
        for (size_t i = 0; i < allow.size(); ++i) {
            allow_entry e;
            e.filter = allow[i].at("filter").get<std::string>();
            e.qos = allow[i].value("qos", e.qos);
            e.max_payload_bytes = allow[i].value("max_payload_bytes", e.max_payload_bytes);
            e.retain = allow[i].value("retain", e.retain);
            if (auto p = filter_problem(e.filter); !p.empty())
                problems.push_back({"downlink.allow[" + std::to_string(i) + "].filter", p});
            dl.allow.push_back(std::move(e));
        }
    }
    // No loops: nothing the gateway sends up may come back down (docs/devices.md, Loops).
    for (size_t i = 0; i < c.routes.size(); ++i) {
        const route& r = c.routes[i];
        const std::string path = "routes[" + std::to_string(i) + "]";
        check_uplink(c, r.from, r.to, path + ".from", problems);
        for (size_t j = 0; j < r.outputs.size(); ++j)
            check_uplink(c, r.outputs[j].filter, r.outputs[j].to,
                         path + ".outputs[" + std::to_string(j) + "].filter", problems);
    }

    // The local delivery target, with the local broker's connection settings.
    sink_config k;
    k.name = downlink_sink_name;
    k.type = downlink_sink_type;
    k.uri = c.local.uri;
    k.client_id = c.local.client_id + "-downlink";
    k.username = c.local.username;
    k.password = c.local.password;
    k.keepalive_s = c.local.keepalive_s;
    k.tls = c.local.tls;
    k.inflight = 32;
    k.batch = 256;
    k.backoff = {200, 5000};
    k.raw = {{"type", k.type},
             {"uri", k.uri},
             {"client_id", k.client_id},
             {"username", k.username},
             {"password", k.password},
             {"tls", doc["local"].value("tls", json())},
             {"keepalive_s", k.keepalive_s}};
    c.sinks.emplace(k.name, std::move(k));
    c.downlink = std::move(dl);
}

}  // namespace egw::devices
