// SPDX-License-Identifier: Apache-2.0
// Maps a topic to the set of sinks (as buffer bits) its routes send it to. Built on the loop
// thread at start and on reload, read by the ingest thread: the table is immutable and
// swapped whole.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace egw {

class route_table {
public:
    void add(std::string filter, uint64_t sinks) { entries_.push_back({std::move(filter), sinks}); }
    uint64_t match(std::string_view topic) const;

private:
    struct entry {
        std::string filter;
        uint64_t sinks;
    };
    std::vector<entry> entries_;
};

class router {
public:
    void set(std::shared_ptr<const route_table> t) {
        std::lock_guard lock(mu_);
        table_ = std::move(t);
    }
    std::shared_ptr<const route_table> get() const {
        std::lock_guard lock(mu_);
        return table_;
    }

private:
    mutable std::mutex mu_;
    std::shared_ptr<const route_table> table_ = std::make_shared<route_table>();
};

}  // namespace egw
