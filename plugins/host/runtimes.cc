// SPDX-License-Identifier: Apache-2.0
#include "plugins/host/runtimes.h"

#include <unistd.h>

#include <map>

#include "plugins/host/isolated_instance.h"
#include "plugins/host/lua_instance.h"
#include "plugins/host/native_instance.h"

#ifndef EGW_BUILD_PLUGIN_DIR
#define EGW_BUILD_PLUGIN_DIR ""
#endif

namespace egw::plugins {
namespace {

std::map<std::string, runtime_factory>& registry() {
    static std::map<std::string, runtime_factory> r;
    return r;
}

bool ends_with(const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

bool readable(const std::string& path) { return ::access(path.c_str(), R_OK) == 0; }

}  // namespace

void register_runtime(const std::string& kind, runtime_factory f) {
    registry()[kind] = std::move(f);
}

const runtime_factory* find_runtime(const std::string& kind) {
    auto it = registry().find(kind);
    return it == registry().end() ? nullptr : &it->second;
}

void register_builtin_runtimes() {
    register_runtime("lua", [](const instance_spec& s) { return make_lua_instance(s); });
    register_runtime("isolated", [](const instance_spec& s) { return make_isolated_instance(s); });
}

std::vector<std::string> search_dirs(const std::vector<std::string>& dirs) {
    std::vector<std::string> out = dirs;
    const std::string build_dir = EGW_BUILD_PLUGIN_DIR;
    if (!build_dir.empty()) out.push_back(build_dir);
    return out;
}

std::string resolve_plugin(const std::string& plugin, const std::vector<std::string>& dirs) {
    if (plugin.find('/') != std::string::npos) {
        if (!readable(plugin)) throw std::runtime_error("cannot read plugin file " + plugin);
        return plugin;
    }
    std::string looked;
    for (const std::string& d : search_dirs(dirs)) {
        for (const std::string& file :
             {d + "/" + plugin + ".so", d + "/" + plugin + ".lua", d + "/" + plugin}) {
            if ((ends_with(file, ".so") || ends_with(file, ".lua")) && readable(file)) return file;
        }
        looked += (looked.empty() ? "" : ", ") + d;
    }
    throw std::runtime_error("no plugin named '" + plugin + "' (looked for " + plugin + ".so and " +
                             plugin + ".lua in " + looked + ")");
}

std::unique_ptr<instance> make_instance(const instance_spec& spec, const std::string& isolation) {
    const bool lua = ends_with(spec.path, ".lua");
    if (isolation == "process" || lua) {
        const std::string kind = isolation == "process" ? "isolated" : "lua";
        const runtime_factory* f = find_runtime(kind);
        if (!f) {
            throw std::runtime_error(kind == "lua"
                                         ? "Lua plugins are not supported by this build"
                                         : "isolation \"process\" is not supported by this build");
        }
        return (*f)(spec);
    }
    return make_native_instance(spec);
}

}  // namespace egw::plugins
