// SPDX-License-Identifier: Apache-2.0
// How the host turns a plugin file into an instance, whatever runs it. Native .so files are
// built in (native_instance); other runtimes (Lua scripts, isolated children) register a
// factory by kind, so the host compiles and runs without them.
//
// Threads. Register factories at start-up, before any instance is made (register_builtin_
// runtimes() does it); lookups then happen on the loop thread only.
#pragma once

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "plugins/host/instance.h"

namespace egw::plugins {

// The plugin file loaded but rejected the instance's config: the message is the plugin's own
// reason. --check-config reports it at plugins.instances.NAME.config. Any other exception a
// factory throws is a problem with the plugin itself (plugins.instances.NAME.plugin).
class config_rejected : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// kind "lua": spec.path is a .lua script. kind "isolated": spec.path is a .so or a .lua file
// to run in a supervised child process.
using runtime_factory = std::function<std::unique_ptr<instance>(const instance_spec&)>;

void register_runtime(const std::string& kind, runtime_factory f);
// nullptr when nothing registered `kind`.
const runtime_factory* find_runtime(const std::string& kind);

// Registers every runtime linked into this build; idempotent. The gateway calls it once.
// Runtimes add one line each to its definition (runtimes.cc).
void register_builtin_runtimes();

// The search list for plugin names: `dirs` as configured, then the build tree's plugin output
// directory (compiled in), so tests and the demo find shipped plugins without installing.
std::vector<std::string> search_dirs(const std::vector<std::string>& dirs);

// A `plugin` value resolved to a file: a path (contains '/') is taken as is; a name is looked
// up as NAME.so, then NAME.lua, then NAME itself (NAME.lua given as a name) in each search
// dir. Throws std::runtime_error saying where it looked.
std::string resolve_plugin(const std::string& plugin, const std::vector<std::string>& dirs);

// Makes an instance of the resolved file `spec.path`: isolation "process" through the
// "isolated" runtime, a .lua file through "lua", anything else as a native .so. Throws
// config_rejected or std::runtime_error (see above).
std::unique_ptr<instance> make_instance(const instance_spec& spec, const std::string& isolation);

}  // namespace egw::plugins
