/* SPDX-License-Identifier: Apache-2.0 */
/* egw_fx_counter: a stateful plugin for the kill -9 tests. Each message increments a running
 * count and emits {"count":N,"seq":S} on "{topic}/count" (S: the input's sequence number), so a
 * test can check that after a crash the counts continue exactly (restored from the committed
 * snapshot) and that no count appears twice. The snapshot is the count in decimal. */
#include "fx_common.h"

#include <stdio.h>

typedef struct counter {
    fx_instance base;
    unsigned long long count;
} counter;

static void* create(const egw_host* host, void* host_ctx, const char* config_json,
                    size_t config_len, char* error, size_t error_cap) {
    counter* self;
    (void)config_json;
    (void)config_len;
    (void)error;
    (void)error_cap;
    self = (counter*)calloc(1, sizeof *self);
    if (self == NULL) return NULL;
    self->base.host = host;
    self->base.host_ctx = host_ctx;
    return self;
}

static int on_message(void* instance, const egw_message* msg, egw_call* call) {
    counter* self = (counter*)instance;
    char payload[96];
    egw_output out;
    int n;
    self->count++;
    n = snprintf(payload, sizeof payload, "{\"count\":%llu,\"seq\":%llu}", self->count,
                 (unsigned long long)msg->seq);
    memset(&out, 0, sizeof out);
    out.struct_size = sizeof out;
    out.flags = EGW_OUTPUT_SUFFIX;
    out.topic = "/count";
    out.topic_len = 6;
    out.payload = (const uint8_t*)payload;
    out.payload_len = (size_t)n;
    out.content_type = "application/json";
    out.content_type_len = 16;
    return self->base.host->emit(call, &out);
}

static int on_snapshot(void* instance, egw_call* call) {
    const counter* self = (const counter*)instance;
    char text[32];
    int n = snprintf(text, sizeof text, "%llu", self->count);
    return self->base.host->write_state(call, (const uint8_t*)text, (size_t)n);
}

static int on_restore(void* instance, const uint8_t* state, size_t len) {
    counter* self = (counter*)instance;
    char text[32];
    char* end;
    if (len == 0 || len >= sizeof text) return EGW_ERROR;
    memcpy(text, state, len);
    text[len] = '\0';
    self->count = strtoull(text, &end, 10);
    if (*end != '\0') {
        fx_log(&self->base, EGW_LOG_ERROR, "egw_fx_counter: snapshot is not a number");
        return EGW_ERROR;
    }
    return EGW_OK;
}

static const egw_plugin descriptor = {
    EGW_ABI_MAJOR, EGW_ABI_MINOR, sizeof(egw_plugin), 0,    "egw_fx_counter", "1.0.0",    0,
    create,        fx_destroy,    on_message,         NULL, on_snapshot,      on_restore,
};

EGW_EXPORT const egw_plugin* egw_plugin_entry(void) { return &descriptor; }
