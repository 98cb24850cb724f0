/* SPDX-License-Identifier: Apache-2.0 */
/* egw_fx_timer: a stateful plugin whose work happens in its timer, for the stage's timer
 * failure handling. Each message adds one to a pending count, emits nothing and asks for the
 * timer at once (set_timer(1): already due). on_timer emits {"flushed":N} on "timer/out" and
 * clears the count, except that while fewer than `fails` timers have failed it returns
 * EGW_ERROR and keeps the count (config {"fails": K}, default 0). The snapshot is
 * "count,failed" in decimal, so a restart restores both. */
#include <stdio.h>

#include "fx_common.h"

typedef struct fx_timer {
    fx_instance base;
    unsigned long long count, failed, fails;
} fx_timer;

static void* create(const egw_host* host, void* host_ctx, const char* config_json,
                    size_t config_len, char* error, size_t error_cap) {
    fx_timer* self;
    char text[128];
    const char* p;
    (void)error;
    (void)error_cap;
    self = (fx_timer*)calloc(1, sizeof *self);
    if (self == NULL) return NULL;
    self->base.host = host;
    self->base.host_ctx = host_ctx;
    if (config_len < sizeof text) {
        memcpy(text, config_json, config_len);
        text[config_len] = '\0';
        p = strstr(text, "\"fails\":");
        if (p != NULL) self->fails = strtoull(p + 8, NULL, 10);
    }
    return self;
}

static int on_message(void* instance, const egw_message* msg, egw_call* call) {
    fx_timer* self = (fx_timer*)instance;
    (void)msg;
    self->count++;
    self->base.host->set_timer(call, 1);
    return EGW_OK;
}

static int on_timer(void* instance, int64_t now_ms, egw_call* call) {
    fx_timer* self = (fx_timer*)instance;
    char payload[64];
    egw_output out;
    int n;
    (void)now_ms;
    if (self->failed < self->fails) {
        self->failed++;
        fx_log(&self->base, EGW_LOG_ERROR, "egw_fx_timer: failing this timer as configured");
        return EGW_ERROR;
    }
    n = snprintf(payload, sizeof payload, "{\"flushed\":%llu}", self->count);
    self->count = 0;
    memset(&out, 0, sizeof out);
    out.struct_size = sizeof out;
    out.topic = "timer/out";
    out.topic_len = 9;
    out.payload = (const uint8_t*)payload;
    out.payload_len = (size_t)n;
    return self->base.host->emit(call, &out);
}

static int on_snapshot(void* instance, egw_call* call) {
    const fx_timer* self = (const fx_timer*)instance;
    char text[64];
    int n = snprintf(text, sizeof text, "%llu,%llu", self->count, self->failed);
    return self->base.host->write_state(call, (const uint8_t*)text, (size_t)n);
}

static int on_restore(void* instance, const uint8_t* state, size_t len) {
    fx_timer* self = (fx_timer*)instance;
    char text[64];
    if (len == 0 || len >= sizeof text) return EGW_ERROR;
    memcpy(text, state, len);
    text[len] = '\0';
    if (sscanf(text, "%llu,%llu", &self->count, &self->failed) != 2) return EGW_ERROR;
    return EGW_OK;
}

static const egw_plugin descriptor = {
    EGW_ABI_MAJOR, EGW_ABI_MINOR, sizeof(egw_plugin), 0,        "egw_fx_timer", "1.0.0",    0,
    create,        fx_destroy,    on_message,         on_timer, on_snapshot,    on_restore,
};

EGW_EXPORT const egw_plugin* egw_plugin_entry(void) { return &descriptor; }
