// SPDX-License-Identifier: Apache-2.0
//
// The Lua runtime. Debian's liblua5.4 is built as C, so a Lua error is a longjmp: it must never
// cross a C++ frame that owns something. Two rules keep that true here:
//  - the host enters Lua only through lua_pcall of a small C function (a "trampoline"), so every
//    error, including "not enough memory" while building the message table, stops at that pcall;
//  - a C function that Lua calls (emit, json.encode, ...) first reads its arguments with the Lua
//    API, then does its C++ work inside a scope with a try/catch, and raises the Lua error only
//    after that scope has ended. What must outlive the scope lives in the instance (scratch_).
#include "plugins/host/lua_instance.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>

#include <lua.hpp>

#include "edge-gateway/plugin.h"
#include "plugins/host/runtime_util.h"

namespace egw::plugins {
namespace {

using json = nlohmann::json;

// The count hook runs every kHookEvery VM instructions: a clock read (~20 ns through the vDSO)
// every ~1000 instructions (a few microseconds) costs about 1 % and stops a loop within a few
// microseconds of its deadline.
constexpr int kHookEvery = 1000;
// Deeper JSON than this is refused rather than recursed into (the C stack is the limit).
constexpr int kMaxJsonDepth = 200;

constexpr const char* kHooksKey = "egw.hooks";
constexpr const char* kArrayMtKey = "egw.json_array";

class lua_instance final : public instance {
public:
    explicit lua_instance(const instance_spec& spec);
    ~lua_instance() override {
        if (L_ != nullptr) lua_close(L_);
    }
    lua_instance(const lua_instance&) = delete;
    lua_instance& operator=(const lua_instance&) = delete;

    bool heavy() const override { return true; }
    unsigned max_concurrent() const override { return 1; }
    bool stateful() const override { return stateful_; }

    call_result on_message(const message_view& m) override;
    call_result on_timer(int64_t now_ms) override;
    call_result snapshot(std::string& state) override;
    call_result restore(std::string_view state) override;

private:
    enum class phase { load, init, message, timer, snapshot, restore };

    static lua_instance* self(lua_State* L) {
        return *static_cast<lua_instance**>(lua_getextraspace(L));
    }
    static void* alloc(void* ud, void* ptr, size_t osize, size_t nsize) noexcept;
    static void hook(lua_State* L, lua_Debug* ar);

    // Trampolines, each run under lua_pcall with one light userdata argument.
    static int do_load(lua_State* L);
    static int do_init(lua_State* L);
    static int do_message(lua_State* L);
    static int do_timer(lua_State* L);
    static int do_snapshot(lua_State* L);
    static int do_restore(lua_State* L);

    // Host functions the script calls.
    static int l_emit(lua_State* L);
    static int l_set_timer(lua_State* L);
    static int l_log(lua_State* L);
    static int l_print(lua_State* L);
    static int l_json_encode(lua_State* L);
    static int l_json_decode(lua_State* L);

    // Pushes `j` as Lua values (raises a Lua error past kMaxJsonDepth or on memory).
    static void push_json(lua_State* L, const json& j, int depth);
    // Converts the value at `idx` into `out`; false with `err` set when it cannot. Uses only Lua
    // API calls that never raise.
    static bool to_json(lua_State* L, int idx, json& out, int depth, std::string& err);

    call_result run(phase p, lua_CFunction fn, void* arg);
    void open_sandbox();

    std::string name_;
    std::string path_;
    call_limits limits_;
    lua_State* L_ = nullptr;
    std::mutex mu_;

    // Allocator accounting (only touched by the thread inside the state).
    size_t used_ = 0;
    size_t cap_ = 0;
    bool mem_refused_ = false;

    // The current call.
    phase phase_ = phase::load;
    int64_t deadline_ns_ = 0;
    bool timed_out_ = false;
    bool bad_output_ = false;
    call_result* current_ = nullptr;
    const message_view* msg_ = nullptr;
    int64_t pending_timer_ = -1;  // set_timer during init: reported with the next call

