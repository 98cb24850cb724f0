// SPDX-License-Identifier: Apache-2.0
// MQTT topic filters and the sink topic template.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace egw {

// Empty string if `filter` is a valid MQTT topic filter, else why it is not.
std::string filter_problem(std::string_view filter);

// MQTT 3.1.1 section 4.7 matching; `filter` must be valid. Topics starting with '$' are not
// matched by a leading wildcard.
bool topic_matches(std::string_view filter, std::string_view topic);

// A sink's topic template, parsed once: literal text and the placeholders {gateway_id},
// {topic} and {seq}.
class topic_template {
public:
    topic_template() = default;
    // Throws std::invalid_argument naming an unknown placeholder or an unclosed brace.
    topic_template(std::string_view text, std::string gateway_id);
    std::string render(std::string_view topic, uint64_t seq) const;

private:
    enum class part_kind { literal, topic, seq };
    struct part {
        part_kind kind;
        std::string text;
    };
    std::vector<part> parts_;
};

}  // namespace egw
