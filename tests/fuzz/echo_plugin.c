/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A minimal plugin for the plugin fuzz target's own check (tests/fuzz/run.sh runs it when no
 * shipped plugin is built): it re-emits each message on topic + "/echo", counts messages as its
 * state, and asks for a timer. Not shipped.
 */
#include <edge-gateway/plugin.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const egw_host* host;
    uint64_t count;
} echo;

static void* create(const egw_host* host, void* ctx, const char* cfg, size_t len, char* err,
                    size_t cap) {
    (void)ctx;
    (void)cfg;
    (void)len;
    (void)err;
    (void)cap;
    echo* e = calloc(1, sizeof *e);
    if (e) e->host = host;
    return e;
}

static void destroy(void* inst) { free(inst); }

static int on_message(void* inst, const egw_message* msg, egw_call* call) {
    echo* e = inst;
    egw_output out;
    memset(&out, 0, sizeof out);
    out.struct_size = sizeof out;
    out.flags = EGW_OUTPUT_SUFFIX;
    out.topic = "/echo";
    out.topic_len = 5;
    out.payload = msg->payload;
    out.payload_len = msg->payload_len;
    e->count++;
    e->host->set_timer(call, msg->ts_ms + 1000);
    return e->host->emit(call, &out);
}

static int on_timer(void* inst, int64_t now, egw_call* call) {
    (void)inst;
    (void)now;
    (void)call;
    return EGW_OK;
}

static int on_snapshot(void* inst, egw_call* call) {
    echo* e = inst;
    return e->host->write_state(call, (const uint8_t*)&e->count, sizeof e->count);
}

static int on_restore(void* inst, const uint8_t* state, size_t len) {
    echo* e = inst;
    if (len != sizeof e->count) return EGW_ERROR;
    memcpy(&e->count, state, len);
    return EGW_OK;
}

static const egw_plugin desc = {
    EGW_ABI_MAJOR, EGW_ABI_MINOR, sizeof(egw_plugin), 0,        "echo",      "1",       0,
    create,        destroy,       on_message,         on_timer, on_snapshot, on_restore};

EGW_EXPORT const egw_plugin* egw_plugin_entry(void) { return &desc; }
