// SPDX-License-Identifier: Apache-2.0
// Loads a native plugin (.so) and checks its descriptor against the ABI the host speaks.
//
// Ownership. A library stays loaded as long as a shared_ptr to it lives: every instance holds
// one, so the code it calls is never unloaded under it (dlclose runs when the last instance of
// the last config that used it is gone). Loading is on the loop thread (or --check-config).
#pragma once

#include <memory>
#include <string>

#include <edge-gateway/plugin.h>

namespace egw::plugins {

// The descriptor as the host uses it: every field the plugin's struct_size does not cover is
// null or zero, so an older minor's shorter struct works.
struct plugin_descriptor {
    uint32_t abi_major = 0, abi_minor = 0, struct_size = 0, flags = 0;
    std::string name, version;
    uint32_t max_concurrent = 1;
    decltype(egw_plugin::create) create = nullptr;
    decltype(egw_plugin::destroy) destroy = nullptr;
    decltype(egw_plugin::on_message) on_message = nullptr;
    decltype(egw_plugin::on_timer) on_timer = nullptr;
    decltype(egw_plugin::on_snapshot) on_snapshot = nullptr;
    decltype(egw_plugin::on_restore) on_restore = nullptr;
};

class library {
public:
    // dlopen(RTLD_NOW | RTLD_LOCAL), egw_plugin_entry(), version and size checks. Throws
    // std::runtime_error with a clear message (naming both majors on a mismatch).
    static std::shared_ptr<library> open(const std::string& path);
    ~library();
    library(const library&) = delete;
    library& operator=(const library&) = delete;

    const plugin_descriptor& descriptor() const { return desc_; }
    const std::string& path() const { return path_; }

private:
    library() = default;
    void* handle_ = nullptr;
    std::string path_;
    plugin_descriptor desc_;
};

}  // namespace egw::plugins
