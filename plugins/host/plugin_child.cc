// SPDX-License-Identifier: Apache-2.0
//
// edge-gateway-plugin-host: runs one plugin instance (a native .so or a .lua script) for the
// gateway's isolated_instance, in a process of its own, so that a plugin that segfaults, aborts
// or hangs takes only this process down. Started by the gateway with the socket on fd 3 and the
// shared memory region on fd 4 (see isolation_protocol.h); serves requests one at a time until
// the socket closes, then exits. Not meant to be run by hand.
//
// Hardening: it dies with the gateway (PR_SET_PDEATHSIG), closes every other inherited fd,
// writes no core files, and ignores SIGPIPE. Its stderr is the gateway's.
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <sched.h>
#include <signal.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "edge-gateway/plugin.h"
#include "plugins/host/isolation_protocol.h"
#include "plugins/host/lua_instance.h"
#include "plugins/host/runtime_util.h"

namespace egw::plugins {
namespace {

using namespace isolation;

int g_sock = kChildSocketFd;

// Plugin log lines (runtime::plugin_log writes to the "plugins" logger) go to the gateway as
// log packets, so they reach its log with its formatting and its level.
class socket_sink final : public spdlog::sinks::base_sink<std::mutex> {
protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        char buf[sizeof(log_packet) + kMaxLogText];
        log_packet h{packet::log, EGW_LOG_INFO};
        switch (msg.level) {
            case spdlog::level::trace:
            case spdlog::level::debug:
                h.level = EGW_LOG_DEBUG;
                break;
            case spdlog::level::info:
                h.level = EGW_LOG_INFO;
                break;
            case spdlog::level::warn:
                h.level = EGW_LOG_WARN;
                break;
            default:
                h.level = EGW_LOG_ERROR;
                break;
        }
        size_t n = std::min(msg.payload.size(), kMaxLogText);
        std::memcpy(buf, &h, sizeof h);
        std::memcpy(buf + sizeof h, msg.payload.data(), n);
        send_packet(g_sock, buf, sizeof h + n);
    }
    void flush_() override {}
};

// A native plugin behind the instance interface: the C ABI's host table implemented here, in
// the child. The same checks as the in-process loader: the ABI major, the descriptor's size,
// outputs through runtime::check_output, exceptions caught at the boundary.
class native_instance_in_child final : public instance {
public:
    explicit native_instance_in_child(const instance_spec& spec)
        : name_(spec.name), limits_(spec.limits) {
        handle_ = dlopen(spec.path.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (handle_ == nullptr) throw std::runtime_error(std::string("dlopen: ") + dlerror());
        auto entry = reinterpret_cast<egw_plugin_entry_fn>(dlsym(handle_, EGW_PLUGIN_ENTRY_SYMBOL));
        if (entry == nullptr)
            throw std::runtime_error(spec.path + ": no " EGW_PLUGIN_ENTRY_SYMBOL " symbol");
        p_ = entry();
        if (p_ == nullptr) throw std::runtime_error(spec.path + ": entry returned NULL");
        if (p_->abi_major != EGW_ABI_MAJOR)
            throw std::runtime_error(spec.path + ": plugin ABI major " +
                                     std::to_string(p_->abi_major) + ", the gateway's is " +
                                     std::to_string(EGW_ABI_MAJOR));
        if (p_->struct_size < offsetof(egw_plugin, on_message) + sizeof(void*) ||
            p_->create == nullptr || p_->on_message == nullptr)
            throw std::runtime_error(spec.path + ": descriptor too short or without hooks");
        host_.struct_size = sizeof host_;
        host_.abi_minor = EGW_ABI_MINOR;
        host_.log = &native_instance_in_child::h_log;
        host_.emit = &native_instance_in_child::h_emit;
        host_.set_timer = &native_instance_in_child::h_set_timer;
        host_.write_state = &native_instance_in_child::h_write_state;
        std::string cfg = spec.config.dump();
        char err[1024] = "";
        try {
            inst_ = p_->create(&host_, this, cfg.c_str(), cfg.size(), err, sizeof err);
        } catch (const std::exception& e) {
            throw std::runtime_error(std::string("create threw: ") + e.what());
        } catch (...) {
            throw std::runtime_error("create threw");
        }
        err[sizeof err - 1] = '\0';
        if (inst_ == nullptr) throw std::runtime_error(err[0] ? err : "config rejected");
    }
    ~native_instance_in_child() override {
        if (inst_ != nullptr && has(offsetof(egw_plugin, destroy)) && p_->destroy != nullptr) {
            try {
                p_->destroy(inst_);
            } catch (...) {
            }
        }
        // The handle stays open: the process exits soon anyway, and a plugin's static
        // destructors running at dlclose are one more place to crash.
    }

    bool heavy() const override { return true; }
    unsigned max_concurrent() const override { return 1; }
    bool stateful() const override {
        return has(offsetof(egw_plugin, on_snapshot)) && p_->on_snapshot != nullptr;
    }

    call_result on_message(const message_view& m) override {
        egw_message msg{};
        msg.struct_size = sizeof msg;
        msg.topic = m.topic.data();
        msg.topic_len = m.topic.size();
        msg.payload = reinterpret_cast<const uint8_t*>(m.payload.data());
        msg.payload_len = m.payload.size();
        msg.qos = m.qos;
        msg.ts_ms = m.ts_ms;
        msg.seq = m.seq;
        msg.device_id = m.device_id.data();
        msg.device_id_len = m.device_id.size();
        msg.content_type = m.content_type.data();
        msg.content_type_len = m.content_type.size();
        return invoke(m.topic, nullptr,
                      [&](egw_call* c) { return p_->on_message(inst_, &msg, c); });
    }
    call_result on_timer(int64_t now_ms) override {
        if (!has(offsetof(egw_plugin, on_timer)) || p_->on_timer == nullptr) return {};
        return invoke({}, nullptr, [&](egw_call* c) { return p_->on_timer(inst_, now_ms, c); });
    }
    call_result snapshot(std::string& state) override {
        state.clear();
        if (!stateful()) return {failure_kind::error, "the plugin keeps no state", {}, -1};
        return invoke({}, &state, [&](egw_call* c) { return p_->on_snapshot(inst_, c); });
    }
    call_result restore(std::string_view state) override {
        if (!has(offsetof(egw_plugin, on_restore)) || p_->on_restore == nullptr) return {};
        return invoke({}, nullptr, [&](egw_call*) {
            return p_->on_restore(inst_, reinterpret_cast<const uint8_t*>(state.data()),
                                  state.size());
        });
    }

private:
    bool has(size_t offset) const { return p_->struct_size >= offset + sizeof(void*); }

    template <class F>
    call_result invoke(std::string_view input_topic, std::string* state, F&& hook) {
        call_result r;
        egw_call_impl c{this, &r, input_topic, state, {}, {}, 0};
        int rc = EGW_ERROR;
        current_ = &c;
        try {
            rc = hook(reinterpret_cast<egw_call*>(&c));
        } catch (const std::exception& e) {
            r.failure = failure_kind::exception;
            r.reason = std::string("exception: ") + e.what();
        } catch (...) {
            r.failure = failure_kind::exception;
            r.reason = "exception of unknown type";
        }
        current_ = nullptr;
        if (r.ok() && !c.bad_output.empty()) {
            r.failure = failure_kind::bad_output;
            r.reason = c.bad_output;
        } else if (r.ok() && rc != EGW_OK) {
            r.failure = failure_kind::error;
            r.reason = c.last_error.empty() ? "the hook returned an error" : c.last_error;
        }
        if (!r.ok()) {
            r.outputs.clear();
            r.timer_ms = -1;
        }
        return r;
    }

    struct egw_call_impl {
        native_instance_in_child* self;
        call_result* result;
        std::string_view input_topic;
        std::string* state;
        std::string bad_output;
        std::string last_error;
        uint64_t out_bytes = 0;
    };

    static void h_log(void* host_ctx, int level, const char* text, size_t len) {
        auto* self = static_cast<native_instance_in_child*>(host_ctx);
        self->log_limit_.log(self->name_, level, std::string_view(text, len));
        if (level >= EGW_LOG_ERROR && self->current_ != nullptr) {
            try {
                self->current_->last_error.assign(text, len);
            } catch (...) {
            }
        }
    }
    static int h_emit(egw_call* call, const egw_output* out) {
        auto* c = reinterpret_cast<egw_call_impl*>(call);
        if (c == nullptr || out == nullptr || c->state != nullptr) return EGW_ERROR;
        try {
            output o;
            // Fields past the plugin's struct_size are left at their defaults.
            auto covers = [&](size_t off, size_t sz) { return out->struct_size >= off + sz; };
            uint32_t flags = covers(offsetof(egw_output, flags), 4) ? out->flags : 0;
            if (out->topic != nullptr) o.topic.assign(out->topic, out->topic_len);
            if (out->payload != nullptr)
                o.payload.assign(reinterpret_cast<const char*>(out->payload), out->payload_len);
            if (covers(offsetof(egw_output, content_type_len), sizeof(size_t)) &&
                out->content_type != nullptr)
                o.content_type.assign(out->content_type, out->content_type_len);
            if (covers(offsetof(egw_output, priority), 4)) o.priority = out->priority;
            if (covers(offsetof(egw_output, property_count), sizeof(size_t)) &&
                out->properties != nullptr) {
                for (size_t i = 0; i < out->property_count; ++i) {
                    const egw_property& p = out->properties[i];
                    o.properties.emplace_back(std::string(p.key, p.key_len),
                                              std::string(p.value, p.value_len));
                }
            }
            bool suffix = (flags & EGW_OUTPUT_SUFFIX) != 0;
            if (suffix && c->input_topic.empty()) {
                c->bad_output = "emit: a suffix needs an input topic (not in on_timer)";
                return EGW_ERROR;
            }
            std::string why =
                runtime::check_output(o, suffix, c->input_topic, c->self->limits_, c->out_bytes);
            if (!why.empty()) {
                c->bad_output = std::move(why);
                return EGW_ERROR;
            }
            c->out_bytes += o.payload.size();
            c->result->outputs.push_back(std::move(o));
            return EGW_OK;
        } catch (...) {
            c->bad_output = "emit: out of memory";
            return EGW_ERROR;
        }
    }
    static void h_set_timer(egw_call* call, int64_t at_ms) {
        auto* c = reinterpret_cast<egw_call_impl*>(call);
        if (c != nullptr && c->state == nullptr) c->result->timer_ms = at_ms < 0 ? 0 : at_ms;
    }
    static int h_write_state(egw_call* call, const uint8_t* data, size_t len) {
        auto* c = reinterpret_cast<egw_call_impl*>(call);
        if (c == nullptr || c->state == nullptr) return EGW_ERROR;
        try {
            c->state->append(reinterpret_cast<const char*>(data), len);
            return EGW_OK;
        } catch (...) {
            return EGW_ERROR;
        }
    }

    std::string name_;
    call_limits limits_;
    void* handle_ = nullptr;
    const egw_plugin* p_ = nullptr;
    void* inst_ = nullptr;
    egw_host host_{};
    egw_call_impl* current_ = nullptr;
    runtime::log_limiter log_limit_;
};

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Writes `r` (and `state`) into the region and sends the reply. False when the socket is gone.
bool answer(region& shm, const call_result& r, std::string_view state = {}, bool stateful = false) {
    reply h{};
    h.kind = packet::reply;
    h.failure = int32_t(r.failure);
    h.timer_ms = r.timer_ms;
    size_t need = r.reason.size() + state.size() + encoded_size(r.outputs);
    call_result too_big;
    const call_result* res = &r;
    if (!shm.reserve(need)) {
        too_big.failure = failure_kind::bad_output;
        too_big.reason = "outputs of " + std::to_string(need) + " bytes do not fit the region";
        res = &too_big;
        h.failure = int32_t(res->failure);
        h.timer_ms = -1;
        state = {};
        need = res->reason.size();
    }
    writer w{shm.data()};
    w.str(res->reason);
    w.str(state);
    encode(w, res->outputs);
    h.reason_len = uint32_t(res->reason.size());
    h.output_count = uint32_t(res->outputs.size());
    h.data_len = need;
    h.region_size = shm.size();
    h.stateful = stateful ? 1 : 0;
    return send_packet(g_sock, &h, sizeof h);
}

int serve() {
    region shm;
    struct stat st {};
    if (fstat(kChildShmFd, &st) != 0 || !shm.attach(kChildShmFd, size_t(st.st_size))) {
        std::fprintf(stderr, "edge-gateway-plugin-host: cannot map the shared region\n");
        return 1;
    }
    std::unique_ptr<instance> inst;
    for (;;) {
        request q{};
        ssize_t n = recv(g_sock, &q, sizeof q, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) return 0;  // the gateway closed the socket: a clean stop
        if (n != ssize_t(sizeof q)) return 1;
        if (!shm.remap(q.region_size) || q.data_len > shm.size()) return 1;
        reader in{shm.data(), shm.data() + q.data_len};
        call_result r;
        std::string state;
        switch (q.code) {
            case op::create: {
                instance_spec spec;
                spec.name = in.str(q.name_len);
                spec.path = in.str(q.path_len);
                std::string_view cfg = in.str(q.data_len - q.name_len - q.path_len);
                spec.limits.time_budget_ms = q.time_budget_ms;
                spec.limits.max_output_bytes = q.max_output_bytes;
                spec.limits.memory_cap_bytes = q.memory_cap_bytes;
                try {
                    spec.config = nlohmann::json::parse(cfg);
                    if (ends_with(spec.path, ".lua")) {
                        inst = make_lua_instance(spec);
                    } else {
                        inst = std::make_unique<native_instance_in_child>(spec);
                    }
                } catch (const std::exception& e) {
                    r.failure = failure_kind::error;
                    r.reason = e.what();
                }
                if (!answer(shm, r, {}, inst && inst->stateful())) return 1;
                continue;
            }
            case op::message: {
                message_view m;
                m.topic = in.str(q.topic_len);
                m.device_id = in.str(q.device_len);
                m.content_type = in.str(q.content_type_len);
                m.payload = in.str(q.payload_len);
                m.qos = q.qos;
                m.ts_ms = q.ts_ms;
                m.seq = q.seq;
                if (inst) r = inst->on_message(m);
                break;
            }
            case op::timer:
                if (inst) r = inst->on_timer(q.ts_ms);
                break;
            case op::snapshot:
                if (inst) r = inst->snapshot(state);
                break;
            case op::restore: {
                // The state is copied out first: the reply reuses the region.
                std::string s(in.str(q.data_len));
                if (inst) r = inst->restore(s);
                break;
            }
            default:
                return 1;
        }
        if (!inst) r = {failure_kind::error, "no instance (create failed)", {}, -1};
        if (!answer(shm, r, state)) return 1;
    }
}

}  // namespace
}  // namespace egw::plugins