    bool stateful_ = false;
    std::string script_;
    const json* config_ = nullptr;  // during init only
    std::string scratch_;           // json.encode's result, snapshot bytes
    json scratch_json_;             // json.decode's document
    std::string err_;               // a reason to raise once C++ scopes have ended
};

void* lua_instance::alloc(void* ud, void* ptr, size_t osize, size_t nsize) noexcept {
    auto* s = static_cast<lua_instance*>(ud);
    size_t old = ptr != nullptr ? osize : 0;
    if (nsize == 0) {
        std::free(ptr);
        s->used_ -= old;
        return nullptr;
    }
    // Lua requires that shrinking never fails; only growth is checked against the cap.
    if (nsize > old && s->used_ - old + nsize > s->cap_) {
        s->mem_refused_ = true;
        return nullptr;
    }
    void* p = std::realloc(ptr, nsize);
    if (p == nullptr) {
        if (nsize <= old) return ptr;
        s->mem_refused_ = true;
        return nullptr;
    }
    s->used_ = s->used_ - old + nsize;
    return p;
}

void lua_instance::hook(lua_State* L, lua_Debug*) {
    lua_instance* s = self(L);
    if (runtime::monotonic_ns() < s->deadline_ns_) return;
    s->timed_out_ = true;
    // From now on every instruction fails, so a script that catches the error with pcall in a
    // loop is stopped at the first instruction it runs outside that pcall.
    lua_sethook(L, hook, LUA_MASKCOUNT, 1);
    luaL_error(L, "time budget of %d ms exceeded", int(s->limits_.time_budget_ms));
}

lua_instance::lua_instance(const instance_spec& spec)
    : name_(spec.name), path_(spec.path), limits_(spec.limits) {
    {
        std::ifstream in(path_, std::ios::binary);
        if (!in) throw std::runtime_error("cannot read Lua script " + path_);
        std::ostringstream ss;
        ss << in.rdbuf();
        script_ = ss.str();
    }
    cap_ = limits_.memory_cap_bytes;
    L_ = lua_newstate(&lua_instance::alloc, this);
    if (L_ == nullptr) throw std::runtime_error(path_ + ": memory cap too small for a Lua state");
    *static_cast<lua_instance**>(lua_getextraspace(L_)) = this;

    call_result r = run(phase::load, &lua_instance::do_load, nullptr);
    if (r.ok()) {
        config_ = &spec.config;
        r = run(phase::init, &lua_instance::do_init, nullptr);
        config_ = nullptr;
    }
    if (!r.ok()) {
        lua_close(L_);  // the destructor does not run for a constructor that throws
        L_ = nullptr;
        throw std::runtime_error(r.reason);
    }
}

void lua_instance::open_sandbox() {
    // Only libraries that cannot reach outside the state: no io, package, debug or os.execute.
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base},        {LUA_TABLIBNAME, luaopen_table},
        {LUA_STRLIBNAME, luaopen_string}, {LUA_MATHLIBNAME, luaopen_math},
        {LUA_UTF8LIBNAME, luaopen_utf8},  {LUA_COLIBNAME, luaopen_coroutine},
        {LUA_OSLIBNAME, luaopen_os},
    };
    for (const auto& lib : libs) {
        luaL_requiref(L_, lib.name, lib.func, 1);
        lua_pop(L_, 1);
    }
    // Loading code (and bytecode, which can break the VM) stays with the host.
    for (const char* g : {"dofile", "loadfile", "load", "require"}) {
        lua_pushnil(L_);
        lua_setglobal(L_, g);
    }
    lua_getglobal(L_, "string");
    lua_pushnil(L_);
    lua_setfield(L_, -2, "dump");
    lua_pop(L_, 1);
    lua_getglobal(L_, "os");
    for (const char* f :
         {"execute", "exit", "getenv", "remove", "rename", "tmpname", "setlocale"}) {
        lua_pushnil(L_);
        lua_setfield(L_, -2, f);
    }
    lua_pop(L_, 1);

    lua_register(L_, "emit", &lua_instance::l_emit);
    lua_register(L_, "set_timer", &lua_instance::l_set_timer);
    lua_register(L_, "log", &lua_instance::l_log);
    lua_register(L_, "print", &lua_instance::l_print);

