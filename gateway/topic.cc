// SPDX-License-Identifier: Apache-2.0
#include "gateway/topic.h"

#include <stdexcept>

namespace egw {

std::string filter_problem(std::string_view filter) {
    if (filter.empty()) return "is empty";
    if (filter.size() > 65535) return "is longer than 65535 bytes";
    size_t start = 0;
    while (true) {
        size_t end = filter.find('/', start);
        std::string_view level = filter.substr(
            start, end == std::string_view::npos ? std::string_view::npos : end - start);
        if (level.find('#') != std::string_view::npos &&
            (level != "#" || end != std::string_view::npos)) {
            return "'#' must be a whole level and the last one";
        }
        if (level.find('+') != std::string_view::npos && level != "+") {
            return "'+' must be a whole level";
        }
        if (end == std::string_view::npos) break;
        start = end + 1;
    }
    if (filter.find('\0') != std::string_view::npos) return "contains a NUL byte";
    return {};
}

bool topic_matches(std::string_view filter, std::string_view topic) {
    if (!topic.empty() && topic[0] == '$' && !filter.empty() &&
        (filter[0] == '+' || filter[0] == '#')) {
        return false;
    }
    size_t f = 0, t = 0;
    while (true) {
        size_t fe = filter.find('/', f);
        std::string_view flevel = filter.substr(f, fe == std::string_view::npos ? fe : fe - f);
        if (flevel == "#") return true;  // also matches the parent level ("a/#" matches "a")
        if (t > topic.size()) return false;
        size_t te = topic.find('/', t);
        std::string_view tlevel = topic.substr(t, te == std::string_view::npos ? te : te - t);
        if (flevel != "+" && flevel != tlevel) return false;
        if (fe == std::string_view::npos || te == std::string_view::npos) {
            if (fe == std::string_view::npos && te == std::string_view::npos) return true;
            // Topic ended: only a trailing "/#" in the filter still matches.
            return te == std::string_view::npos && filter.substr(fe + 1) == "#";
        }
        f = fe + 1;
        t = te + 1;
    }
}

topic_template::topic_template(std::string_view text, std::string gateway_id) {
    std::string literal;
    for (size_t i = 0; i < text.size();) {
        if (text[i] != '{') {
            literal += text[i++];
            continue;
        }
        size_t close = text.find('}', i);
        if (close == std::string_view::npos) throw std::invalid_argument("unclosed '{'");
        std::string_view name = text.substr(i + 1, close - i - 1);
        if (name == "gateway_id") {
            literal += gateway_id;
        } else if (name == "topic" || name == "seq") {
            if (!literal.empty()) parts_.push_back({part_kind::literal, std::move(literal)});
            literal.clear();
            parts_.push_back({name == "topic" ? part_kind::topic : part_kind::seq, {}});
        } else {
            throw std::invalid_argument("unknown placeholder {" + std::string(name) +
                                        "} (known: {gateway_id} {topic} {seq})");
        }
        i = close + 1;
    }
    if (!literal.empty()) parts_.push_back({part_kind::literal, std::move(literal)});
}

std::string topic_template::render(std::string_view topic, uint64_t seq) const {
    std::string out;
    out.reserve(64 + topic.size());
    for (const part& p : parts_) {
        switch (p.kind) {
            case part_kind::literal:
                out += p.text;
                break;
            case part_kind::topic:
                out += topic;
                break;
            case part_kind::seq:
                out += std::to_string(seq);
                break;
        }
    }
    return out;
}

}  // namespace egw
