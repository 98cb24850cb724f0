// SPDX-License-Identifier: Apache-2.0
#include "gateway/plugin_control.h"

#include <cstdio>
#include <functional>
#include <iostream>
#include <memory>

namespace egw {
namespace {

using nlohmann::json;

constexpr size_t list_limit = 1000;  // dead letters one `list` shows

// A unit of work for the libuv pool: `run` on a worker, `done` back on the loop.
struct work {
    uv_work_t req{};
    std::function<void()> run;
    std::function<void()> done;
    static void start(uv_loop_t* loop, std::function<void()> run, std::function<void()> done) {
        auto* w = new work{{}, std::move(run), std::move(done)};
        w->req.data = w;
        uv_queue_work(
            loop, &w->req,
            [](uv_work_t* r) {
                try {
                    static_cast<work*>(r->data)->run();
                } catch (...) {
                    // run() records its own errors; nothing may cross into libuv.
                }
            },
            [](uv_work_t* r, int) {
                std::unique_ptr<work> owned(static_cast<work*>(r->data));
                owned->done();
            });
    }
};

// Payloads are bytes: JSON carries them as text when they are UTF-8, else as hex.
void put_payload(json& j, const std::string& payload) {
    try {
        (void)json(payload).dump();
        j["payload"] = payload;
    } catch (const json::exception&) {
        std::string hex;
        static const char* digits = "0123456789abcdef";
        for (unsigned char c : payload) {
            hex += digits[c >> 4];
            hex += digits[c & 15];
        }
        j["payload_hex"] = hex;
    }
}

json to_json(const storage::dead_letter& d) {
    json j = {
        {"id", d.id},      {"ts_ms", d.ts_ms},   {"route", d.route}, {"instance", d.instance},
        {"kind", d.kind},  {"reason", d.reason}, {"seq", d.seq},     {"msg_ts_ms", d.msg_ts_ms},
        {"topic", d.topic}};
    put_payload(j, d.payload);
    return j;
}

}  // namespace

void register_plugin_commands(control_server& server, uv_loop_t* loop, storage::buffer& buf,
                              plugins::stage& stage) {
    server.on("dead-letters", [loop, &buf, &stage](const json& req,
                                                   control_server::respond_fn respond) {
        const std::string op = req.value("op", "list");
        const bool all = req.value("all", false);
        const int64_t id = req.value("id", int64_t{0});
        if (op != "list" && op != "replay" && op != "drop") {
            respond({{"error", "unknown op '" + op + "' (list, replay, drop)"}});
            return;
        }
        if (op != "list" && !all && id <= 0) {
            respond({{"error", op + " needs an id or all"}});
            return;
        }
        auto letters = std::make_shared<std::vector<storage::dead_letter>>();
        auto reply = std::make_shared<json>(json::object());
        work::start(
            loop,
            [&buf, op, all, id, letters, reply] {
                try {
                    if (op == "list") {
                        *letters = buf.dead_letters(0, list_limit);
                        (*reply)["count"] = buf.dead_letter_count();
                    } else if (op == "drop") {
                        (*reply)["dropped"] =
                            all ? buf.drop_all_dead_letters() : int64_t{buf.drop_dead_letter(id)};
                    } else if (all) {
                        *letters = buf.dead_letters(0, SIZE_MAX >> 1);
                    } else {
                        *letters = buf.dead_letters(id - 1, 1);
                        if (!letters->empty() && letters->front().id != id) letters->clear();
                    }
                } catch (const std::exception& e) {
                    (*reply)["error"] = e.what();
                }
            },
            [&stage, op, all, letters, reply, respond] {
                if (reply->contains("error") || op == "drop") {
                    respond(*reply);
                    return;
                }
                if (op == "list") {
                    json items = json::array();
                    for (const auto& d : *letters) items.push_back(to_json(d));
                    (*reply)["dead_letters"] = std::move(items);
                    respond(*reply);
                    return;
                }
                if (letters->empty()) {
                    respond({{"error", all ? "no dead letters" : "no dead letter with that id"}});
                    return;
                }
                stage.replay(std::move(*letters), [respond](size_t n, std::string error) {
                    if (!error.empty()) {
                        respond({{"error", error}});
                    } else {
                        respond({{"replayed", n}});
                    }
                });
            });
    });
}

int dead_letters_cli(const std::string& socket_path, const std::string& op, int64_t id, bool all,
                     bool as_json) {
    if (op != "list" && op != "replay" && op != "drop") {
        std::cerr << "edge-gateway dead-letters: unknown action '" << op
                  << "' (list, replay ID, drop ID, or --all)\n";
        return 2;
    }
    if (op != "list" && !all && id <= 0) {
        std::cerr << "edge-gateway dead-letters " << op << ": give an ID or --all\n";
        return 2;
    }
    json req = {{"cmd", "dead-letters"}, {"op", op}};
    if (all) req["all"] = true;
    if (id > 0) req["id"] = id;
    json reply;
    try {
        reply = control_request(socket_path, req);
    } catch (const std::exception& e) {
        std::cerr << "edge-gateway dead-letters: no gateway answers on " << socket_path << ": "
                  << e.what() << "\n";
        return 1;
    }
    if (reply.contains("error")) {
        std::cerr << "edge-gateway dead-letters: " << reply["error"].get<std::string>() << "\n";
        return 1;
    }
    if (as_json || op != "list") {
        std::cout << reply.dump() << "\n";
        return 0;
    }
    std::printf("%-6s %-16s %-12s %-10s %-40s %s\n", "ID", "INSTANCE", "KIND", "SEQ", "TOPIC",
                "REASON");
    for (const auto& d : reply["dead_letters"]) {
        std::printf("%-6lld %-16s %-12s %-10llu %-40s %s\n",
                    static_cast<long long>(d["id"].get<int64_t>()),
                    d["instance"].get<std::string>().c_str(), d["kind"].get<std::string>().c_str(),
                    static_cast<unsigned long long>(d["seq"].get<uint64_t>()),
                    d["topic"].get<std::string>().c_str(), d["reason"].get<std::string>().c_str());
    }
    std::printf("%lld dead letter(s)\n", static_cast<long long>(reply.value("count", int64_t{0})));
    return 0;
}

}  // namespace egw
