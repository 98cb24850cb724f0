/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared bits of the test fixture plugins (tests/plugins/egw_fx_*.c): a stateless instance, an
 * echo helper and a payload search. Fixtures are deliberately small C files: each one is a
 * plugin misbehaving (or behaving) in exactly one way, for the host's tests.
 */
#ifndef EGW_FX_COMMON_H
#define EGW_FX_COMMON_H

#include <edge-gateway/plugin.h>

#include <stdlib.h>
#include <string.h>

/* The instance of a stateless fixture: what create() was given. */
typedef struct fx_instance {
    const egw_host* host;
    void* host_ctx;
} fx_instance;

static inline void* fx_create(const egw_host* host, void* host_ctx, const char* config_json,
                              size_t config_len, char* error, size_t error_cap) {
    fx_instance* self;
    (void)config_json;
    (void)config_len;
    (void)error;
    (void)error_cap;
    self = (fx_instance*)calloc(1, sizeof *self);
    if (self == NULL) return NULL;
    self->host = host;
    self->host_ctx = host_ctx;
    return self;
}

static inline void fx_destroy(void* instance) { free(instance); }

/* Whether the payload contains `needle` (payloads are bytes, not C strings). */
static inline int fx_contains(const egw_message* msg, const char* needle) {
    size_t n = strlen(needle);
    size_t i;
    if (n == 0 || msg->payload_len < n) return 0;
    for (i = 0; i + n <= msg->payload_len; ++i) {
        if (memcmp(msg->payload + i, needle, n) == 0) return 1;
    }
    return 0;
}

/* Emits the input's payload and content type on the input topic + suffix. */
static inline int fx_echo(const fx_instance* self, const egw_message* msg, egw_call* call,
                          const char* suffix) {
    egw_output out;
    memset(&out, 0, sizeof out);
    out.struct_size = sizeof out;
    out.flags = EGW_OUTPUT_SUFFIX;
    out.topic = suffix;
    out.topic_len = strlen(suffix);
    out.payload = msg->payload;
    out.payload_len = msg->payload_len;
    out.content_type = msg->content_type;
    out.content_type_len = msg->content_type_len;
    out.priority = EGW_PRIORITY_ROUTE;
    return self->host->emit(call, &out);
}

static inline void fx_log(const fx_instance* self, int level, const char* text) {
    self->host->log(self->host_ctx, level, text, strlen(text));
}

#endif /* EGW_FX_COMMON_H */
