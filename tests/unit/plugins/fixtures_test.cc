// SPDX-License-Identifier: Apache-2.0
// The fixture plugins behave as the host's tests expect them to (so a host test that fails is
// about the host): each misbehaves exactly as documented in tests/plugins/, and only when asked.
// The ones that crash or hang are only loaded here, never triggered.
#include <gtest/gtest.h>

#include <dlfcn.h>

#include <chrono>
#include <cstddef>
#include <string>

#include "plugin_test_util.h"

namespace egw::test {
namespace {

TEST(Fixtures, NoopEchoesOnSlashNoop) {
    plugin_library lib(plugin_path("egw_fx_noop"));
    plugin_harness h(lib, "{}");
    auto r = h.message("a/b", "payload", kT0, "text/plain");
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r.outputs.size(), 1u);
    EXPECT_EQ(r.outputs[0].topic, "a/b/noop");
    EXPECT_EQ(r.outputs[0].payload, "payload");
    EXPECT_EQ(r.outputs[0].content_type, "text/plain");
}

TEST(Fixtures, ErrorReturnsErrorOnBad) {
    plugin_library lib(plugin_path("egw_fx_error"));
    plugin_harness h(lib, "{}");
    EXPECT_EQ(h.message("a", "good", kT0).outputs.at(0).topic, "a/out");
    auto r = h.message("a", "so bad", kT0);
    EXPECT_EQ(r.rc, EGW_ERROR);
    EXPECT_EQ(h.count_logs(EGW_LOG_ERROR, "bad"), 1u);
}

TEST(Fixtures, ThrowsLetsAnExceptionCrossTheAbi) {
    plugin_library lib(plugin_path("egw_fx_throws"));
    plugin_harness h(lib, "{}");
    EXPECT_TRUE(h.message("a", "fine", kT0).ok());
    auto r = h.message("a", "bad", kT0);
    EXPECT_TRUE(r.threw);
    EXPECT_EQ(r.what, "egw_fx_throws: payload contains \"bad\"");
    EXPECT_TRUE(r.outputs.empty());  // the output it emitted first is discarded
}

TEST(Fixtures, BadOutputEmitsWhatTheHostMustRefuse) {
    plugin_library lib(plugin_path("egw_fx_bad_output"));
    plugin_harness h(lib, "{}");
    for (const char* p : {"wildcard", "big", "empty"}) {
        auto r = h.message("a/b", p, kT0);
        EXPECT_EQ(r.rc, EGW_OK) << p;    // it returns OK...
        EXPECT_TRUE(r.bad_output) << p;  // ...but its output is invalid
    }
}

TEST(Fixtures, WrongMajorDeclaresAbi99) {
    plugin_library lib(plugin_path("egw_fx_wrong_major"));
    EXPECT_EQ(lib.descriptor().abi_major, 99u);
}

TEST(Fixtures, OldMinorHasAShortDescriptorAndWorks) {
    plugin_library lib(plugin_path("egw_fx_old_minor"));
    EXPECT_EQ(lib.descriptor().abi_major, 1u);
    EXPECT_EQ(lib.descriptor().struct_size, offsetof(egw_plugin, on_timer));
    plugin_harness h(lib, "{}");
    auto r = h.message("x/y", "hello", kT0);
    ASSERT_EQ(r.outputs.size(), 1u);
    EXPECT_EQ(r.outputs[0].topic, "x/y/old");
    EXPECT_TRUE(h.timer(kT0).ok());  // no on_timer within struct_size: nothing called
}

TEST(Fixtures, CounterCountsAcrossSnapshotRestore) {
    plugin_library lib(plugin_path("egw_fx_counter"));
    plugin_harness h(lib, "{}");
    h.message("c", "x", kT0);
    auto r = h.message("c", "x", kT0);
    EXPECT_EQ(r.outputs.at(0).payload, R"({"count":2,"seq":2})");
    EXPECT_EQ(r.outputs.at(0).topic, "c/count");
    std::string state = h.snapshot();
    EXPECT_EQ(state, "2");
    plugin_harness h2(lib, "{}");
    ASSERT_EQ(h2.restore(state), EGW_OK);
    EXPECT_EQ(h2.message("c", "x", kT0).outputs.at(0).payload, R"({"count":3,"seq":1})");
    EXPECT_EQ(h2.restore("x"), EGW_ERROR);
}

TEST(Fixtures, SegfaultAndHangLoadAndEchoHarmlessMessages) {
    for (const char* name : {"egw_fx_segfault", "egw_fx_hang"}) {
        plugin_library lib(plugin_path(name));
        plugin_harness h(lib, "{}");
        auto r = h.message("a", "harmless", kT0);
        ASSERT_EQ(r.outputs.size(), 1u) << name;
        EXPECT_EQ(r.outputs[0].topic, "a/out");
    }
    plugin_library hang(plugin_path("egw_fx_hang"));
    EXPECT_TRUE(hang.descriptor().flags & EGW_PLUGIN_HEAVY);
}

TEST(Fixtures, SlowBurnsItsTimeOnThePool) {
    plugin_library lib(plugin_path("egw_fx_slow"));
    EXPECT_TRUE(lib.descriptor().flags & EGW_PLUGIN_HEAVY);
    EXPECT_EQ(lib.descriptor().max_concurrent, 2u);
    EXPECT_EQ(plugin_harness::rejection(lib, R"({"ms":-1})"),
              "ms: must be an integer from 0 to 60000");
    plugin_harness h(lib, R"({"ms": 30})");
    auto start = std::chrono::steady_clock::now();
    auto r = h.message("a", "x", kT0);
    EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(30));
    ASSERT_EQ(r.outputs.size(), 1u);
    EXPECT_EQ(r.outputs[0].topic, "a/out");
}

TEST(Fixtures, OnlyTheEntrySymbolIsExported) {
    for (const char* name :
         {"window-stats", "threshold-alert", "deadband", "egw_fx_noop", "egw_fx_throws"}) {
        void* h = dlopen(plugin_path(name).c_str(), RTLD_NOW | RTLD_LOCAL);
        ASSERT_NE(h, nullptr) << dlerror();
        EXPECT_NE(dlsym(h, "egw_plugin_entry"), nullptr) << name;
        EXPECT_EQ(dlsym(h, "fx_create"), nullptr) << name;
        EXPECT_EQ(dlsym(h, "_ZTISt19_Sp_make_shared_tag"), nullptr) << name;
        dlclose(h);
    }
}

}  // namespace
}  // namespace egw::test
