// SPDX-License-Identifier: Apache-2.0
#include "gateway/sinks/sink.h"

#include <stdexcept>

#include "gateway/devices/downlink_sink.h"
#include "gateway/sinks/dir_sink.h"
#include "gateway/sinks/http_sink.h"
#include "gateway/sinks/mqtt_sink.h"
#include "gateway/sinks/s3_sink.h"

namespace egw {
namespace {

using parse_fn = void (*)(const nlohmann::json&, const std::string&, const config&, sink_config&,
                          std::vector<config_problem>&);
using make_fn = std::unique_ptr<sink> (*)(const sink_context&);

struct sink_type {
    const char* name;
    parse_fn parse;
    make_fn make;
};

std::unique_ptr<sink> make_mqtt(const sink_context& x) {
    return std::make_unique<mqtt_sink>(x.id, x.cfg, x.gateway_id, x.bit, x.buf, x.cnt, x.mb);
}

// The registry: one line per type. A table rather than self-registering statics, which a
// static library drops when nothing else refers to their object file.
constexpr sink_type types[] = {
    {"mqtt", parse_mqtt_sink, make_mqtt},
    {"dir", parse_dir_sink, make_dir_sink},
    {"http", parse_http_sink, make_http_sink},
    {"s3", parse_s3_sink, make_s3_sink},
    // Internal: made by the config from `downlink` (devices/downlink_config.h).
    {"downlink-local", devices::parse_downlink_sink, devices::make_downlink_sink},
};

const sink_type* find(const std::string& name) {
    for (const sink_type& t : types) {
        if (name == t.name) return &t;
    }
    return nullptr;
}

}  // namespace

std::unique_ptr<sink> make_sink(const sink_context& ctx) {
    const sink_type* t = find(ctx.cfg.type);
    if (!t) throw std::invalid_argument("unknown sink type '" + ctx.cfg.type + "'");
    return t->make(ctx);
}

void parse_sink(const nlohmann::json& s, const std::string& path, const config& c, sink_config& out,
                std::vector<config_problem>& problems) {
    const sink_type* t = find(out.type);
    if (!t) {
        problems.push_back({path + ".type", "unknown sink type '" + out.type + "'"});
        return;
    }
    t->parse(s, path, c, out, problems);
}

}  // namespace egw
