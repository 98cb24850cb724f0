// SPDX-License-Identifier: Apache-2.0
#include "gateway/config.h"
#include "gateway/metrics.h"  // parse_listen

#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>

#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validator.hpp>

#include "gateway/devices/downlink_config.h"
#include "gateway/sinks/sink.h"
#include "gateway/topic.h"

namespace egw {

extern const char* const config_schema_text;

namespace {

using nlohmann::json;

std::string summary(const std::string& file, const std::vector<config_problem>& problems) {
    std::string s = file + ": " + std::to_string(problems.size()) + " problem(s)";
    for (const auto& p : problems)
        s += "\n  " + (p.path.empty() ? "(file)" : p.path) + ": " + p.message;
    return s;
}

// valijson names a location as {"<root>", "[sinks]", "[cloud]", "[0]"}; we print
// "sinks.cloud" and "routes[0]", the way the keys are written in the docs.
std::string key_path(const std::vector<std::string>& context) {
    std::string path;
    for (const std::string& c : context) {
        if (c == "<root>" || c.size() < 2) continue;
        std::string inner = c.substr(1, c.size() - 2);
        bool index = !inner.empty() && inner.find_first_not_of("0123456789") == std::string::npos;
        if (index) {
            path += "[" + inner + "]";
        } else {
            if (!path.empty()) path += ".";
            path += inner;
        }
    }
    return path;
}

const valijson::Schema& schema() {
    static const std::unique_ptr<valijson::Schema> s = [] {
        auto out = std::make_unique<valijson::Schema>();
        json doc = json::parse(config_schema_text);
        valijson::SchemaParser parser;
        valijson::adapters::NlohmannJsonAdapter adapter(doc);
        parser.populateSchema(adapter, *out);
        return out;
    }();
    return *s;
}

void validate_schema(const json& doc, std::vector<config_problem>& problems) {
    valijson::Validator validator;
    valijson::ValidationResults results;
    valijson::adapters::NlohmannJsonAdapter adapter(doc);
    if (validator.validate(schema(), adapter, &results)) return;
    std::set<std::pair<std::string, std::string>> seen;
    valijson::ValidationResults::Error e;
    while (results.popError(e)) {
        const std::string& d = e.description;
        // valijson also reports every enclosing object that failed because a child did; the
        // child's own error is the useful one.
        if (d.rfind("Failed to validate against schema associated with property", 0) == 0 ||
            d.rfind("Failed to validate item #", 0) == 0 ||
            d.rfind("Failed to validate against child schema", 0) == 0 ||
            d.rfind("Failed to validate against", 0) == 0) {
            continue;
        }
        std::string path = key_path(e.context);
        std::string message = d;
        const std::string unknown =
            "could not be validated using 'properties' or 'additionalProperties' constraints: '";
        if (auto at = d.find(unknown); at != std::string::npos) {
            std::string key = d.substr(at + unknown.size());
            if (!key.empty() && key.back() == '.') key.pop_back();
            if (!key.empty() && key.back() == '\'') key.pop_back();
            path += (path.empty() ? "" : ".") + key;
            message = "unknown key";
        }
        if (seen.insert({path, message}).second) problems.push_back({path, message});
    }
}

}  // namespace

// Shared with the sink types' parse functions (config.h).
tls_config read_tls(const json& j, const std::string& path, std::vector<config_problem>& problems) {
    tls_config t;
    t.ca_file = j.value("ca_file", "");
    t.cert_file = j.value("cert_file", "");
    t.key_file = j.value("key_file", "");
    t.verify = j.value("verify", true);
    for (auto [key, value] :
         {std::pair{"ca_file", t.ca_file}, {"cert_file", t.cert_file}, {"key_file", t.key_file}}) {
        if (!value.empty() && ::access(value.c_str(), R_OK) != 0) {
            problems.push_back({path + "." + key, "cannot read " + value});
        }
    }
    if (t.cert_file.empty() != t.key_file.empty()) {
        problems.push_back({path, "cert_file and key_file go together (mutual TLS)"});
    }
    return t;
}

std::string mqtt_uri_problem(const std::string& uri, bool has_tls) {
    auto scheme_end = uri.find("://");
    if (scheme_end == std::string::npos) return "must start with tcp:// or ssl://";
    std::string scheme = uri.substr(0, scheme_end);
    if (scheme != "tcp" && scheme != "ssl" && scheme != "mqtt" && scheme != "mqtts") {
        return "unknown scheme (tcp, ssl, mqtt, mqtts)";
    }
    std::string rest = uri.substr(scheme_end + 3);
    // user:password@host would put a secret where logs and status show the URI.
    if (rest.find('@') != std::string::npos)
        return "must not hold credentials (user:password@): use username and password";
    auto colon = rest.rfind(':');
    if (rest.empty() || colon == std::string::npos || colon == 0)
        return "must be scheme://host:port";
    std::string port = rest.substr(colon + 1);
    if (port.empty() || port.find_first_not_of("0123456789") != std::string::npos ||
        std::stoul(port.substr(0, 6)) == 0 || std::stoul(port.substr(0, 6)) > 65535) {
        return "port must be 1..65535";
    }
    bool secure = scheme == "ssl" || scheme == "mqtts";
    if (has_tls && !secure) return "has a tls section but a plain " + scheme + ":// scheme";
    return {};
}

// Paho understands tcp:// and ssl://; mqtt:// and mqtts:// are their common spellings.
std::string paho_uri(const std::string& uri) {
    if (uri.rfind("mqtts://", 0) == 0) return "ssl://" + uri.substr(8);
    if (uri.rfind("mqtt://", 0) == 0) return "tcp://" + uri.substr(7);
    return uri;
}

namespace {

config build(const json& doc, std::vector<config_problem>& problems) {
    config c;
    c.gateway_id = doc.at("gateway_id").get<std::string>();
    c.data_dir = doc.at("data_dir").get<std::string>();
    c.log_level = doc.value("log_level", c.log_level);
    c.status_interval_ms = doc.value("status_interval_ms", c.status_interval_ms);

    const json& l = doc.at("local");
    c.local.uri = l.at("uri").get<std::string>();
    c.local.client_id = l.value("client_id", c.local.client_id);
    c.local.username = l.value("username", "");
    c.local.password = l.value("password", "");
    c.local.keepalive_s = l.value("keepalive_s", c.local.keepalive_s);
    c.local.clean_session = l.value("clean_session", c.local.clean_session);
    c.local.max_payload_bytes = l.value("max_payload_bytes", c.local.max_payload_bytes);
    if (l.contains("tls")) c.local.tls = read_tls(l["tls"], "local.tls", problems);
    if (auto p = mqtt_uri_problem(c.local.uri, c.local.tls.has_value()); !p.empty()) {
        problems.push_back({"local.uri", p});
    }
    c.local.uri = paho_uri(c.local.uri);
    if (c.local.uri.rfind("ssl://", 0) == 0 && !c.local.tls) c.local.tls = tls_config{};
    const json& subs = l.at("subscribe");
    for (size_t i = 0; i < subs.size(); ++i) {
        subscription s{subs[i].at("filter").get<std::string>(), subs[i].value("qos", 1)};
        if (auto p = filter_problem(s.filter); !p.empty()) {
            problems.push_back({"local.subscribe[" + std::to_string(i) + "].filter", p});
        }
        c.local.subscribe.push_back(std::move(s));
    }

    for (const auto& [name, s] : doc.at("sinks").items()) {
        const std::string path = "sinks." + name;
        sink_config k;
        k.name = name;
        k.raw = s;
        k.type = s.value("type", k.type);
        parse_sink(s, path, c, k, problems);
        c.sinks.emplace(name, std::move(k));
    }
    if (c.sinks.size() > static_cast<size_t>(storage::max_sinks)) {
        problems.push_back({"sinks", "at most 63 sinks"});
    }

    read_plugins(doc, c, problems);
    const json& routes = doc.at("routes");
    for (size_t i = 0; i < routes.size(); ++i) {
        const std::string path = "routes[" + std::to_string(i) + "]";
        route r;
        r.from = routes[i].at("from").get<std::string>();
        if (auto p = filter_problem(r.from); !p.empty()) problems.push_back({path + ".from", p});
        const json& to = routes[i].at("to");
        for (size_t j = 0; j < to.size(); ++j) {
            std::string sink = to[j].get<std::string>();
            if (!c.sinks.count(sink)) {
                problems.push_back(
                    {path + ".to[" + std::to_string(j) + "]", "no sink named '" + sink + "'"});
            }
            r.to.push_back(std::move(sink));
        }
        read_route_plugins(routes[i], path, c, r, problems);
        c.routes.push_back(std::move(r));
    }
    add_priority_siblings(c);
    devices::read_downlink(doc, c, problems);  // after the siblings: it adds its own sink

    c.buffer.path = c.data_dir + "/buffer.db";
    if (doc.contains("buffer")) {
        const json& b = doc["buffer"];
        c.buffer.max_bytes = b.value("max_bytes", c.buffer.max_bytes);
        std::string full = b.value("when_full", "drop-oldest");
        c.buffer.policy = full == "drop-newest" ? storage::when_full::drop_newest
                          : full == "block"     ? storage::when_full::block
                                                : storage::when_full::drop_oldest;
        c.buffer.sync = b.value("synchronous", "normal") == "full" ? storage::sync_mode::full
                                                                   : storage::sync_mode::normal;
        c.buffer.commit = b.value("commit", "each") == "group" ? storage::commit_mode::group
                                                               : storage::commit_mode::each;
    }
    if (doc.contains("metrics")) {
        c.metrics_listen = doc["metrics"].value("listen", "");
        std::string host;
        uint16_t port = 0;
        if (!c.metrics_listen.empty() && !parse_listen(c.metrics_listen, host, port))
            problems.push_back({"metrics.listen", "is not host:port (e.g. 127.0.0.1:9883)"});
    }
    // The control socket lives in data_dir; sun_path holds 107 bytes and a terminating NUL.
    if (c.data_dir.size() + sizeof("/control.sock") > 108) {
        problems.push_back({"data_dir", "is too long for a unix socket path (at most 94 bytes)"});
    }
    return c;
}

}  // namespace

config_error::config_error(std::string file, std::vector<config_problem> problems)
    : std::runtime_error(summary(file, problems)), problems_(std::move(problems)) {}

config parse_config(const std::string& text, const std::string& file) {
    std::vector<config_problem> problems;
    json doc;
    try {
        doc = json::parse(text);
    } catch (const json::exception& e) {
        // parse_error, and out_of_range for a number beyond double (1e400: found by
        // tests/fuzz/config_fuzz; it used to escape as an uncaught exception and abort).
        // nlohmann quotes the token it choked on ("last read: '...'", "parsing '...'"),
        // which may be the beginning of a password: keep only where and what.
        std::string what = e.what();
        if (auto at = what.find("; last read: "); at != std::string::npos) what.erase(at);
        if (auto at = what.find(" parsing '"); at != std::string::npos) what.erase(at);
        throw config_error(file, {{"", "not valid JSON: " + what}});
    }
    validate_schema(doc, problems);
    if (!problems.empty()) throw config_error(file, std::move(problems));
    config c = build(doc, problems);
    if (!problems.empty()) throw config_error(file, std::move(problems));
    return c;
}

config load_config(const std::string& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw config_error(file, {{"", "cannot read the file"}});
    std::stringstream ss;
    ss << in.rdbuf();
    return parse_config(ss.str(), file);
}

}  // namespace egw
