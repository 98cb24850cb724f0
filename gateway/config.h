// SPDX-License-Identifier: Apache-2.0
// The gateway's configuration: a JSON file validated against the embedded JSON Schema
// (gateway/config.schema.json, the single description of every key) and then checked for what
// a schema cannot say (routes naming sinks that exist, valid topic filters, readable files).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gateway/devices/downlink.h"
#include "storage/buffer.h"

namespace egw {

struct tls_config {
    std::string ca_file, cert_file, key_file;
    bool verify = true;
};

struct subscription {
    std::string filter;
    int qos = 1;
};

struct local_config {
    std::string uri;
    std::string client_id = "edge-gateway";
    std::string username, password;
    int keepalive_s = 30;
    bool clean_session = false;
    uint64_t max_payload_bytes = 1 << 20;
    std::optional<tls_config> tls;
    std::vector<subscription> subscribe;
};

// A via route's per-output destination (routes[].outputs[]).
struct route_output {
    std::string filter;
    std::vector<std::string> to;
};

struct route {
    std::string from;
    std::vector<std::string> to;
    std::vector<std::string> via;  // plugin instances, in order (plugin_config.cc)
    bool high_priority = false;
    std::vector<route_output> outputs;
};

// plugins.instances.NAME
struct plugin_instance_config {
    std::string name;
    std::string plugin;  // as written
    std::string isolation = "none";
    nlohmann::json config = nlohmann::json::object();
    bool operator==(const plugin_instance_config& o) const {
        return plugin == o.plugin && isolation == o.isolation && config == o.config;
    }
};

struct plugins_config {
    std::vector<std::string> dirs{"/usr/lib/edge-gateway/plugins"};
    std::map<std::string, plugin_instance_config> instances;
};

struct backoff_config {
    int initial_ms = 500;
    int max_ms = 30000;
};

// The settings of a sink type other than mqtt's, parsed by that type (see sinks/sink.h).
struct sink_options {
    virtual ~sink_options() = default;
};

struct sink_config {
    std::string name;
    std::string type = "mqtt";
    // type mqtt (parsed by sinks/mqtt_sink.cc):
    std::string uri;
    std::string client_id;
    std::string topic = "gateways/{gateway_id}/{topic}";
    int qos = 1;
    int mqtt_version = 5;
    int inflight = 256;
    int batch = 512;
    int keepalive_s = 30;
    std::string username, password;
    backoff_config backoff;
    std::optional<tls_config> tls;
    // every other type: its own settings, e.g. sinks::batch_options (nullptr for mqtt)
    std::shared_ptr<const sink_options> options;
    nlohmann::json raw;  // as written, to tell on reload whether the sink changed
    // "NAME!high", made by add_priority_siblings for high-priority rows: no last will and no
    // retained status (NAME publishes those), client_id NAME's + "-high".
    bool priority_sibling = false;

    bool operator==(const sink_config& o) const { return raw == o.raw; }
};

// downlink (docs/devices.md, Downlink), read by devices/downlink_config.cc.
struct downlink_config {
    std::string sink;  // the mqtt sink carrying it (filled in when the file leaves it out)
    std::vector<devices::allow_entry> allow;
    bool operator==(const downlink_config&) const = default;
};

struct config {
    std::string gateway_id;
    std::string data_dir;
    std::string log_level = "info";
    int status_interval_ms = 5000;
    local_config local;
    std::vector<route> routes;
    std::map<std::string, sink_config> sinks;
    plugins_config plugins;
    storage::buffer_options buffer;  // path filled in from data_dir
    std::string metrics_listen;      // "host:port" of the /metrics listener; empty: off

    // Absent: nothing is relayed down and tasks come from the CLI only.
    std::optional<downlink_config> downlink;
};

struct config_problem {
    std::string path;  // e.g. "sinks.cloud.qos", "routes[0].to[1]"; empty for the whole file
    std::string message;
};

class config_error : public std::runtime_error {
public:
    config_error(std::string file, std::vector<config_problem> problems);
    const std::vector<config_problem>& problems() const { return problems_; }

private:
    std::vector<config_problem> problems_;
};

// Helpers the sink types' parse functions share with the rest of the config (config.cc).
// A tls section at `path`; files it names must be readable.
tls_config read_tls(const nlohmann::json& j, const std::string& path,
                    std::vector<config_problem>& problems);
// What is wrong with an MQTT broker uri (empty if nothing), and its spelling for Paho.
std::string mqtt_uri_problem(const std::string& uri, bool has_tls);
std::string paho_uri(const std::string& uri);

// Reads, validates and returns the config; throws config_error listing every problem found.
config load_config(const std::string& file);

// The same from text already read (tests, reload); `file` names it in messages.
config parse_config(const std::string& text, const std::string& file);

// plugin_config.cc: reads `plugins` and each route's via / priority / outputs (after the sinks
// are read), adding problems with their key paths.
void read_plugins(const nlohmann::json& doc, config& c, std::vector<config_problem>& problems);
void read_route_plugins(const nlohmann::json& r, const std::string& path, const config& c,
                        route& out, std::vector<config_problem>& problems);

// Loads every configured plugin and creates each instance once, as --check-config does:
// problems at plugins.instances.NAME.plugin (cannot resolve or load, wrong ABI major) and
// plugins.instances.NAME.config (the plugin rejected it). Missing dirs go to `warnings`.
// For every mqtt sink a `priority: "high"` route sends to (`to` or `outputs`), adds its sibling
// "NAME!high" (docs/plugins.md, "Priority"). Batch sinks get none: they ignore priority.
void add_priority_siblings(config& c);
std::vector<config_problem> check_plugins(const config& c, std::vector<std::string>& warnings);

}  // namespace egw
