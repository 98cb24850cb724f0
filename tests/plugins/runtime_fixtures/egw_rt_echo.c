/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test fixture for the plugin runtimes: echoes each message's payload on "{topic}/echo". Built
 * as three modules from this one file:
 *  - egw_rt_echo:   just that (also the benchmark's plugin);
 *  - egw_rt_faulty: on payload "crash" it writes through a NULL pointer, on "abort" it calls
 *                   abort(), on "hang" it never returns, on "error" it logs and returns
 *                   EGW_ERROR;
 *  - egw_rt_counter (EGW_RT_COUNTER and EGW_RT_FAULTY): keeps a message count as its state
 *                   (snapshot/restore), emits the count instead of the payload, and fails like
 *                   egw_rt_faulty.
 */
#define _GNU_SOURCE /* memmem */
#include <edge-gateway/plugin.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct echo {
    const egw_host* host;
    void* host_ctx;
    uint64_t count;
} echo;

static void* echo_create(const egw_host* host, void* host_ctx, const char* config_json,
                         size_t config_len, char* error, size_t error_cap) {
    (void)config_json;
    /* A config of {"reject": ...} is refused, to test rejection through isolation. */
    if (config_len >= 9 && memmem(config_json, config_len, "\"reject\"", 8) != NULL) {
        strncpy(error, "reject: this config is refused", error_cap - 1);
        error[error_cap - 1] = '\0';
        return NULL;
    }
#ifdef EGW_RT_FAULTY
    /* {"create": "hang"} or {"create": "crash"}: fail while the instance is created. */
    if (memmem(config_json, config_len, "\"create\":\"hang\"", 15) != NULL)
        for (;;) pause();
    if (memmem(config_json, config_len, "\"create\":\"crash\"", 16) != NULL) abort();
#endif
    echo* e = calloc(1, sizeof *e);
    if (e == NULL) return NULL;
    e->host = host;
    e->host_ctx = host_ctx;
    return e;
}

static void echo_destroy(void* inst) { free(inst); }

static int is(const egw_message* m, const char* word) {
    size_t n = strlen(word);
    return m->payload_len == n && memcmp(m->payload, word, n) == 0;
}

static int echo_on_message(void* inst, const egw_message* msg, egw_call* call) {
    echo* e = inst;
#ifdef EGW_RT_FAULTY
    if (is(msg, "crash")) {
        /* A real SIGSEGV, also under ASan/UBSan, whose handlers would turn a faulting store
         * into a report and exit(1). */
        signal(SIGSEGV, SIG_DFL);
        raise(SIGSEGV);
    }
    if (is(msg, "abort")) abort();
    if (is(msg, "hang"))
        for (;;) pause();
    if (is(msg, "error")) {
        const char why[] = "asked to fail";
        e->host->log(e->host_ctx, EGW_LOG_ERROR, why, sizeof why - 1);
        return EGW_ERROR;
    }
#else
    (void)is;
#endif
    egw_output out;
    memset(&out, 0, sizeof out);
    out.struct_size = sizeof out;
    out.flags = EGW_OUTPUT_SUFFIX;
    out.topic = "/echo";
    out.topic_len = 5;
#ifdef EGW_RT_COUNTER
    char buf[32];
    e->count++;
    size_t n = 0;
    uint64_t v = e->count;
    char tmp[32];
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; ++i) buf[i] = tmp[n - 1 - i];
    out.payload = (const uint8_t*)buf;
    out.payload_len = n;
#else
    out.payload = msg->payload;
    out.payload_len = msg->payload_len;
#endif
    out.content_type = msg->content_type;
    out.content_type_len = msg->content_type_len;
    return e->host->emit(call, &out);
}

#ifdef EGW_RT_COUNTER
static int echo_on_snapshot(void* inst, egw_call* call) {
    echo* e = inst;
    return e->host->write_state(call, (const uint8_t*)&e->count, sizeof e->count);
}

static int echo_on_restore(void* inst, const uint8_t* state, size_t len) {
    echo* e = inst;
    if (len != sizeof e->count) return EGW_ERROR;
    memcpy(&e->count, state, len);
    return EGW_OK;
}
#endif

static const egw_plugin descriptor = {
    .abi_major = EGW_ABI_MAJOR,
    .abi_minor = EGW_ABI_MINOR,
    .struct_size = sizeof(egw_plugin),
    .flags = EGW_PLUGIN_HEAVY,
    .name = "egw-rt-echo",
    .version = "1",
    .max_concurrent = 1,
    .create = echo_create,
    .destroy = echo_destroy,
    .on_message = echo_on_message,
#ifdef EGW_RT_COUNTER
    .on_snapshot = echo_on_snapshot,
    .on_restore = echo_on_restore,
#endif
};

EGW_EXPORT const egw_plugin* egw_plugin_entry(void) { return &descriptor; }
