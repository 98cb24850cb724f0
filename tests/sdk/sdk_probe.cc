// SPDX-License-Identifier: Apache-2.0
// Loads the out-of-tree example plugin (docs/examples/plugin, every-nth) built by the SDK test and
// checks it behaves as docs/plugins.md says: config validation, one message in N forwarded
// unchanged, the count surviving snapshot/restore. Exit code 0 on success, 1 with a reason.
#include <cstdio>
#include <exception>
#include <string>

#include "support/plugin_harness.h"

namespace {

int fail(const std::string& why) {
    std::fprintf(stderr, "sdk_probe: %s\n", why.c_str());
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) return fail("usage: egw_sdk_probe PLUGIN.so");
    try {
        egw::test::plugin_library lib(argv[1]);
        const auto& d = lib.descriptor();
        if (d.abi_major != EGW_ABI_MAJOR) return fail("wrong ABI major");
        if (std::string(d.name) != "every-nth")
            return fail("unexpected name " + std::string(d.name));
        std::string why = egw::test::plugin_harness::rejection(lib, R"({"every":0})");
        if (why != "every: must be a positive integer") return fail("rejection: '" + why + "'");

        egw::test::plugin_harness h(lib, R"({"every": 3})");
        int forwarded = 0;
        for (int i = 0; i < 4; ++i) {
            auto r = h.message("devices/d1/telemetry/t", "{\"i\":" + std::to_string(i) + "}", i);
            if (!r.ok()) return fail("on_message failed");
            forwarded += static_cast<int>(r.outputs.size());
            if (!r.outputs.empty() && (r.outputs[0].topic != "devices/d1/telemetry/t" ||
                                       r.outputs[0].payload != "{\"i\":2}"))
                return fail("unexpected output " + r.outputs[0].topic + " " + r.outputs[0].payload);
        }
        if (forwarded != 1) return fail("expected 1 output in 4 messages");
        // seen == 1 (message 3): after a restart, two more messages make the next output.
        egw::test::plugin_harness h2(lib, R"({"every": 3})");
        if (h2.restore(h.snapshot()) != EGW_OK) return fail("restore failed");
        if (!h2.message("t", "a", 10).outputs.empty()) return fail("forwarded too early");
        if (h2.message("t", "b", 11).outputs.size() != 1) return fail("count not restored");
    } catch (const std::exception& e) {
        return fail(e.what());
    }
    std::puts("sdk_probe: every-nth ok");
    return 0;
}
