// SPDX-License-Identifier: Apache-2.0
// The Lua runtime against real scripts written to a temp dir: hooks, emit, json, the time budget,
// the memory cap, config rejection, snapshot/restore.
#include "plugins/host/lua_instance.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>

namespace egw::plugins {
namespace {

namespace fs = std::filesystem;

class LuaInstance : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/egw-lua-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override { fs::remove_all(dir_); }

    instance_spec spec(const std::string& script, nlohmann::json config = nlohmann::json::object(),
                       const std::string& file = "script.lua") {
        fs::path p = dir_ / file;
        std::ofstream(p) << script;
        instance_spec s;
        s.name = "test";
        s.path = p;
        s.config = std::move(config);
        s.limits.time_budget_ms = 200;
        s.limits.memory_cap_bytes = 8 << 20;
        return s;
    }

    static message_view msg(std::string_view topic, std::string_view payload) {
        message_view m;
        m.topic = topic;
        m.payload = payload;
        m.qos = 1;
        m.ts_ms = 1'700'000'000'123;
        m.seq = 42;
        m.device_id = "d1";
        m.content_type = "application/json";
        return m;
    }

    fs::path dir_;
};

TEST_F(LuaInstance, MessageFieldsAndEmit) {
    auto inst = make_lua_instance(spec(R"(
        function on_message(m)
            emit{suffix = "/copy", payload = m.payload}
            emit{topic = "out/" .. m.device_id,
                 payload = string.format("%s|%d|%d|%d|%s", m.topic, m.qos, m.ts_ms, m.seq,
                                         m.content_type),
                 content_type = "text/plain", priority = "high",
                 properties = {k = "v"}}
        end
    )"));
    EXPECT_TRUE(inst->heavy());
    EXPECT_EQ(inst->max_concurrent(), 1u);
    EXPECT_FALSE(inst->stateful());
    auto r = inst->on_message(msg("devices/d1/telemetry/t", "abc"));
    ASSERT_TRUE(r.ok()) << r.reason;
    ASSERT_EQ(r.outputs.size(), 2u);
    EXPECT_EQ(r.outputs[0].topic, "devices/d1/telemetry/t/copy");
    EXPECT_EQ(r.outputs[0].payload, "abc");
    EXPECT_EQ(r.outputs[0].priority, 0);
    EXPECT_EQ(r.outputs[1].topic, "out/d1");
    EXPECT_EQ(r.outputs[1].payload, "devices/d1/telemetry/t|1|1700000000123|42|application/json");
    EXPECT_EQ(r.outputs[1].content_type, "text/plain");
    EXPECT_EQ(r.outputs[1].priority, 2);
    ASSERT_EQ(r.outputs[1].properties.size(), 1u);
    EXPECT_EQ(r.outputs[1].properties[0].first, "k");
    EXPECT_EQ(r.timer_ms, -1);
}

TEST_F(LuaInstance, HooksFromAReturnedTable) {
    auto inst = make_lua_instance(spec(R"(
        local M = {}
        local limit
        function M.init(cfg) limit = cfg.limit end
        function M.on_message(m) emit{suffix = "/n", payload = tostring(limit)} end
        return M
    )",
                                       {{"limit", 3}}));
    auto r = inst->on_message(msg("a", "x"));
    ASSERT_TRUE(r.ok()) << r.reason;
    ASSERT_EQ(r.outputs.size(), 1u);
    EXPECT_EQ(r.outputs[0].payload, "3");
}

TEST_F(LuaInstance, TimersRequestedAndFired) {
    auto inst = make_lua_instance(spec(R"(
        function init(cfg) set_timer(1000) end
        function on_message(m) set_timer(m.ts_ms + 5000) end
        function on_timer(now) emit{topic = "tick", payload = tostring(now)} set_timer(0) end
    )"));
    auto r = inst->on_message(msg("a", "x"));
    ASSERT_TRUE(r.ok()) << r.reason;
    EXPECT_EQ(r.timer_ms, 1'700'000'005'123);
    r = inst->on_timer(1'700'000'005'200);
    ASSERT_TRUE(r.ok()) << r.reason;
    ASSERT_EQ(r.outputs.size(), 1u);
    EXPECT_EQ(r.outputs[0].topic, "tick");
    EXPECT_EQ(r.outputs[0].payload, "1700000005200");
    EXPECT_EQ(r.timer_ms, 0);
}

TEST_F(LuaInstance, TimerFromInitIsReportedWithTheFirstCall) {
    auto inst = make_lua_instance(spec(R"(
        function init(cfg) set_timer(1234) end
        function on_message(m) end
    )"));
    auto r = inst->on_message(msg("a", "x"));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.timer_ms, 1234);
    r = inst->on_message(msg("a", "x"));
    EXPECT_EQ(r.timer_ms, -1);
}

TEST_F(LuaInstance, JsonDecodeEncode) {
    auto inst = make_lua_instance(spec(R"(
        function on_message(m)
            local d = json.decode(m.payload)
            local out = {temp = d.temp * 2, nested = d.a.b, list = d.list, empty = d.empty,
                         flag = d.flag, isnull = d.n == json.null, name = d.name}
            emit{suffix = "/x", payload = json.encode(out)}
            emit{suffix = "/t", payload = {count = #d.list}}
        end
    )"));
    auto r = inst->on_message(
        msg("s", R"({"temp": 21.5, "a": {"b": [1, 2]}, "list": [3, "x", true], "empty": [],
                 "flag": false, "n": null, "name": "\u00e9"})"));
    ASSERT_TRUE(r.ok()) << r.reason;
    ASSERT_EQ(r.outputs.size(), 2u);
    auto j = nlohmann::json::parse(r.outputs[0].payload);
    EXPECT_EQ(j, nlohmann::json::parse(R"({"temp": 43.0, "nested": [1, 2], "list": [3, "x", true],
        "empty": [], "flag": false, "isnull": true, "name": "\u00e9"})"));
    EXPECT_EQ(r.outputs[1].payload, R"({"count":3})");
    EXPECT_EQ(r.outputs[1].content_type, "application/json");
}

TEST_F(LuaInstance, MalformedJsonIsAnErrorTheScriptCanCatch) {
    auto inst = make_lua_instance(spec(R"(
        function on_message(m)
            if m.topic == "catch" then
                local ok, err = pcall(json.decode, m.payload)
                emit{suffix = "/e", payload = ok and "ok" or "bad"}
            else
                json.decode(m.payload)
            end
        end
    )"));
    auto r = inst->on_message(msg("raw", "{not json"));
    EXPECT_EQ(r.failure, failure_kind::error);
    EXPECT_NE(r.reason.find("json.decode"), std::string::npos) << r.reason;
    r = inst->on_message(msg("catch", "\xff\x00garbage"));
    ASSERT_TRUE(r.ok()) << r.reason;
    ASSERT_EQ(r.outputs.size(), 1u);
    EXPECT_EQ(r.outputs[0].payload, "bad");
}

TEST_F(LuaInstance, LuaErrorDiscardsOutputsAndNamesTheLine) {
    auto inst =
        make_lua_instance(spec("function on_message(m)\n"
                               "  emit{suffix = '/a', payload = 'x'}\n"
                               "  error('boom')\n"
                               "end\n"));
    auto r = inst->on_message(msg("t", "x"));
    EXPECT_EQ(r.failure, failure_kind::error);
    EXPECT_EQ(r.reason, "script.lua:3: boom");
    EXPECT_TRUE(r.outputs.empty());
}

TEST_F(LuaInstance, InvalidEmitIsBadOutputEvenWhenCaught) {
    auto inst = make_lua_instance(spec(R"(
        function on_message(m)
            if m.payload == "wild" then pcall(emit, {topic = "a/+/b", payload = "x"})
            elseif m.payload == "big" then emit{topic = "a", payload = string.rep("x", 2000)}
            elseif m.payload == "both" then emit{topic = "a", suffix = "/b"}
            end
        end
    )"));
    auto r = inst->on_message(msg("t", "wild"));
    EXPECT_EQ(r.failure, failure_kind::bad_output);
    EXPECT_NE(r.reason.find("wildcard"), std::string::npos) << r.reason;
    r = inst->on_message(msg("t", "both"));
    EXPECT_EQ(r.failure, failure_kind::bad_output) << r.reason;
    EXPECT_NE(r.reason.find("exactly one of topic, suffix"), std::string::npos) << r.reason;
    r = inst->on_message(msg("t", "fine"));
    EXPECT_TRUE(r.ok());
}

TEST_F(LuaInstance, OversizedOutputIsBadOutput) {
    auto s =
        spec(R"(function on_message(m) emit{topic = "a", payload = string.rep("x", 2000)} end)");
    s.limits.max_output_bytes = 1000;
    auto inst = make_lua_instance(s);
    auto r = inst->on_message(msg("t", "x"));
    EXPECT_EQ(r.failure, failure_kind::bad_output);
    EXPECT_NE(r.reason.find("above the limit of 1000"), std::string::npos) << r.reason;
}

TEST_F(LuaInstance, InfiniteLoopIsStoppedWithinBudgetAndTheNextMessageWorks) {
    auto inst = make_lua_instance(spec(R"(
        local n = 0
        function on_message(m)
            n = n + 1
            if m.payload == "loop" then while true do end end
            if m.payload == "sneaky" then
                -- catching the budget error does not help: the next instruction fails too
                while true do pcall(function() while true do end end) end
            end
            emit{suffix = "/n", payload = tostring(n)}
        end
    )"));
    for (const char* kind : {"loop", "sneaky"}) {
        auto t0 = std::chrono::steady_clock::now();
        auto r = inst->on_message(msg("t", kind));
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - t0)
                      .count();
        EXPECT_EQ(r.failure, failure_kind::timeout) << kind << ": " << r.reason;
        EXPECT_NE(r.reason.find("time budget of 200 ms exceeded"), std::string::npos) << r.reason;
        EXPECT_GE(ms, 200);
        // The hook looks at the clock every 1000 instructions; the margin is for a loaded
        // machine's scheduling, not for the runtime.
        EXPECT_LT(ms, 700) << kind;
    }
    auto r = inst->on_message(msg("t", "ok"));
    ASSERT_TRUE(r.ok()) << r.reason;
    ASSERT_EQ(r.outputs.size(), 1u);
    EXPECT_EQ(r.outputs[0].payload, "3");  // the state survived both stopped calls
}

TEST_F(LuaInstance, MemoryHogIsStoppedAndTheNextMessageWorks) {
    // A budget far above what filling 8 MiB takes, even on a loaded machine, so the cap is what
    // stops it.
    auto s = spec(R"(
        function on_message(m)
            if m.payload == "hog" then
                local t = {}
                for i = 1, 1e9 do t[i] = string.rep("x", 1000) .. i end
            elseif m.payload == "rep" then
                local s = string.rep("x", 100 * 1024 * 1024)
            end
            emit{suffix = "/ok", payload = "fine"}
        end
    )");
    s.limits.time_budget_ms = 20'000;
    auto inst = make_lua_instance(s);
    for (const char* kind : {"hog", "rep"}) {
        auto r = inst->on_message(msg("t", kind));
        EXPECT_EQ(r.failure, failure_kind::memory) << kind << ": " << r.reason;
        EXPECT_NE(r.reason.find("memory cap of 8388608 bytes exceeded"), std::string::npos)
            << r.reason;
    }
    auto r = inst->on_message(msg("t", "ok"));
    ASSERT_TRUE(r.ok()) << r.reason;
    ASSERT_EQ(r.outputs.size(), 1u);
}

TEST_F(LuaInstance, SyntaxErrorRejectsTheConfigWithTheMessage) {
    try {
        make_lua_instance(spec("function on_message(m)\n  if then\nend\n", {}, "bad.lua"));
        FAIL() << "no exception";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("bad.lua:2:"), std::string::npos) << e.what();
    }
}

TEST_F(LuaInstance, InitErrorRejectsTheConfigWithTheMessage) {
    const char* script = R"(
        function init(cfg)
            if type(cfg.limit) ~= "number" then error("limit: must be a number", 0) end
        end
        function on_message(m) end
    )";
    try {
        make_lua_instance(spec(script, {{"limit", "three"}}));
        FAIL() << "no exception";
    } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "limit: must be a number");
    }
    EXPECT_NO_THROW(make_lua_instance(spec(script, {{"limit", 3}})));

    try {
        make_lua_instance(spec(R"(
            function init(cfg) return false, "field: missing" end
            function on_message(m) end)"));
        FAIL() << "no exception";
    } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "field: missing");
    }
}

TEST_F(LuaInstance, MissingHooksAndFilesAreRejected) {
    EXPECT_THROW(make_lua_instance(spec("x = 1")), std::runtime_error);
    EXPECT_THROW(make_lua_instance(spec(R"(
        function on_message(m) end
        function snapshot() return "" end)")),
                 std::runtime_error);
    instance_spec s = spec("function on_message(m) end");
    s.path = (dir_ / "missing.lua").string();
    EXPECT_THROW(make_lua_instance(s), std::runtime_error);
}

TEST_F(LuaInstance, SandboxHasNoIoOrOsExecute) {
    auto inst = make_lua_instance(spec(R"(
        function on_message(m)
            emit{topic = "r", payload = table.concat({type(io), type(os.execute), type(require),
                 type(load), type(os.time)}, ",")}
        end
    )"));
    auto r = inst->on_message(msg("t", "x"));
    ASSERT_TRUE(r.ok()) << r.reason;
    EXPECT_EQ(r.outputs[0].payload, "nil,nil,nil,nil,function");
}

TEST_F(LuaInstance, SnapshotRestoreRoundTrip) {
    const char* script = R"(
        local count, sum = 0, 0
        function on_message(m)
            count = count + 1
            sum = sum + json.decode(m.payload).v
            emit{suffix = "/s", payload = {count = count, sum = sum}}
        end
        function snapshot() return json.encode{count = count, sum = sum} end
        function restore(s) local t = json.decode(s) count, sum = t.count, t.sum end
    )";
    auto a = make_lua_instance(spec(script));
    EXPECT_TRUE(a->stateful());
    ASSERT_TRUE(a->on_message(msg("t", R"({"v": 2})")).ok());
    ASSERT_TRUE(a->on_message(msg("t", R"({"v": 5})")).ok());
    std::string state;
    auto r = a->snapshot(state);
    ASSERT_TRUE(r.ok()) << r.reason;
    EXPECT_EQ(nlohmann::json::parse(state), nlohmann::json::parse(R"({"count":2,"sum":7})"));

    auto b = make_lua_instance(spec(script));
    ASSERT_TRUE(b->restore(state).ok());
    r = b->on_message(msg("t", R"({"v": 1})"));
    ASSERT_TRUE(r.ok()) << r.reason;
    EXPECT_EQ(nlohmann::json::parse(r.outputs[0].payload),
              nlohmann::json::parse(R"({"count":3,"sum":8})"));
}

TEST_F(LuaInstance, SnapshotMustReturnAString) {
    auto inst = make_lua_instance(spec(R"(
        function on_message(m) end
        function snapshot() return 42 end
        function restore(s) end
    )"));
    std::string state;
    auto r = inst->snapshot(state);
    EXPECT_EQ(r.failure, failure_kind::error);
    EXPECT_NE(r.reason.find("not a string"), std::string::npos) << r.reason;
}

}  // namespace
}  // namespace egw::plugins