    lua_createtable(L_, 0, 0);  // the metatable that marks decoded arrays
    lua_setfield(L_, LUA_REGISTRYINDEX, kArrayMtKey);
    lua_createtable(L_, 0, 4);
    lua_pushcfunction(L_, &lua_instance::l_json_encode);
    lua_setfield(L_, -2, "encode");
    lua_pushcfunction(L_, &lua_instance::l_json_decode);
    lua_setfield(L_, -2, "decode");
    lua_pushlightuserdata(L_, nullptr);
    lua_setfield(L_, -2, "null");
    lua_getfield(L_, LUA_REGISTRYINDEX, kArrayMtKey);
    lua_setfield(L_, -2, "array_mt");
    lua_setglobal(L_, "json");
}

int lua_instance::do_load(lua_State* L) {
    lua_instance* s = self(L);
    s->open_sandbox();
    std::string_view base = s->path_;
    if (auto slash = base.rfind('/'); slash != std::string_view::npos)
        base.remove_prefix(slash + 1);
    lua_pushliteral(L, "@");  // errors then read "my_filter.lua:3: ..."
    lua_pushlstring(L, base.data(), base.size());
    lua_concat(L, 2);
    const char* chunkname = lua_tostring(L, -1);
    if (luaL_loadbufferx(L, s->script_.data(), s->script_.size(), chunkname, "t") != LUA_OK)
        return lua_error(L);
    lua_call(L, 0, 1);
    // The script either returns a table of hooks or defines them as globals.
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_pushglobaltable(L);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, kHooksKey);
    if (lua_getfield(L, -1, "on_message") != LUA_TFUNCTION)
        return luaL_error(L, "%s: the script defines no on_message function", chunkname + 1);
    lua_pop(L, 1);
    bool has_snapshot = lua_getfield(L, -1, "snapshot") == LUA_TFUNCTION;
    bool has_restore = lua_getfield(L, -2, "restore") == LUA_TFUNCTION;
    if (has_snapshot != has_restore)
        return luaL_error(L, "%s: a stateful script defines both snapshot and restore",
                          chunkname + 1);
    s->stateful_ = has_snapshot;
    return 0;
}

// Pushes hooks[name]; returns false (and pushes nothing) when the script has no such function.
static bool push_hook(lua_State* L, const char* name) {
    lua_getfield(L, LUA_REGISTRYINDEX, kHooksKey);
    int t = lua_getfield(L, -1, name);
    lua_remove(L, -2);
    if (t == LUA_TFUNCTION) return true;
    lua_pop(L, 1);
    return false;
}

int lua_instance::do_init(lua_State* L) {
    lua_instance* s = self(L);
    if (!push_hook(L, "init")) return 0;
    push_json(L, *s->config_, 0);
    lua_call(L, 1, 2);
    // init may also reject by returning false, "reason".
    if (lua_type(L, -2) == LUA_TBOOLEAN && !lua_toboolean(L, -2)) {
        if (lua_type(L, -1) == LUA_TSTRING) return lua_error(L);
        return luaL_error(L, "init rejected the config");
    }
    return 0;
}

int lua_instance::do_message(lua_State* L) {
    lua_instance* s = self(L);
    const message_view& m = *s->msg_;
    push_hook(L, "on_message");
    lua_createtable(L, 0, 8);
    lua_pushlstring(L, m.topic.data(), m.topic.size());
    lua_setfield(L, -2, "topic");
    lua_pushlstring(L, m.payload.data(), m.payload.size());
    lua_setfield(L, -2, "payload");
    lua_pushinteger(L, m.qos);
    lua_setfield(L, -2, "qos");
    lua_pushinteger(L, m.ts_ms);
    lua_setfield(L, -2, "ts_ms");
    lua_pushinteger(L, lua_Integer(m.seq));
    lua_setfield(L, -2, "seq");
    if (!m.device_id.empty()) {
        lua_pushlstring(L, m.device_id.data(), m.device_id.size());
        lua_setfield(L, -2, "device_id");
    }
    if (!m.content_type.empty()) {
        lua_pushlstring(L, m.content_type.data(), m.content_type.size());
        lua_setfield(L, -2, "content_type");
    }
    lua_call(L, 1, 0);
    return 0;
}

int lua_instance::do_timer(lua_State* L) {
    auto now_ms = *static_cast<const int64_t*>(lua_touserdata(L, 1));
    if (!push_hook(L, "on_timer")) return 0;
    lua_pushinteger(L, now_ms);
    lua_call(L, 1, 0);
    return 0;
}

