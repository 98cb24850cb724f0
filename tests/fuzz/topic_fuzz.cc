// SPDX-License-Identifier: Apache-2.0
//
// Fuzzes topic filters and templates (gateway/topic.h): filter validation, matching against a
// topic, and a sink topic template parsed and rendered. Checks properties that must hold for
// every input, not just "no crash":
//   - a valid filter without wildcards matches exactly the topic equal to it;
//   - "#" matches every topic not starting with '$';
//   - a template either throws std::invalid_argument or renders; rendering {topic} contains it.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "gateway/topic.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider in(data, size);
    const std::string filter = in.ConsumeRandomLengthString(256);
    const std::string topic = in.ConsumeRandomLengthString(256);
    const std::string tmpl = in.ConsumeRandomLengthString(256);
    const uint64_t seq = in.ConsumeIntegral<uint64_t>();

    if (egw::filter_problem(filter).empty()) {
        const bool m = egw::topic_matches(filter, topic);
        if (filter.find_first_of("+#") == std::string::npos && m != (filter == topic))
            __builtin_trap();
    }
    if (!topic.empty() && topic[0] != '$' && !egw::topic_matches("#", topic)) __builtin_trap();

    try {
        egw::topic_template t(tmpl, "gw-fuzz");
        const std::string out = t.render(topic, seq);
        if (tmpl == "{topic}" && out != topic) __builtin_trap();
    } catch (const std::invalid_argument&) {
    }
    return 0;
}
