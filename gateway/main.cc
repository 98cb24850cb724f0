// SPDX-License-Identifier: Apache-2.0
// edge-gateway: arguments and exit codes over the gateway library.
//   0  stopped cleanly (or the config is valid, or status answered)
//   1  runtime failure, or no gateway answered `status`
//   2  bad command line or bad configuration (systemd: RestartPreventExitStatus=2)
#include <CLI/CLI.hpp>

#include <malloc.h>

#include <iostream>

#include "gateway/config.h"
#include "gateway/devices/cli.h"
#include "gateway/gateway.h"
#include "gateway/log.h"
#include "gateway/plugin_control.h"
#include "gateway/status_client.h"
#include "gateway/version.h"

namespace {

constexpr const char* default_config = "/etc/edge-gateway/gateway.json";

void print_problems(const egw::config_error& e, const std::string& file) {
    for (const auto& p : e.problems()) {
        std::cerr << file << ": " << (p.path.empty() ? "(file)" : p.path) << ": " << p.message
                  << "\n";
    }
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"edge-gateway: MQTT edge gateway with a durable SQLite buffer"};
    std::string config_path = default_config;
    std::string check_path;
    bool show_version = false;
    app.add_option("-c,--config", config_path, "configuration file")->capture_default_str();
    app.add_option("--check-config", check_path, "validate FILE, print each problem, exit 0 or 2");
    app.add_flag("-V,--version", show_version, "print the version");

    auto* status_cmd = app.add_subcommand("status", "show the running gateway's state");
    std::string socket_path;
    bool as_json = false;
    status_cmd->add_option("-c,--config", config_path, "configuration file (to find data_dir)");
    status_cmd->add_option("-s,--socket", socket_path, "control socket path (instead of --config)");
    status_cmd->add_flag("--json", as_json, "print the raw JSON");

    auto* dead_cmd = app.add_subcommand(
        "dead-letters",
        "list the messages plugins failed on, replay them through their route, or drop them");
    std::string dead_op = "list";
    int64_t dead_id = 0;
    bool dead_all = false;
    dead_cmd->add_option("action", dead_op, "list (default), replay or drop");
    dead_cmd->add_option("id", dead_id, "the dead letter's id (replay, drop)");
    dead_cmd->add_flag("--all", dead_all, "replay or drop every dead letter");
    dead_cmd->add_option("-c,--config", config_path, "configuration file (to find data_dir)");
    dead_cmd->add_option("-s,--socket", socket_path, "control socket path (instead of --config)");
    dead_cmd->add_flag("--json", as_json, "print the raw JSON");

    // Devices and tasks (docs/devices.md), through the control socket.
    auto* devices_cmd = app.add_subcommand("devices", "list the registered devices");
    auto* tasks_cmd = app.add_subcommand("tasks", "list tasks, or show one with its attempts");
    auto* task_cmd = app.add_subcommand("task", "submit a task (FILE) or cancel one (ID)");
    std::string task_state, task_id, task_action, task_arg;
    tasks_cmd->add_option("--state", task_state, "only tasks in this state");
    tasks_cmd->add_option("id", task_id, "show this task with its attempts");
    task_cmd->add_option("action", task_action, "submit or cancel")->required();
    task_cmd->add_option("arg", task_arg, "submit: the task's JSON file; cancel: its id")
        ->required();
    for (auto* c : {devices_cmd, tasks_cmd, task_cmd}) {
        c->add_option("-c,--config", config_path, "configuration file (to find data_dir)");
        c->add_option("-s,--socket", socket_path, "control socket path (instead of --config)");
        c->add_flag("--json", as_json, "print the raw JSON");
    }

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        return rc == 0 ? 0 : 2;
    }
    if (show_version) {
        std::cout << "edge-gateway " << egw::version << "\n";
        return 0;
    }

    if (!check_path.empty()) {
        try {
            egw::config checked = egw::load_config(check_path);
            std::vector<std::string> warnings;
            auto problems = egw::check_plugins(checked, warnings);
            for (const auto& w : warnings) std::cerr << check_path << ": warning: " << w << "\n";
            if (!problems.empty()) {
                print_problems(egw::config_error(check_path, problems), check_path);
                return 2;
            }
            std::cout << check_path << ": ok\n";
            return 0;
        } catch (const egw::config_error& e) {
            print_problems(e, check_path);
            return 2;
        }
    }

    if (devices_cmd->parsed() || tasks_cmd->parsed() || task_cmd->parsed()) {
        if (socket_path.empty()) {
            try {
                socket_path = egw::load_config(config_path).data_dir + "/control.sock";
            } catch (const egw::config_error& e) {
                print_problems(e, config_path);
                return 2;
            }
        }
        if (devices_cmd->parsed()) return egw::devices::devices_cli(socket_path, as_json);
        if (tasks_cmd->parsed())
            return egw::devices::tasks_cli(socket_path, task_state, task_id, as_json);
        return egw::devices::task_cli(socket_path, task_action, task_arg, as_json);
    }

    if (dead_cmd->parsed()) {
        if (socket_path.empty()) {
            try {
                socket_path = egw::load_config(config_path).data_dir + "/control.sock";
            } catch (const egw::config_error& e) {
                print_problems(e, config_path);
                return 2;
            }
        }
        return egw::dead_letters_cli(socket_path, dead_op, dead_id, dead_all, as_json);
    }

    if (status_cmd->parsed()) {
        if (socket_path.empty()) {
            try {
                socket_path = egw::load_config(config_path).data_dir + "/control.sock";
            } catch (const egw::config_error& e) {
                print_problems(e, config_path);
                return 2;
            }
        }
        return egw::print_status(socket_path, as_json);
    }

    egw::config cfg;
    try {
        cfg = egw::load_config(config_path);
    } catch (const egw::config_error& e) {
        print_problems(e, config_path);
        std::cerr << "edge-gateway: not started: fix " << config_path
                  << " (edge-gateway --check-config " << config_path << ")\n";
        return 2;
    }
    egw::log::set_level(cfg.log_level);
    {
        // The plugins are loaded once here so a bad one stops the start with exit 2 and a
        // clear message, like any other config problem.
        std::vector<std::string> warnings;
        auto problems = egw::check_plugins(cfg, warnings);
        for (const auto& w : warnings) egw::log::get("plugin")->warn("{}", w);
        if (!problems.empty()) {
            print_problems(egw::config_error(config_path, problems), config_path);
            std::cerr << "edge-gateway: not started: fix " << config_path << "\n";
            return 2;
        }
    }
    // A fixed threshold (glibc raises it after each free of a large block, up to 32 MiB): the
    // batch sinks' buffers of a few MiB (rows read, NDJSON, gzip) come from mmap and go back
    // to the system when freed, instead of staying in whichever worker's arena had them, which
    // kept the resident size of a backlog drain near 60 MiB.
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    try {
        egw::gateway gw(std::move(cfg), config_path);
        return gw.run();
    } catch (const egw::stopped_before_start&) {
        return 0;
    } catch (const std::exception& e) {
        egw::log::get("gateway")->critical("{}", e.what());
        return 1;
    }
}
