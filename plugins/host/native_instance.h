// SPDX-License-Identifier: Apache-2.0
// A native plugin instance: one egw_plugin.create() result from a loaded .so, called in
// process. Implements the egw_host services (log, emit, set_timer, write_state) and contains
// the plugin at the boundary: an EGW_ERROR return, a C++ exception or an invalid output is a
// failed call_result, never an exception or a crash of the host.
//
// Threads: see instance.h. The stage never calls one instance from two threads at once unless
// it is heavy and stateless; each call has its own egw_call, so that is safe here.
#pragma once

#include <memory>

#include "plugins/host/instance.h"

namespace egw::plugins {

// Loads (or reuses) spec.path and creates the instance with spec.config. Throws
// config_rejected (the plugin's reason) or std::runtime_error (cannot load, wrong ABI).
std::unique_ptr<instance> make_native_instance(const instance_spec& spec);

// The checks emit() applies to an output topic (also used by the other runtimes): empty when
// valid, else why not.
std::string output_topic_problem(std::string_view topic);

}  // namespace egw::plugins