int lua_instance::do_snapshot(lua_State* L) {
    lua_instance* s = self(L);
    auto* out = static_cast<std::string*>(lua_touserdata(L, 1));
    if (!push_hook(L, "snapshot")) return luaL_error(L, "the script has no snapshot function");
    lua_call(L, 0, 1);
    if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "snapshot() returned a %s, not a string", luaL_typename(L, -1));
    size_t n = 0;
    const char* p = lua_tolstring(L, -1, &n);
    bool ok = true;
    try {
        out->assign(p, n);
    } catch (...) {
        ok = false;
    }
    if (!ok) {
        s->mem_refused_ = true;
        return luaL_error(L, "snapshot of %d bytes: out of memory", int(n));
    }
    return 0;
}

int lua_instance::do_restore(lua_State* L) {
    auto* state = static_cast<const std::string_view*>(lua_touserdata(L, 1));
    if (!push_hook(L, "restore")) return luaL_error(L, "the script has no restore function");
    lua_pushlstring(L, state->data(), state->size());
    lua_call(L, 1, 0);
    return 0;
}

call_result lua_instance::run(phase p, lua_CFunction fn, void* arg) {
    call_result r;
    phase_ = p;
    current_ = &r;
    timed_out_ = false;
    mem_refused_ = false;
    bad_output_ = false;
    deadline_ns_ = runtime::monotonic_ns() + int64_t(limits_.time_budget_ms) * 1'000'000;
    lua_sethook(L_, &lua_instance::hook, LUA_MASKCOUNT, kHookEvery);
    lua_settop(L_, 0);
    lua_pushcfunction(L_, fn);
    lua_pushlightuserdata(L_, arg);
    int rc = lua_pcall(L_, 1, 0, 0);
    lua_sethook(L_, &lua_instance::hook, LUA_MASKCOUNT, kHookEvery);
    current_ = nullptr;
    if (rc != LUA_OK) {
        if (lua_type(L_, -1) == LUA_TSTRING) {
            r.reason = lua_tostring(L_, -1);
        } else {
            r.reason = std::string("error object is a ") + luaL_typename(L_, -1) + " value";
        }
        lua_settop(L_, 0);
    }
    // A refused allocation counts even when the script caught the error and went on: it went
    // over its cap. Likewise an invalid emit{}.
    if (mem_refused_) {
        r.failure = failure_kind::memory;
        r.reason = "memory cap of " + std::to_string(cap_) + " bytes exceeded" +
                   (r.reason.empty() ? std::string() : " (" + r.reason + ")");
        lua_gc(L_, LUA_GCCOLLECT);
    } else if (timed_out_) {
        r.failure = failure_kind::timeout;
    } else if (bad_output_) {
        r.failure = failure_kind::bad_output;
        if (r.reason.empty()) r.reason = err_;
    } else if (rc != LUA_OK) {
        r.failure = failure_kind::error;
    }
    if (!r.ok()) {
        r.outputs.clear();
        r.timer_ms = -1;
    } else if (p != phase::init && p != phase::load && pending_timer_ != -1 && r.timer_ms == -1) {
        r.timer_ms = pending_timer_;
        pending_timer_ = -1;
    }
    return r;
}

call_result lua_instance::on_message(const message_view& m) {
    std::lock_guard lock(mu_);
    msg_ = &m;
    call_result r = run(phase::message, &lua_instance::do_message, nullptr);
    msg_ = nullptr;
    return r;
}

call_result lua_instance::on_timer(int64_t now_ms) {
    std::lock_guard lock(mu_);
    return run(phase::timer, &lua_instance::do_timer, &now_ms);
}

call_result lua_instance::snapshot(std::string& state) {
    std::lock_guard lock(mu_);
    state.clear();
    return run(phase::snapshot, &lua_instance::do_snapshot, &state);
}

call_result lua_instance::restore(std::string_view state) {
    std::lock_guard lock(mu_);
    return run(phase::restore, &lua_instance::do_restore, &state);
}

