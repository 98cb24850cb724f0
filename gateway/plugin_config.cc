// SPDX-License-Identifier: Apache-2.0
// The plugin keys of the config (plugins.*, routes[].via / priority / outputs) and the
// --check-config pass that loads each plugin and creates each instance once.
#include <sys/stat.h>

#include "gateway/config.h"
#include "gateway/topic.h"
#include "plugins/host/runtimes.h"

namespace egw {

void read_plugins(const nlohmann::json& doc, config& c, std::vector<config_problem>& problems) {
    (void)problems;
    if (!doc.contains("plugins")) return;
    const nlohmann::json& p = doc["plugins"];
    if (p.contains("dirs")) c.plugins.dirs = p["dirs"].get<std::vector<std::string>>();
    if (!p.contains("instances")) return;
    for (const auto& [name, inst] : p["instances"].items()) {
        plugin_instance_config ic;
        ic.name = name;
        ic.plugin = inst.at("plugin").get<std::string>();
        ic.isolation = inst.value("isolation", ic.isolation);
        if (inst.contains("config")) ic.config = inst["config"];
        c.plugins.instances.emplace(name, std::move(ic));
    }
}

void read_route_plugins(const nlohmann::json& r, const std::string& path, const config& c,
                        route& out, std::vector<config_problem>& problems) {
    if (r.contains("via")) {
        const auto& via = r["via"];
        for (size_t j = 0; j < via.size(); ++j) {
            std::string name = via[j].get<std::string>();
            if (!c.plugins.instances.count(name)) {
                problems.push_back({path + ".via[" + std::to_string(j) + "]",
                                    "no plugin instance named '" + name + "'"});
            }
            out.via.push_back(std::move(name));
        }
    }
    out.high_priority = r.value("priority", "normal") == "high";
    if (r.contains("outputs")) {
        const auto& outs = r["outputs"];
        for (size_t k = 0; k < outs.size(); ++k) {
            const std::string op = path + ".outputs[" + std::to_string(k) + "]";
            route_output o;
            o.filter = outs[k].at("filter").get<std::string>();
            if (auto pr = filter_problem(o.filter); !pr.empty())
                problems.push_back({op + ".filter", pr});
            const auto& to = outs[k].at("to");
            for (size_t j = 0; j < to.size(); ++j) {
                std::string sink = to[j].get<std::string>();
                if (!c.sinks.count(sink)) {
                    problems.push_back(
                        {op + ".to[" + std::to_string(j) + "]", "no sink named '" + sink + "'"});
                }
                o.to.push_back(std::move(sink));
            }
            out.outputs.push_back(std::move(o));
        }
        if (out.via.empty() && !out.outputs.empty()) {
            problems.push_back({path + ".outputs", "only a route with via has outputs"});
        }
    }
}

void add_priority_siblings(config& c) {
    std::vector<std::string> names;
    for (const route& r : c.routes) {
        if (!r.high_priority) continue;
        names.insert(names.end(), r.to.begin(), r.to.end());
        for (const route_output& o : r.outputs) names.insert(names.end(), o.to.begin(), o.to.end());
    }
    for (const std::string& name : names) {
        auto it = c.sinks.find(name);
        if (it == c.sinks.end() || it->second.type != "mqtt" || it->second.priority_sibling)
            continue;
        sink_config sib = it->second;
        sib.name = name + "!high";
        sib.client_id += "-high";
        sib.priority_sibling = true;
        sib.raw["priority_sibling"] = true;
        c.sinks.emplace(sib.name, std::move(sib));
    }
}

std::vector<config_problem> check_plugins(const config& c, std::vector<std::string>& warnings) {
    std::vector<config_problem> problems;
    for (size_t i = 0; i < c.plugins.dirs.size(); ++i) {
        struct stat st {};
        if (::stat(c.plugins.dirs[i].c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
            warnings.push_back("plugins.dirs[" + std::to_string(i) + "]: " + c.plugins.dirs[i] +
                               " is not a directory");
        }
    }
    if (c.plugins.instances.empty()) return problems;
    plugins::register_builtin_runtimes();
    for (const auto& [name, ic] : c.plugins.instances) {
        const std::string path = "plugins.instances." + name;
        plugins::instance_spec spec;
        spec.name = name;
        spec.config = ic.config;
        spec.limits.max_output_bytes = c.local.max_payload_bytes;
        try {
            spec.path = plugins::resolve_plugin(ic.plugin, c.plugins.dirs);
            auto inst = plugins::make_instance(spec, ic.isolation);
        } catch (const plugins::config_rejected& e) {
            problems.push_back({path + ".config", e.what()});
        } catch (const std::exception& e) {
            problems.push_back({path + ".plugin", e.what()});
        }
    }
    return problems;
}

}  // namespace egw
