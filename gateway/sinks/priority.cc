// SPDX-License-Identifier: Apache-2.0
#include "gateway/sinks/priority.h"

#include <algorithm>

namespace egw {

std::vector<std::pair<int, int>> priority_bits(const std::map<std::string, sink_config>& sinks,
                                               storage::buffer& buf) {
    std::vector<std::pair<int, int>> out;
    for (const auto& [name, sc] : sinks) {
        if (!sc.priority_sibling) continue;
        const std::string base = name.substr(0, name.size() - std::string(priority_suffix).size());
        if (!sinks.count(base)) continue;
        out.emplace_back(buf.sink_bit(base), buf.sink_bit(name));
    }
    return out;
}

uint64_t to_high(uint64_t mask, const std::vector<std::pair<int, int>>& bits) {
    for (const auto& [bit, sibling] : bits) {
        const uint64_t b = uint64_t{1} << bit;
        if (mask & b) mask = (mask & ~b) | uint64_t{1} << sibling;
    }
    return mask;
}

void apply_priority_holds(const std::map<int, std::unique_ptr<sink>>& sinks, storage::buffer& buf) {
    std::map<std::string, sink*> by_name;
    for (const auto& [id, s] : sinks) by_name[s->config().name] = s.get();
    for (const auto& [name, s] : by_name) {
        if (!s->config().priority_sibling) continue;
        auto base = by_name.find(name.substr(0, name.size() - std::string(priority_suffix).size()));
        if (base == by_name.end()) continue;
        sink& main = *base->second;
        const bool waiting = buf.for_sink(s->bit()).rows.load() > 0;
        const bool sib_up = s->connected_for() > std::chrono::steady_clock::duration::zero();
        // Grace: the sibling's backoff at most, plus a connect.
        const auto grace =
            std::chrono::milliseconds(s->config().backoff.max_ms) + std::chrono::seconds(2);
        const auto main_up = main.connected_for();
        const bool in_grace =
            main_up > std::chrono::steady_clock::duration::zero() && main_up < grace;
        main.set_held(waiting && (sib_up || in_grace));
    }
}

}  // namespace egw
