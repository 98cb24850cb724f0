// SPDX-License-Identifier: Apache-2.0
// isolation: "process" with real fixture plugins (tests/plugins/runtime_fixtures) in real child
// processes: echo, a segfault, an abort, a hang, state across a restart, a 5 MB payload, Lua.
#include "plugins/host/isolated_instance.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace egw::plugins {
namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

constexpr uint32_t kBudgetMs = 300;

instance_spec spec_for(const std::string& path, nlohmann::json config = nlohmann::json::object()) {
    instance_spec s;
    s.name = "iso";
    s.path = path;
    s.config = std::move(config);
    s.limits.time_budget_ms = kBudgetMs;
    s.limits.max_output_bytes = 8 << 20;
    return s;
}

isolation_options fast_options() {
    isolation_options o;
    o.host_path = EGW_PLUGIN_HOST;
    o.min_backoff_ms = 10;  // keeps the tests quick; the doubling is still exercised
    o.max_backoff_ms = 100;
    return o;
}

message_view msg(std::string_view topic, std::string_view payload) {
    message_view m;
    m.topic = topic;
    m.payload = payload;
    m.ts_ms = 1'700'000'000'000;
    m.seq = 7;
    m.device_id = "d1";
    m.content_type = "text/plain";
    return m;
}

int64_t ms_since(clock_type::time_point t0) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - t0).count();
}

std::string to_string_for_test(const call_result& r) {
    return "failure " + std::to_string(int(r.failure)) + ": " + r.reason;
}

// Expects the echo of `payload` on topic "t/echo".
void expect_echo(instance& inst, std::string_view payload) {
    auto r = inst.on_message(msg("t", payload));
    ASSERT_TRUE(r.ok()) << to_string_for_test(r);
    ASSERT_EQ(r.outputs.size(), 1u);
    EXPECT_EQ(r.outputs[0].topic, "t/echo");
    EXPECT_EQ(r.outputs[0].payload, payload);
}

TEST(IsolatedInstance, EchoThroughTheChild) {
    auto inst = make_isolated_instance(spec_for(EGW_RT_ECHO), fast_options());
    EXPECT_TRUE(inst->heavy());
    EXPECT_EQ(inst->max_concurrent(), 1u);
    EXPECT_FALSE(inst->stateful());
    auto r = inst->on_message(msg("devices/d1/x", "hello"));
    ASSERT_TRUE(r.ok()) << r.reason;
    ASSERT_EQ(r.outputs.size(), 1u);
    EXPECT_EQ(r.outputs[0].topic, "devices/d1/x/echo");
    EXPECT_EQ(r.outputs[0].payload, "hello");
    EXPECT_EQ(r.outputs[0].content_type, "text/plain");
    for (int i = 0; i < 100; ++i) expect_echo(*inst, "m" + std::to_string(i));
    EXPECT_EQ(inst->restarts(), 0u);
}

TEST(IsolatedInstance, ConfigRejectedInTheChildThrowsThePluginsReason) {
    try {
        make_isolated_instance(spec_for(EGW_RT_ECHO, {{"reject", true}}), fast_options());
        FAIL() << "no exception";
    } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "reject: this config is refused");
    }
    EXPECT_THROW(make_isolated_instance(spec_for("/nonexistent/plugin.so"), fast_options()),
                 std::runtime_error);
    auto o = fast_options();
    o.host_path = "/nonexistent/edge-gateway-plugin-host";
    EXPECT_THROW(make_isolated_instance(spec_for(EGW_RT_ECHO), o), std::runtime_error);
}

