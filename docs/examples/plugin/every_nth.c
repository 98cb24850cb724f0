/* SPDX-License-Identifier: Apache-2.0 */
/*
 * every-nth: an example edge-gateway plugin in plain C.
 *
 * Forwards one message in N, unchanged, to the same topic, and drops the others: a crude
 * down-sampler. Config: {"every": N} with N a positive integer. It shows each part of the ABI a
 * plugin usually needs:
 *   - egw_plugin_entry() returning a static descriptor,
 *   - create() validating the config and rejecting it with a message that names the key,
 *   - on_message() emitting an output through the host,
 *   - on_snapshot() / on_restore(), so that its count survives a crash of the gateway exactly.
 *
 * Build it out of tree against the installed header (see CMakeLists.txt next to this file):
 *   cmake -S . -B build -DCMAKE_PREFIX_PATH=/usr && cmake --build build
 */
#include <edge-gateway/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct every_nth {
    const egw_host* host; /* the host's services, valid for the instance's lifetime */
    void* host_ctx;       /* passed back to host->log */
    unsigned long every;  /* forward one message in `every` */
    unsigned long seen;   /* messages seen since the last forwarded one: the state */
} every_nth;

static void log_text(const every_nth* self, int level, const char* text) {
    self->host->log(self->host_ctx, level, text, strlen(text));
}

/* Reads {"every": N}. A real plugin would use a JSON parser (the shipped ones are C++ with
 * nlohmann_json); this one looks for the one key it knows to stay dependency-free. */
static int parse_every(const char* json, unsigned long* every) {
    const char* key = strstr(json, "\"every\"");
    char* end;
    long n;
    if (key == NULL) return 0;
    key += strlen("\"every\"");
    while (*key == ' ' || *key == '\t' || *key == '\n' || *key == '\r') key++;
    if (*key != ':') return 0;
    n = strtol(key + 1, &end, 10);
    if (end == key + 1 || n <= 0 || *end == '.' || *end == 'e' || *end == 'E') return 0;
    *every = (unsigned long)n;
    return 1;
}

/* Loop thread. Also called by `edge-gateway --check-config`: validate everything here. */
static void* create(const egw_host* host, void* host_ctx, const char* config_json,
                    size_t config_len, char* error, size_t error_cap) {
    every_nth* self;
    unsigned long every = 0;
    (void)config_len; /* config_json is NUL-terminated as well */
    if (!parse_every(config_json, &every)) {
        snprintf(error, error_cap, "every: must be a positive integer");
        return NULL;
    }
    self = (every_nth*)calloc(1, sizeof *self);
    if (self == NULL) {
        snprintf(error, error_cap, "out of memory");
        return NULL;
    }
    self->host = host;
    self->host_ctx = host_ctx;
    self->every = every;
    return self;
}

static void destroy(void* instance) { free(instance); }

/* Loop thread (a fast plugin): return within microseconds. */
static int on_message(void* instance, const egw_message* msg, egw_call* call) {
    every_nth* self = (every_nth*)instance;
    egw_output out;
    if (++self->seen < self->every) return EGW_OK; /* dropped: no output is fine */
    self->seen = 0;
    memset(&out, 0, sizeof out);
    out.struct_size = sizeof out;
    out.flags = 0; /* a full topic: the input's own */
    out.topic = msg->topic;
    out.topic_len = msg->topic_len;
    out.payload = msg->payload; /* the host copies it before emit() returns */
    out.payload_len = msg->payload_len;
    out.content_type = msg->content_type;
    out.content_type_len = msg->content_type_len;
    out.priority = EGW_PRIORITY_ROUTE;
    if (self->host->emit(call, &out) != EGW_OK) {
        log_text(self, EGW_LOG_WARN, "every-nth: the host refused the output");
        return EGW_ERROR;
    }
    return EGW_OK;
}

/* After a batch, before it commits: the whole state, here one decimal number. */
static int on_snapshot(void* instance, egw_call* call) {
    const every_nth* self = (const every_nth*)instance;
    char text[32];
    int n = snprintf(text, sizeof text, "%lu", self->seen);
    return self->host->write_state(call, (const uint8_t*)text, (size_t)n);
}

/* Right after create(), before any message, when the gateway has a committed snapshot. */
static int on_restore(void* instance, const uint8_t* state, size_t len) {
    every_nth* self = (every_nth*)instance;
    char text[32];
    char* end;
    if (len == 0 || len >= sizeof text) return EGW_ERROR;
    memcpy(text, state, len);
    text[len] = '\0';
    self->seen = strtoul(text, &end, 10);
    if (*end != '\0') {
        log_text(self, EGW_LOG_ERROR, "every-nth: snapshot is not a number");
        return EGW_ERROR;
    }
    return EGW_OK;
}

static const egw_plugin descriptor = {
    EGW_ABI_MAJOR,
    EGW_ABI_MINOR,
    sizeof(egw_plugin),
    0, /* flags: fast, runs on the loop */
    "every-nth",
    "1.0.0",
    0, /* max_concurrent: heavy plugins only */
    create,
    destroy,
    on_message,
    NULL, /* on_timer: no timers */
    on_snapshot,
    on_restore,
};

EGW_EXPORT const egw_plugin* egw_plugin_entry(void) { return &descriptor; }