// emit{topic=|suffix=, payload=, content_type=, priority=, properties={k=v}}
int lua_instance::l_emit(lua_State* L) {
    lua_instance* s = self(L);
    if (s->phase_ != phase::message && s->phase_ != phase::timer)
        return luaL_error(L, "emit: only during on_message and on_timer");
    // Any error below is an invalid output, even one the script catches with pcall.
    bool was_bad = s->bad_output_;
    s->bad_output_ = true;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    // Lua phase: every field onto the stack (2..7), so the pointers below stay valid.
    lua_getfield(L, 1, "topic");         // 2
    lua_getfield(L, 1, "suffix");        // 3
    lua_getfield(L, 1, "payload");       // 4
    lua_getfield(L, 1, "content_type");  // 5
    lua_getfield(L, 1, "priority");      // 6
    lua_getfield(L, 1, "properties");    // 7
    bool has_topic = !lua_isnil(L, 2), has_suffix = !lua_isnil(L, 3);
    if (has_topic == has_suffix) return luaL_error(L, "emit: give exactly one of topic, suffix");
    int topic_idx = has_topic ? 2 : 3;
    if (lua_type(L, topic_idx) != LUA_TSTRING)
        return luaL_error(L, "emit: %s must be a string", has_topic ? "topic" : "suffix");
    int payload_type = lua_type(L, 4);
    if (payload_type != LUA_TSTRING && payload_type != LUA_TTABLE && payload_type != LUA_TNIL)
        return luaL_error(L, "emit: payload must be a string or a table (encoded as JSON)");
    if (!lua_isnil(L, 5) && lua_type(L, 5) != LUA_TSTRING)
        return luaL_error(L, "emit: content_type must be a string");
    int priority = EGW_PRIORITY_ROUTE;
    if (lua_type(L, 6) == LUA_TSTRING) {
        std::string_view p = lua_tostring(L, 6);
        if (p == "high")
            priority = EGW_PRIORITY_HIGH;
        else if (p == "normal")
            priority = EGW_PRIORITY_NORMAL;
        else if (p == "route")
            priority = EGW_PRIORITY_ROUTE;
        else
            return luaL_error(L, "emit: priority must be \"route\", \"normal\" or \"high\"");
    } else if (lua_isinteger(L, 6)) {
        priority = int(lua_tointeger(L, 6));
    } else if (!lua_isnil(L, 6)) {
        return luaL_error(L, "emit: priority must be a string");
    }
    if (!lua_isnil(L, 7) && !lua_istable(L, 7))
        return luaL_error(L, "emit: properties must be a table of strings");
    luaL_checkstack(L, 4, "emit");

    bool failed = false;
    {
        try {
            output o;
            size_t n = 0;
            const char* t = lua_tolstring(L, topic_idx, &n);
            o.topic.assign(t, n);
            if (payload_type == LUA_TSTRING) {
                const char* p = lua_tolstring(L, 4, &n);
                o.payload.assign(p, n);
            } else if (payload_type == LUA_TTABLE) {
                json j;
                if (!to_json(L, 4, j, 0, s->err_)) throw std::runtime_error("emit: " + s->err_);
                o.payload = j.dump();
                o.content_type = "application/json";
            }
            if (lua_type(L, 5) == LUA_TSTRING) o.content_type = lua_tostring(L, 5);
            o.priority = priority;
            if (lua_istable(L, 7)) {
                lua_pushnil(L);
                while (lua_next(L, 7) != 0) {
                    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) {
                        lua_pop(L, 2);
                        throw std::runtime_error("emit: properties must map strings to strings");
                    }
                    o.properties.emplace_back(lua_tostring(L, -2), lua_tostring(L, -1));
                    lua_pop(L, 1);
                }
            }
            std::string_view input = s->msg_ != nullptr ? s->msg_->topic : std::string_view();
            if (has_suffix && s->msg_ == nullptr)
                throw std::runtime_error("emit: a suffix needs an input topic (not in on_timer)");
            std::string why = runtime::check_output(o, has_suffix, input, s->limits_);
            if (!why.empty()) throw std::runtime_error(why);
            s->current_->outputs.push_back(std::move(o));
        } catch (const std::exception& e) {
            failed = true;
            try {
                s->err_ = e.what();
            } catch (...) {
            }
        }
    }
    if (failed) return luaL_error(L, "%s", s->err_.c_str());
    s->bad_output_ = was_bad;
    return 0;
}