TEST(IsolatedInstance, SegfaultIsDetectedCountedAndTheChildRestarts) {
    auto inst = make_isolated_instance(spec_for(EGW_RT_FAULTY), fast_options());
    expect_echo(*inst, "before");
    auto t0 = clock_type::now();
    auto r = inst->on_message(msg("t", "crash"));
    EXPECT_LT(ms_since(t0), kBudgetMs);  // EOF, not the deadline
    EXPECT_EQ(r.failure, failure_kind::crashed);
    EXPECT_NE(r.reason.find("killed by signal 11"), std::string::npos) << r.reason;
    EXPECT_TRUE(r.outputs.empty());
    EXPECT_EQ(inst->restarts(), 1u);
    // The stage may try the same message again, up to max_attempts (3) calls in all.
    EXPECT_TRUE(inst->retry(r, 1));
    EXPECT_TRUE(inst->retry(r, 2));
    EXPECT_FALSE(inst->retry(r, 3));
    expect_echo(*inst, "after");
    EXPECT_EQ(inst->restarts(), 1u);
}

TEST(IsolatedInstance, AbortIsDetected) {
    auto inst = make_isolated_instance(spec_for(EGW_RT_FAULTY), fast_options());
    auto r = inst->on_message(msg("t", "abort"));
    EXPECT_EQ(r.failure, failure_kind::crashed);
    EXPECT_NE(r.reason.find("killed by signal 6"), std::string::npos) << r.reason;
    expect_echo(*inst, "next");
    EXPECT_EQ(inst->restarts(), 1u);
}

TEST(IsolatedInstance, HangIsKilledAtTheDeadline) {
    auto o = fast_options();
    auto inst = make_isolated_instance(spec_for(EGW_RT_FAULTY), o);
    auto t0 = clock_type::now();
    auto r = inst->on_message(msg("t", "hang"));
    int64_t ms = ms_since(t0);
    EXPECT_EQ(r.failure, failure_kind::timeout);
    EXPECT_NE(r.reason.find("no answer within 400 ms"), std::string::npos) << r.reason;
    EXPECT_GE(ms, int64_t(kBudgetMs + o.grace_ms));
    EXPECT_LT(ms, int64_t(kBudgetMs + o.grace_ms) + 400);  // scheduling margin on a busy box
    EXPECT_TRUE(inst->retry(r, 1));
    expect_echo(*inst, "next");
    EXPECT_EQ(inst->restarts(), 1u);
}

TEST(IsolatedInstance, RepeatedCrashesBackOffAndKeepCounting) {
    auto inst = make_isolated_instance(spec_for(EGW_RT_FAULTY), fast_options());
    for (int i = 1; i <= 4; ++i) {
        auto r = inst->on_message(msg("t", "crash"));
        EXPECT_EQ(r.failure, failure_kind::crashed);
        EXPECT_EQ(inst->restarts(), uint64_t(i));
    }
    // 10 + 20 + 40 ms of backoff went by between those starts; the next one waits 80 ms.
    auto t0 = clock_type::now();
    expect_echo(*inst, "alive");
    EXPECT_GE(ms_since(t0), 80);
}

TEST(IsolatedInstance, ErrorReturnIsAnErrorWithTheLoggedReasonAndNoRestart) {
    std::ostringstream logged;
    auto logger = std::make_shared<spdlog::logger>(
        "plugins", std::make_shared<spdlog::sinks::ostream_sink_mt>(logged));
    spdlog::register_logger(logger);
    auto inst = make_isolated_instance(spec_for(EGW_RT_FAULTY), fast_options());
    auto r = inst->on_message(msg("t", "error"));
    spdlog::drop("plugins");
    EXPECT_EQ(r.failure, failure_kind::error);
    EXPECT_EQ(r.reason, "asked to fail");
    EXPECT_FALSE(inst->retry(r, 1));
    EXPECT_EQ(inst->restarts(), 0u);
    // The child's log line reached the gateway's "plugins" logger, naming the instance.
    EXPECT_NE(logged.str().find("iso: asked to fail"), std::string::npos) << logged.str();
}

