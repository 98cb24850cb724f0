// SPDX-License-Identifier: Apache-2.0
#include "gateway/devices/downlink.h"

#include <algorithm>

namespace egw::devices {
namespace {

std::vector<std::string_view> levels(std::string_view t) {
    std::vector<std::string_view> out;
    size_t start = 0;
    for (;;) {
        size_t slash = t.find('/', start);
        if (slash == std::string_view::npos) {
            out.push_back(t.substr(start));
            return out;
        }
        out.push_back(t.substr(start, slash - start));
        start = slash + 1;
    }
}

bool overlap(const std::vector<std::string_view>& a, size_t i,
             const std::vector<std::string_view>& b, size_t j) {
    if (i < a.size() && a[i] == "#") return true;
    if (j < b.size() && b[j] == "#") return true;
    if (i == a.size() || j == b.size()) return i == a.size() && j == b.size();
    if (a[i] != "+" && b[j] != "+" && a[i] != b[j]) return false;
    return overlap(a, i + 1, b, j + 1);
}

}  // namespace

bool filters_overlap(std::string_view a, std::string_view b) {
    return overlap(levels(a), 0, levels(b), 0);
}

std::vector<std::string> downlink_filters(std::string_view gw) {
    std::string p = "gateways/" + std::string(gw) + "/";
    return {p + "down/#", p + "tasks/submit", p + "tasks/cancel"};
}

std::string uplink_loop_problem(std::string_view uplink_filter, std::string_view gw) {
    for (const auto& f : downlink_filters(gw)) {
        if (filters_overlap(uplink_filter, f)) {
            return "uplink topics '" + std::string(uplink_filter) + "' could reach '" + f +
                   "', which the gateway takes from the cloud: messages would loop";
        }
    }
    return {};
}

std::string uplink_filter(std::string_view tmpl, std::string_view local_filter,
                          std::string_view gw) {
    std::string out;
    for (size_t i = 0; i < tmpl.size();) {
        if (tmpl.substr(i, 12) == "{gateway_id}") {
            out += gw;
            i += 12;
        } else if (tmpl.substr(i, 7) == "{topic}") {
            out += local_filter;
            i += 7;
        } else if (tmpl.substr(i, 5) == "{seq}") {
            out += '0';
            i += 5;
        } else {
            out += tmpl[i++];
        }
    }
    return out;
}

bool is_downlink_topic(std::string_view cloud_topic, std::string_view gw) {
    for (const auto& f : downlink_filters(gw))
        if (filters_overlap(f, cloud_topic)) return true;
    return false;
}

std::string encode_local_row(int qos, std::string_view local_topic) {
    std::string out;
    out.reserve(local_topic.size() + 2);
    out += static_cast<char>('0' + std::clamp(qos, 0, 2));
    out += ':';
    out += local_topic;
    return out;
}

bool decode_local_row(std::string_view row_topic, int& qos, std::string_view& local_topic) {
    if (row_topic.size() < 3 || row_topic[1] != ':' || row_topic[0] < '0' || row_topic[0] > '2')
        return false;
    qos = row_topic[0] - '0';
    local_topic = row_topic.substr(2);
    return true;
}

downlink_decision decide_downlink(const std::vector<allow_entry>& allow, std::string_view gw,
                                  std::string_view cloud_topic, size_t payload_bytes, int qos,
                                  bool retained) {
    downlink_decision d;
    std::string prefix = "gateways/" + std::string(gw) + "/down/";
    if (cloud_topic.substr(0, prefix.size()) != prefix || cloud_topic.size() == prefix.size()) {
        d.local_topic = std::string(cloud_topic);
        d.reason = "not under " + prefix;
        return d;
    }
    d.local_topic = std::string(cloud_topic.substr(prefix.size()));
    if (d.local_topic.find_first_of("+#") != std::string::npos) {
        d.reason = "wildcard in topic";
        return d;
    }
    // Relaying into our own cloud-facing or task topics would let the cloud forge device input.
    for (const char* own : {"gateways/#", "$SYS/#"}) {
        if (filters_overlap(own, d.local_topic)) {
            d.reason = "topic is reserved";
            return d;
        }
    }
    for (const auto& e : allow) {
        if (!filters_overlap(e.filter, d.local_topic)) continue;
        if (retained && !e.retain) {
            d.reason = "retained downlink not allowed";
            return d;
        }
        if (payload_bytes > e.max_payload_bytes) {
            d.reason = "payload of " + std::to_string(payload_bytes) + " bytes exceeds " +
                       std::to_string(e.max_payload_bytes);
            return d;
        }
        d.allowed = true;
        d.qos = std::min(qos, e.qos);
        return d;
    }
    d.reason = "not allowed";
    return d;
}

}  // namespace egw::devices