int lua_instance::l_set_timer(lua_State* L) {
    lua_instance* s = self(L);
    lua_Integer at = luaL_checkinteger(L, 1);
    if (at < 0) return luaL_error(L, "set_timer: at_ms must be >= 0 (0 cancels)");
    if (s->phase_ == phase::snapshot) return luaL_error(L, "set_timer: not during snapshot");
    if (s->phase_ == phase::init || s->phase_ == phase::load || s->current_ == nullptr) {
        s->pending_timer_ = at;
    } else {
        s->current_->timer_ms = at;
    }
    return 0;
}

int lua_instance::l_log(lua_State* L) {
    lua_instance* s = self(L);
    int level = EGW_LOG_INFO;
    if (lua_type(L, 1) == LUA_TSTRING) {
        std::string_view l = lua_tostring(L, 1);
        if (l == "debug")
            level = EGW_LOG_DEBUG;
        else if (l == "info")
            level = EGW_LOG_INFO;
        else if (l == "warn")
            level = EGW_LOG_WARN;
        else if (l == "error")
            level = EGW_LOG_ERROR;
        else
            return luaL_error(L, "log: level must be debug, info, warn or error");
    } else {
        level = int(luaL_checkinteger(L, 1));
    }
    size_t n = 0;
    const char* text = luaL_checklstring(L, 2, &n);
    runtime::plugin_log(s->name_, level, std::string_view(text, n));
    return 0;
}

int lua_instance::l_print(lua_State* L) {
    lua_instance* s = self(L);
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; ++i) {
        if (i > 1) luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, nullptr);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    size_t len = 0;
    const char* text = lua_tolstring(L, -1, &len);
    runtime::plugin_log(s->name_, EGW_LOG_INFO, std::string_view(text, len));
    return 0;
}

void lua_instance::push_json(lua_State* L, const json& j, int depth) {
    if (depth > kMaxJsonDepth) luaL_error(L, "json: nesting deeper than %d", kMaxJsonDepth);
    luaL_checkstack(L, 3, "json");
    switch (j.type()) {
        case json::value_t::null:
            lua_pushlightuserdata(L, nullptr);
            break;
        case json::value_t::boolean:
            lua_pushboolean(L, j.get_ref<const bool&>());
            break;
        case json::value_t::number_integer:
            lua_pushinteger(L, j.get_ref<const json::number_integer_t&>());
            break;
        case json::value_t::number_unsigned: {
            auto u = j.get_ref<const json::number_unsigned_t&>();
            if (u <= uint64_t(LUA_MAXINTEGER))
                lua_pushinteger(L, lua_Integer(u));
            else
                lua_pushnumber(L, lua_Number(u));
            break;
        }
        case json::value_t::number_float:
            lua_pushnumber(L, j.get_ref<const json::number_float_t&>());
            break;
        case json::value_t::string: {
            const auto& str = j.get_ref<const std::string&>();
            lua_pushlstring(L, str.data(), str.size());
            break;
        }
        case json::value_t::array: {
            const auto& arr = j.get_ref<const json::array_t&>();
            lua_createtable(L, int(arr.size()), 0);
            for (size_t i = 0; i < arr.size(); ++i) {
                push_json(L, arr[i], depth + 1);
                lua_rawseti(L, -2, lua_Integer(i + 1));
            }
            lua_getfield(L, LUA_REGISTRYINDEX, kArrayMtKey);
            lua_setmetatable(L, -2);
            break;
        }
        case json::value_t::object: {
            const auto& obj = j.get_ref<const json::object_t&>();
            lua_createtable(L, 0, int(obj.size()));
            for (auto it = obj.begin(); it != obj.end(); ++it) {
                lua_pushlstring(L, it->first.data(), it->first.size());
                push_json(L, it->second, depth + 1);
                lua_rawset(L, -3);
            }
            break;
        }
        default:
            lua_pushnil(L);
            break;  // binary and discarded values never come from parse()
    }
}

