// SPDX-License-Identifier: Apache-2.0
#include "gateway/router.h"

#include "gateway/topic.h"

namespace egw {

uint64_t route_table::match(std::string_view topic) const {
    uint64_t sinks = 0;
    for (const entry& e : entries_) {
        if (topic_matches(e.filter, topic)) sinks |= e.sinks;
    }
    return sinks;
}

}  // namespace egw
