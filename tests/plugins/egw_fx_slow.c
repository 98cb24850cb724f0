/* SPDX-License-Identifier: Apache-2.0 */
/* egw_fx_slow: a heavy plugin (EGW_PLUGIN_HEAVY, max_concurrent from config) that burns CPU for
 * {"ms": N} milliseconds on every message (default 20), like a decoder would, then echoes it on
 * "{topic}/out". For the benchmark of the loop's longest stall while heavy plugins run on the
 * worker pool, and for the per-instance concurrency cap, which the descriptor declares as 2.
 * Config: {"ms": N}. */
#define _POSIX_C_SOURCE 200809L
#include "fx_common.h"

#include <stdio.h>
#include <time.h>

typedef struct slow {
    fx_instance base;
    long ms;
} slow;

static long parse_ms(const char* json) {
    const char* key = json != NULL ? strstr(json, "\"ms\"") : NULL;
    if (key == NULL) return 20;
    key += 4;
    while (*key == ' ' || *key == ':') key++;
    return strtol(key, NULL, 10);
}

static void* create(const egw_host* host, void* host_ctx, const char* config_json,
                    size_t config_len, char* error, size_t error_cap) {
    slow* self;
    long ms = parse_ms(config_json);
    (void)config_len;
    if (ms < 0 || ms > 60000) {
        snprintf(error, error_cap, "ms: must be an integer from 0 to 60000");
        return NULL;
    }
    self = (slow*)calloc(1, sizeof *self);
    if (self == NULL) return NULL;
    self->base.host = host;
    self->base.host_ctx = host_ctx;
    self->ms = ms;
    return self;
}

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int on_message(void* instance, const egw_message* msg, egw_call* call) {
    const slow* self = (const slow*)instance;
    long long until = now_ns() + (long long)self->ms * 1000000LL;
    volatile unsigned long spins = 0;
    while (now_ns() < until) ++spins;
    return fx_echo(&self->base, msg, call, "/out");
}

static const egw_plugin descriptor = {
    EGW_ABI_MAJOR,
    EGW_ABI_MINOR,
    sizeof(egw_plugin),
    EGW_PLUGIN_HEAVY,
    "egw_fx_slow",
    "1.0.0",
    2,
    create,
    fx_destroy,
    on_message,
    NULL,
    NULL,
    NULL,
};

EGW_EXPORT const egw_plugin* egw_plugin_entry(void) { return &descriptor; }