bool lua_instance::to_json(lua_State* L, int idx, json& out, int depth, std::string& err) {
    if (depth > kMaxJsonDepth) {
        err = "nesting deeper than " + std::to_string(kMaxJsonDepth) + " (a cycle?)";
        return false;
    }
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
        case LUA_TNIL:
            out = nullptr;
            return true;
        case LUA_TBOOLEAN:
            out = bool(lua_toboolean(L, idx));
            return true;
        case LUA_TNUMBER:
            if (lua_isinteger(L, idx)) {
                out = int64_t(lua_tointeger(L, idx));
            } else {
                double d = lua_tonumber(L, idx);
                if (!std::isfinite(d)) {
                    err = "cannot encode inf or nan";
                    return false;
                }
                out = d;
            }
            return true;
        case LUA_TSTRING: {
            size_t n = 0;
            const char* p = lua_tolstring(L, idx, &n);
            out = std::string(p, n);
            return true;
        }
        case LUA_TLIGHTUSERDATA:
            if (lua_touserdata(L, idx) == nullptr) {
                out = nullptr;
                return true;
            }
            break;
        case LUA_TTABLE: {
            if (!lua_checkstack(L, 4)) {
                err = "nesting too deep";
                return false;
            }
            bool marked_array = false;
            if (lua_getmetatable(L, idx)) {
                lua_getfield(L, LUA_REGISTRYINDEX, kArrayMtKey);
                marked_array = lua_rawequal(L, -1, -2);
                lua_pop(L, 2);
            }
            size_t len = lua_rawlen(L, idx);
            size_t keys = 0;
            lua_pushnil(L);
            while (lua_next(L, idx) != 0) {
                ++keys;
                lua_pop(L, 1);
            }
            // A sequence 1..n (and nothing else) is an array; so is a decoded array, even
            // empty. An empty table without the mark is an object.
            if (marked_array || (len > 0 && keys == len)) {
                out = json::array();
                for (size_t i = 1; i <= len; ++i) {
                    lua_rawgeti(L, idx, lua_Integer(i));
                    json item;
                    bool ok = to_json(L, -1, item, depth + 1, err);
                    lua_pop(L, 1);
                    if (!ok) return false;
                    out.push_back(std::move(item));
                }
                return true;
            }
            out = json::object();
            lua_pushnil(L);
            while (lua_next(L, idx) != 0) {
                std::string key;
                if (lua_type(L, -2) == LUA_TSTRING) {
                    size_t n = 0;
                    const char* p = lua_tolstring(L, -2, &n);
                    key.assign(p, n);
                } else if (lua_isinteger(L, -2)) {
                    key = std::to_string(lua_tointeger(L, -2));
                } else {
                    err = std::string("cannot encode a table key of type ") +
                          lua_typename(L, lua_type(L, -2));
                    lua_pop(L, 2);
                    return false;
                }
                json item;
                if (!to_json(L, -1, item, depth + 1, err)) {
                    lua_pop(L, 2);
                    return false;
                }
                out[key] = std::move(item);
                lua_pop(L, 1);
            }
            return true;
        }
        default:
            break;
    }
    err = std::string("cannot encode a ") + lua_typename(L, lua_type(L, idx));
    return false;
}

int lua_instance::l_json_encode(lua_State* L) {
    lua_instance* s = self(L);
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    bool ok = false;
    {
        try {
            json j;
            if (to_json(L, 1, j, 0, s->err_)) {
                s->scratch_ = j.dump();
                ok = true;
            }
        } catch (const std::exception& e) {
            try {
                s->err_ = e.what();  // e.g. invalid UTF-8 in a string
            } catch (...) {
            }
        }
    }
    if (!ok) return luaL_error(L, "json.encode: %s", s->err_.c_str());
    lua_pushlstring(L, s->scratch_.data(), s->scratch_.size());
    return 1;
}

int lua_instance::l_json_decode(lua_State* L) {
    lua_instance* s = self(L);
    size_t n = 0;
    const char* text = luaL_checklstring(L, 1, &n);
    bool ok = false;
    {
        try {
            s->scratch_json_ = json::parse(text, text + n);
            ok = true;
        } catch (const std::exception& e) {
            try {
                s->err_ = e.what();
            } catch (...) {
            }
        }
    }
    if (!ok) return luaL_error(L, "json.decode: %s", s->err_.c_str());
    push_json(L, s->scratch_json_, 0);
    // The document stays in scratch_json_ until the next decode; clearing it here could not
    // run if push_json raised, so it is simply replaced next time.
    return 1;
}

}  // namespace

std::unique_ptr<instance> make_lua_instance(const instance_spec& spec) {
    return std::make_unique<lua_instance>(spec);
}

}  // namespace egw::plugins
