// SPDX-License-Identifier: Apache-2.0
#include "plugins/host/loader.h"

#include <dlfcn.h>

#include <cstddef>
#include <stdexcept>

namespace egw::plugins {
namespace {

// The field at `offset` of `size` bytes is inside the plugin's struct.
bool covers(uint32_t struct_size, size_t offset, size_t size) {
    return struct_size >= offset + size;
}

#define EGW_COVERS(s, field) covers((s), offsetof(egw_plugin, field), sizeof(egw_plugin::field))

}  // namespace

std::shared_ptr<library> library::open(const std::string& path) {
    std::shared_ptr<library> lib(new library);
    lib->path_ = path;
    dlerror();
    lib->handle_ = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib->handle_) {
        const char* e = dlerror();
        throw std::runtime_error("cannot load " + path + ": " + (e ? e : "dlopen failed"));
    }
    auto entry =
        reinterpret_cast<egw_plugin_entry_fn>(::dlsym(lib->handle_, EGW_PLUGIN_ENTRY_SYMBOL));
    if (!entry) {
        throw std::runtime_error(path + " is not an edge-gateway plugin: it exports no " +
                                 EGW_PLUGIN_ENTRY_SYMBOL + "()");
    }
    const egw_plugin* p = nullptr;
    try {
        p = entry();
    } catch (...) {
        throw std::runtime_error(path + ": egw_plugin_entry() threw an exception");
    }
    if (!p) throw std::runtime_error(path + ": egw_plugin_entry() returned NULL");
    plugin_descriptor& d = lib->desc_;
    // The first three fields are the same in every version of the ABI.
    d.abi_major = p->abi_major;
    d.abi_minor = p->abi_minor;
    d.struct_size = p->struct_size;
    if (d.abi_major != EGW_ABI_MAJOR) {
        throw std::runtime_error(path + " was built for plugin ABI major " +
                                 std::to_string(d.abi_major) + ", this gateway speaks major " +
                                 std::to_string(EGW_ABI_MAJOR) + ": rebuild it against " +
                                 "edge-gateway/plugin.h");
    }
    const uint32_t s = d.struct_size;
    if (!EGW_COVERS(s, on_message) || !EGW_COVERS(s, destroy)) {
        throw std::runtime_error(path + ": descriptor too short (struct_size " + std::to_string(s) +
                                 ") to hold create, destroy and on_message");
    }
    d.flags = p->flags;
    d.name = p->name ? p->name : "";
    d.version = p->version ? p->version : "";
    d.max_concurrent = p->max_concurrent == 0 ? 1 : p->max_concurrent;
    d.create = p->create;
    d.destroy = p->destroy;
    d.on_message = p->on_message;
    if (EGW_COVERS(s, on_timer)) d.on_timer = p->on_timer;
    if (EGW_COVERS(s, on_snapshot)) d.on_snapshot = p->on_snapshot;
    if (EGW_COVERS(s, on_restore)) d.on_restore = p->on_restore;
    if (!d.create || !d.destroy || !d.on_message) {
        throw std::runtime_error(path + ": create, destroy and on_message are required");
    }
    return lib;
}

library::~library() {
    if (handle_) ::dlclose(handle_);
}

}  // namespace egw::plugins
