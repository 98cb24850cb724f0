// SPDX-License-Identifier: Apache-2.0
#include "gateway/devices/cli.h"

#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "gateway/control.h"

namespace egw::devices {

namespace {

using json = nlohmann::json;

// Sends the request and prints the reply; the text form is one line per list item.
int run(const std::string& socket_path, const json& request, const char* list_key, bool as_json) {
    json reply;
    try {
        reply = control_request(socket_path, request);
    } catch (const std::exception& e) {
        std::cerr << "edge-gateway: " << e.what() << "\n";
        return 3;
    }
    if (reply.contains("error")) {
        std::cerr << "edge-gateway: " << reply["error"].get<std::string>() << "\n";
        return 1;
    }
    if (as_json || !list_key || !reply.contains(list_key) || !reply[list_key].is_array()) {
        std::cout << reply.dump(as_json ? -1 : 2) << "\n";
        return 0;
    }
    for (const auto& item : reply[list_key]) std::cout << item.dump() << "\n";
    return 0;
}

}  // namespace

int devices_cli(const std::string& socket_path, bool as_json) {
    return run(socket_path, json{{"cmd", "devices"}}, "devices", as_json);
}

int tasks_cli(const std::string& socket_path, const std::string& state, const std::string& id,
              bool as_json) {
    json req = {{"cmd", "tasks"}};
    if (!state.empty()) req["state"] = state;
    if (!id.empty()) req["id"] = id;
    return run(socket_path, req, "tasks", as_json);
}

int task_cli(const std::string& socket_path, const std::string& action, const std::string& arg,
             bool as_json) {
    if (action == "submit") {
        std::ifstream in(arg, std::ios::binary);
        if (!in) {
            std::cerr << "edge-gateway: cannot read " << arg << "\n";
            return 2;
        }
        std::stringstream ss;
        ss << in.rdbuf();
        return run(socket_path, json{{"cmd", "task_submit"}, {"payload", ss.str()}}, nullptr,
                   as_json);
    }
    if (action == "cancel") {
        return run(socket_path, json{{"cmd", "task_cancel"}, {"id", arg}}, nullptr, as_json);
    }
    std::cerr << "edge-gateway: task: unknown action " << action << " (submit FILE, cancel ID)\n";
    return 2;
}

}  // namespace egw::devices