int main(int argc, char** argv) {
    // argv[1] is the gateway's pid: if it died before PR_SET_PDEATHSIG took effect, stop now.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (argc < 2 || getppid() != pid_t(std::atoll(argv[1]))) return 1;
    close_range(egw::plugins::isolation::kChildShmFd + 1, ~0U, 0);
    rlimit no_core{0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    signal(SIGPIPE, SIG_IGN);
    // Camera frames and their outputs are MiB-sized and come every call: keep such blocks in
    // the heap for reuse rather than glibc's default of mmap/munmap (or trimming) per block,
    // which costs a page fault per 4 KiB on every call.
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    // Plugin work is throughput work: SCHED_BATCH keeps its fair share of the CPU but does not
    // preempt the thread that woke it, so answering the gateway never delays the gateway's
    // loop thread (docs/cameras.md, "The loop's longest stall"). Best effort.
    sched_param batch{};
    sched_setscheduler(0, SCHED_BATCH, &batch);

    auto sink = std::make_shared<egw::plugins::socket_sink>();
    auto logger = std::make_shared<spdlog::logger>("plugins", sink);
    logger->set_pattern("%v");
    logger->set_level(spdlog::level::trace);
    spdlog::register_logger(logger);
    try {
        return egw::plugins::serve();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "edge-gateway-plugin-host: %s\n", e.what());
        return 1;
    }
}
