// SPDX-License-Identifier: Apache-2.0
// egw_fx_throws: a C++ plugin that lets a std::runtime_error escape on_message when the payload
// contains "bad" (first emitting one output, which the host must discard), and echoes any other
// message on "{topic}/out". Deliberately breaks the rule "no exception crosses the C ABI", so
// the host's boundary can be tested: the gateway must catch it, dead-letter the message and go
// on.
#include <edge-gateway/plugin.h>

#include <cstring>
#include <stdexcept>
#include <string_view>

namespace {

struct instance {
    const egw_host* host;
};

void* create(const egw_host* host, void*, const char*, size_t, char*, size_t) {
    return new instance{host};
}

void destroy(void* inst) { delete static_cast<instance*>(inst); }

int emit(const instance* self, const egw_message* msg, egw_call* call) {
    egw_output out{};
    out.struct_size = sizeof out;
    out.flags = EGW_OUTPUT_SUFFIX;
    out.topic = "/out";
    out.topic_len = 4;
    out.payload = msg->payload;
    out.payload_len = msg->payload_len;
    return self->host->emit(call, &out);
}

int on_message(void* inst, const egw_message* msg, egw_call* call) {
    auto* self = static_cast<instance*>(inst);
    std::string_view payload(reinterpret_cast<const char*>(msg->payload), msg->payload_len);
    if (payload.find("bad") != std::string_view::npos) {
        emit(self, msg, call);
        throw std::runtime_error("egw_fx_throws: payload contains \"bad\"");
    }
    return emit(self, msg, call);
}

const egw_plugin kDescriptor = {
    EGW_ABI_MAJOR, EGW_ABI_MINOR, sizeof(egw_plugin), 0,       "egw_fx_throws", "1.0.0", 0,
    create,        destroy,       on_message,         nullptr, nullptr,         nullptr,
};

}  // namespace

extern "C" EGW_EXPORT const egw_plugin* egw_plugin_entry(void) { return &kDescriptor; }