TEST(IsolatedInstance, StateSurvivesARestartThroughTheCachedSnapshot) {
    auto inst = make_isolated_instance(spec_for(EGW_RT_COUNTER), fast_options());
    EXPECT_TRUE(inst->stateful());
    auto count = [&] {
        auto r = inst->on_message(msg("t", "x"));
        EXPECT_TRUE(r.ok()) << r.reason;
        return r.outputs.empty() ? std::string() : r.outputs[0].payload;
    };
    EXPECT_EQ(count(), "1");
    EXPECT_EQ(count(), "2");
    std::string state;
    ASSERT_TRUE(inst->snapshot(state).ok());
    EXPECT_EQ(state.size(), 8u);
    EXPECT_EQ(count(), "3");  // not in the snapshot: the stage replays it after a crash
    EXPECT_EQ(inst->on_message(msg("t", "crash")).failure, failure_kind::crashed);
    EXPECT_EQ(count(), "3");  // the new child restored count 2
    EXPECT_EQ(inst->restarts(), 1u);

    // A snapshot given through restore() is the one a later restart uses.
    uint64_t fifty = 50;
    ASSERT_TRUE(inst->restore(std::string_view(reinterpret_cast<char*>(&fifty), 8)).ok());
    EXPECT_EQ(count(), "51");
    EXPECT_EQ(inst->on_message(msg("t", "abort")).failure, failure_kind::crashed);
    EXPECT_EQ(count(), "51");
}

TEST(IsolatedInstance, FiveMegabytePayloadPassesThroughSharedMemory) {
    auto inst = make_isolated_instance(spec_for(EGW_RT_ECHO), fast_options());
    std::string big(5 << 20, '\0');
    for (size_t i = 0; i < big.size(); ++i) big[i] = char(i * 2654435761u >> 24);
    auto r = inst->on_message(msg("cam", big));
    ASSERT_TRUE(r.ok()) << r.reason;
    ASSERT_EQ(r.outputs.size(), 1u);
    EXPECT_TRUE(r.outputs[0].payload == big);
    expect_echo(*inst, "small again");
}

TEST(IsolatedInstance, OversizedOutputIsBadOutputInTheChild) {
    auto s = spec_for(EGW_RT_ECHO);
    s.limits.max_output_bytes = 1000;
    auto inst = make_isolated_instance(s, fast_options());
    auto r = inst->on_message(msg("t", std::string(2000, 'x')));
    EXPECT_EQ(r.failure, failure_kind::bad_output);
    EXPECT_NE(r.reason.find("above the limit of 1000"), std::string::npos) << r.reason;
    EXPECT_EQ(inst->restarts(), 0u);
}

TEST(IsolatedInstance, LuaScriptInTheChild) {
    char tmpl[] = "/tmp/egw-iso-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    fs::path dir = tmpl;
    std::ofstream(dir / "echo.lua") << R"(
        function on_message(m)
            if m.payload == "loop" then while true do end end
            emit{suffix = "/echo", payload = m.payload}
        end
    )";
    auto inst = make_isolated_instance(spec_for((dir / "echo.lua").string()), fast_options());
    expect_echo(*inst, "from lua");
    // Lua's own budget stops the loop before the gateway's deadline: the child is kept.
    auto r = inst->on_message(msg("t", "loop"));
    EXPECT_EQ(r.failure, failure_kind::timeout);
    EXPECT_NE(r.reason.find("time budget of 300 ms exceeded"), std::string::npos) << r.reason;
    EXPECT_EQ(inst->restarts(), 0u);
    expect_echo(*inst, "still here");
    fs::remove_all(dir);
}

TEST(IsolatedInstance, DestroyingTheInstanceReapsTheChild) {
    auto inst = make_isolated_instance(spec_for(EGW_RT_ECHO), fast_options());
    expect_echo(*inst, "x");
    inst.reset();
    // No child of ours is left, not even a zombie.
    EXPECT_EQ(waitpid(-1, nullptr, WNOHANG), -1);
    EXPECT_EQ(errno, ECHILD);
}

}  // namespace
}  // namespace egw::plugins
