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
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

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

// --check-config creates instances too: a plugin that hangs or dies in create() is an error
// within start_timeout_ms, never a hung check.
TEST(IsolatedInstance, HangOrCrashInCreateIsAnError) {
    auto o = fast_options();
    o.start_timeout_ms = 300;
    try {
        make_isolated_instance(spec_for(EGW_RT_FAULTY, {{"create", "hang"}}), o);
        FAIL() << "no exception";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("no answer within 300 ms"), std::string::npos)
            << e.what();
    }
    try {
        make_isolated_instance(spec_for(EGW_RT_FAULTY, {{"create", "crash"}}), o);
        FAIL() << "no exception";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("killed by signal 6"), std::string::npos) << e.what();
    }
    EXPECT_EQ(waitpid(-1, nullptr, WNOHANG), -1);  // both children were reaped
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

TEST(IsolatedInstance, StateSurvivesARestartThroughSnapshotAndReplay) {
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
    EXPECT_EQ(count(), "3");  // after the snapshot: replayed into the new child
    EXPECT_EQ(inst->on_message(msg("t", "crash")).failure, failure_kind::crashed);
    EXPECT_EQ(count(), "4");  // snapshot (2) + replay of the 3rd message + this one
    EXPECT_EQ(inst->restarts(), 1u);

    // A snapshot given through restore() is the one a later restart uses.
    uint64_t fifty = 50;
    ASSERT_TRUE(inst->restore(std::string_view(reinterpret_cast<char*>(&fifty), 8)).ok());
    EXPECT_EQ(count(), "51");
    EXPECT_EQ(inst->on_message(msg("t", "abort")).failure, failure_kind::crashed);
    EXPECT_EQ(count(), "52");
    EXPECT_EQ(inst->restarts(), 2u);
}

TEST(IsolatedInstance, PastTheReplayLimitOnlyTheSnapshotIsRestored) {
    auto o = fast_options();
    o.max_replay_bytes = 300;  // room for about two journal entries
    auto inst = make_isolated_instance(spec_for(EGW_RT_COUNTER), o);
    auto count = [&] {
        auto r = inst->on_message(msg("t", "x"));
        return r.outputs.empty() ? std::string() : r.outputs[0].payload;
    };
    std::string state;
    ASSERT_TRUE(inst->snapshot(state).ok());  // count 0
    for (int i = 1; i <= 5; ++i) EXPECT_EQ(count(), std::to_string(i));
    EXPECT_EQ(inst->on_message(msg("t", "crash")).failure, failure_kind::crashed);
    EXPECT_EQ(count(), "1");  // back to the snapshot
    // A new snapshot makes the journal whole again.
    ASSERT_TRUE(inst->snapshot(state).ok());
    EXPECT_EQ(count(), "2");
    EXPECT_EQ(inst->on_message(msg("t", "crash")).failure, failure_kind::crashed);
    EXPECT_EQ(count(), "3");
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
            if m.payload == "timer" then set_timer(m.ts_ms + 1000) return end
            emit{suffix = "/echo", payload = m.payload}
        end
        function on_timer(now) emit{topic = "tick", payload = tostring(now)} end
    )";
    auto inst = make_isolated_instance(spec_for((dir / "echo.lua").string()), fast_options());
    expect_echo(*inst, "from lua");
    // Timers cross the boundary both ways.
    auto r0 = inst->on_message(msg("t", "timer"));
    ASSERT_TRUE(r0.ok()) << r0.reason;
    EXPECT_EQ(r0.timer_ms, 1'700'000'001'000);
    r0 = inst->on_timer(1'700'000'001'005);
    ASSERT_TRUE(r0.ok()) << r0.reason;
    ASSERT_EQ(r0.outputs.size(), 1u);
    EXPECT_EQ(r0.outputs[0].topic, "tick");
    EXPECT_EQ(r0.outputs[0].payload, "1700000001005");
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

size_t open_fds() {
    size_t n = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/fd")) ++n;
    return n;
}

TEST(IsolatedInstance, RestartsLeakNoFileDescriptors) {
    auto inst = make_isolated_instance(spec_for(EGW_RT_FAULTY), fast_options());
    expect_echo(*inst, "warm");
    size_t before = open_fds();
    for (const char* p : {"crash", "abort", "crash"})
        EXPECT_EQ(inst->on_message(msg("t", p)).failure, failure_kind::crashed);
    expect_echo(*inst, "alive");
    EXPECT_EQ(open_fds(), before);
    inst.reset();
    EXPECT_EQ(open_fds(), before - 2);  // the socket and the memfd
}

// The child dies with the gateway: a process that owns an isolated instance is killed with
// SIGKILL (no destructor runs), and its plugin host goes too.
TEST(IsolatedInstance, ThePluginHostDiesWithItsParent) {
    int ready[2];
    ASSERT_EQ(pipe(ready), 0);
    pid_t owner = fork();
    ASSERT_GE(owner, 0);
    if (owner == 0) {
        auto inst = make_isolated_instance(spec_for(EGW_RT_ECHO), fast_options());
        char c = 'r';
        if (write(ready[1], &c, 1) != 1) _exit(1);
        for (;;) pause();
    }
    close(ready[1]);
    char c = 0;
    ASSERT_EQ(read(ready[0], &c, 1), 1);
    close(ready[0]);
    std::string children;
    {
        std::ifstream in("/proc/" + std::to_string(owner) + "/task/" + std::to_string(owner) +
                         "/children");
        std::getline(in, children);
    }
    pid_t host = pid_t(std::atoi(children.c_str()));
    ASSERT_GT(host, 0) << "no child listed for " << owner;
    kill(owner, SIGKILL);
    ASSERT_EQ(waitpid(owner, nullptr, 0), owner);
    // Gone, or a zombie waiting for whoever reaps orphans here.
    auto gone = [&] {
        std::ifstream stat("/proc/" + std::to_string(host) + "/stat");
        std::string line;
        if (!std::getline(stat, line)) return true;
        auto paren = line.rfind(')');
        return paren != std::string::npos && line.size() > paren + 2 && line[paren + 2] == 'Z';
    };
    auto deadline = clock_type::now() + std::chrono::seconds(5);
    while (!gone() && clock_type::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_TRUE(gone()) << "plugin host " << host << " outlived its parent";
}

}  // namespace
}  // namespace egw::plugins
