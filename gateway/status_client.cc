// SPDX-License-Identifier: Apache-2.0
#include "gateway/status_client.h"

#include <cmath>
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "gateway/control.h"

namespace egw {
namespace {

std::string human_bytes(double b) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) {
        b /= 1024;
        ++u;
    }
    char s[32];
    std::snprintf(s, sizeof(s), u ? "%.1f %s" : "%.0f %s", b, units[u]);
    return s;
}

std::string duration(const nlohmann::json& v) {
    if (!v.is_number()) return "-";
    double s = v.get<double>();
    char out[32];
    if (s < 120) {
        std::snprintf(out, sizeof(out), "%.1fs", s);
    } else if (s < 7200) {
        std::snprintf(out, sizeof(out), "%.0fm%02.0fs", s / 60 - 0.5, std::fmod(s, 60.0));
    } else {
        std::snprintf(out, sizeof(out), "%.1fh", s / 3600);
    }
    return out;
}

// The plugin stage and its instances (plugins/host/stage.h), when any is configured.
void print_plugins(const nlohmann::json& j) {
    if (!j.contains("plugins") || j["plugins"]["instances"].empty()) return;
    const auto& st = j["plugins"]["stage"];
    std::printf(
        "\nstage     %lld rows waiting, %llu outputs, %llu dead letters, %llu commit errors\n",
        st["rows_waiting"].get<long long>(), st["outputs"].get<unsigned long long>(),
        st["dead_letters"].get<unsigned long long>(),
        st["commit_errors"].get<unsigned long long>());
    std::printf("%-16s %10s %10s %8s %8s %9s %9s %8s\n", "INSTANCE", "IN", "OUT", "ERRORS", "DEAD",
                "P50(us)", "P99(us)", "RESTARTS");
    for (const auto& [name, i] : j["plugins"]["instances"].items()) {
        unsigned long long errors = 0;
        for (const auto& [kind, n] : i["errors"].items()) errors += n.get<unsigned long long>();
        auto us = [](const nlohmann::json& v) {
            return v.is_number() ? std::to_string(static_cast<long long>(v.get<double>())) : "-";
        };
        std::printf("%-16s %10llu %10llu %8llu %8llu %9s %9s %8llu\n", name.c_str(),
                    i["in"].get<unsigned long long>(), i["out"].get<unsigned long long>(), errors,
                    i["dead_letters"].get<unsigned long long>(), us(i["p50_us"]).c_str(),
                    us(i["p99_us"]).c_str(), i["restarts"].get<unsigned long long>());
    }
}

void print_table(const nlohmann::json& j) {
    const auto& c = j["counters"];
    const auto& b = j["buffer"];
    const auto& l = j["local"];
    std::printf("gateway   %s (version %s, pid %lld, up %s)\n",
                j["gateway_id"].get<std::string>().c_str(), j["version"].get<std::string>().c_str(),
                j["pid"].get<long long>(), duration(j["uptime_s"]).c_str());
    std::printf("local     %s %s%s\n", l["uri"].get<std::string>().c_str(),
                l["connected"].get<bool>()
                    ? (l["subscribed"].get<bool>() ? "connected, subscribed" : "connected")
                    : "disconnected",
                l["last_error"].get<std::string>().empty()
                    ? ""
                    : (" (" + l["last_error"].get<std::string>() + ")").c_str());
    std::printf("buffer    %lld rows, %s of %s (%s)%s\n", b["rows"].get<long long>(),
                human_bytes(b["bytes"].get<double>()).c_str(),
                human_bytes(b["max_bytes"].get<double>()).c_str(),
                b["when_full"].get<std::string>().c_str(),
                b["degraded"].get<bool>() ? ", DEGRADED: started from a fresh file" : "");
    std::printf("counters  received %llu, buffered %llu, sent %llu, acked %llu\n",
                c["received"].get<unsigned long long>(), c["buffered"].get<unsigned long long>(),
                c["sent"].get<unsigned long long>(), c["acked"].get<unsigned long long>());
    const auto& d = c["dropped"];
    std::printf("dropped   no_route %llu, too_large %llu, buffer_full %llu, disk_full %llu\n",
                d["no_route"].get<unsigned long long>(), d["too_large"].get<unsigned long long>(),
                d["buffer_full"].get<unsigned long long>(),
                d["disk_full"].get<unsigned long long>());
    std::printf("errors    buffer %llu, publish %llu\n\n",
                c["errors"]["buffer"].get<unsigned long long>(),
                c["errors"]["publish"].get<unsigned long long>());
    std::printf("%-12s %-9s %10s %11s %10s %10s %10s %8s\n", "SINK", "STATE", "WAITING", "BYTES",
                "OLDEST", "ETA", "MSG/S", "INFLIGHT");
    for (const auto& [name, s] : j["sinks"].items()) {
        std::printf("%-12s %-9s %10lld %11s %10s %10s %10.0f %8llu\n", name.c_str(),
                    s["state"].get<std::string>().c_str(), s["rows_waiting"].get<long long>(),
                    human_bytes(s["bytes_waiting"].get<double>()).c_str(),
                    duration(s["oldest_age_s"]).c_str(), duration(s["eta_s"]).c_str(),
                    s.value("rate_msg_s", 0.0),
                    // Batch sinks (dir, http, s3) have no MQTT in-flight window.
                    s.contains("inflight") && s["inflight"].is_number()
                        ? s["inflight"].get<unsigned long long>()
                        : 0ull);
        if (!s["last_error"].get<std::string>().empty()) {
            std::printf("%-12s last error: %s\n", "", s["last_error"].get<std::string>().c_str());
        }
    }
    print_plugins(j);
}

}  // namespace

int print_status(const std::string& socket_path, bool as_json) {
    nlohmann::json reply;
    try {
        reply = control_request(socket_path, {{"cmd", "status"}});
    } catch (const std::exception& e) {
        std::cerr << "edge-gateway status: no gateway answers on " << socket_path << ": "
                  << e.what() << "\n";
        return 1;
    }
    if (as_json) {
        std::cout << reply.dump() << "\n";
        return 0;
    }
    try {
        print_table(reply);
    } catch (const std::exception& e) {
        std::cerr << "edge-gateway status: unexpected reply: " << e.what() << "\n";
        return 1;
    }
    return 0;
}

}  // namespace egw
