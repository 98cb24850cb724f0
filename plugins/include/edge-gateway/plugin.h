/* SPDX-License-Identifier: Apache-2.0 */
/*
 * edge-gateway plugin ABI, version 1.
 *
 * A plugin is a shared object that exports one symbol, egw_plugin_entry(), returning a static
 * descriptor (struct egw_plugin). The gateway loads it with dlopen(RTLD_NOW | RTLD_LOCAL),
 * checks the descriptor's version, and then creates one or more instances of it, each from a
 * JSON config. Every matching message is handed to an instance's on_message hook, which emits
 * zero or more outputs through the host.
 *
 * Versioning. EGW_ABI_MAJOR changes only when a struct or a hook changes meaning; the gateway
 * refuses a plugin whose major differs from its own, naming both numbers. Minor versions only
 * append fields at the end of structs; every struct starts with (or carries) struct_size, and
 * neither side reads a field that the other side's struct_size does not cover. A plugin built
 * against an older minor therefore keeps working with a newer gateway.
 *
 * Threads. A "fast" plugin (flags without EGW_PLUGIN_HEAVY) runs on the gateway's event loop
 * thread and must return within microseconds. A "heavy" plugin runs on the worker pool, with
 * at most max_concurrent calls of one instance at once; the loop never waits for it. A plugin
 * that has state to snapshot (on_snapshot set) gets one call at a time per instance,
 * whatever max_concurrent says, so that its snapshot describes exactly the messages it saw.
 * Calls of different instances may run at the same time on different threads.
 *
 * Memory. Every pointer the host passes is owned by the host and valid only during the call it
 * was passed to; copy what you keep. Every pointer a plugin passes to a host service is read
 * (and copied) before the service returns. Strings are (pointer, length) pairs and are not
 * necessarily NUL-terminated; payloads are bytes.
 *
 * Errors. A hook returns EGW_OK, or EGW_ERROR after telling the host why through log(). A
 * message whose hook returns EGW_ERROR, whose output is invalid (see egw_host.emit), that throws
 * a C++ exception (caught at the boundary) or that runs past the instance's time budget, goes to
 * the dead letters with its reason; outputs it emitted before failing are discarded. The
 * gateway counts and logs each case and goes on with the next message.
 *
 * Crash safety. The gateway commits a batch of inputs' release, their outputs, and each
 * stateful instance's snapshot in one SQLite transaction. After a crash it restores each
 * instance from its last committed snapshot and feeds it the inputs that were not released,
 * in the same order. A deterministic plugin therefore neither loses nor duplicates an output.
 */
#ifndef EDGE_GATEWAY_PLUGIN_H
#define EDGE_GATEWAY_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EGW_ABI_MAJOR 1
#define EGW_ABI_MINOR 0

/* Marks the entry point as exported even when the plugin builds with -fvisibility=hidden. */
#if defined(__GNUC__)
#define EGW_EXPORT __attribute__((visibility("default")))
#else
#define EGW_EXPORT
#endif

/* Hook return codes. */
#define EGW_OK 0
#define EGW_ERROR (-1)

/* egw_plugin.flags */
#define EGW_PLUGIN_HEAVY 0x1u /* run on the worker pool, never on the loop */

/* egw_output.flags */
#define EGW_OUTPUT_SUFFIX 0x1u /* topic is appended to the input topic ("/window") */

/* egw_output.priority */
#define EGW_PRIORITY_ROUTE 0 /* the route's priority (the default) */
#define EGW_PRIORITY_NORMAL 1
#define EGW_PRIORITY_HIGH 2 /* drains before normal rows of the same sink after an outage */

/* host log levels */
#define EGW_LOG_DEBUG 0
#define EGW_LOG_INFO 1
#define EGW_LOG_WARN 2
#define EGW_LOG_ERROR 3

/* One hook invocation. Opaque: passed back to the host services that act on the call. Valid
 * only during the hook it was passed to, and only on the thread that runs that hook. */
typedef struct egw_call egw_call;

/* An MQTT 5 user property. */
typedef struct egw_property {
    const char* key;
    size_t key_len;
    const char* value;
    size_t value_len;
} egw_property;

/* A message the instance receives. Host-owned, valid during the hook. */
typedef struct egw_message {
    uint32_t struct_size;
    const char* topic;
    size_t topic_len;
    const uint8_t* payload;
    size_t payload_len;
    int32_t qos;
    int64_t ts_ms; /* ingest time, Unix epoch milliseconds */
    uint64_t seq;  /* the buffer's sequence number of the input row */
    /* The second level of devices/{id}/...; empty (len 0) when the topic has none. */
    const char* device_id;
    size_t device_id_len;
    /* MQTT 5 content type when the publisher set one (or the previous instance of a chain
     * did); empty otherwise. */
    const char* content_type;
    size_t content_type_len;
} egw_message;

/* An output an instance emits. Plugin-owned; the host copies it before emit() returns. */
typedef struct egw_output {
    uint32_t struct_size; /* sizeof(egw_output) as the plugin was built */
    uint32_t flags;       /* EGW_OUTPUT_SUFFIX */
    const char* topic;    /* a full topic, or with EGW_OUTPUT_SUFFIX a suffix such as "/alert" */
    size_t topic_len;
    const uint8_t* payload;
    size_t payload_len;
    const char* content_type; /* e.g. "application/json"; may be NULL */
    size_t content_type_len;
    int32_t priority;               /* EGW_PRIORITY_* */
    const egw_property* properties; /* MQTT 5 user properties for this output; may be NULL */
    size_t property_count;
} egw_output;

/* Services the host offers, as a table so plugins never link against the gateway. Valid for
 * the lifetime of the instance it was given to. */
typedef struct egw_host {
    uint32_t struct_size;
    uint32_t abi_minor; /* the host's EGW_ABI_MINOR */
    /* Any thread. host_ctx is the value given to create(). Lines are rate-limited. */
    void (*log)(void* host_ctx, int level, const char* text, size_t len);
    /* During on_message and on_timer. Copies the output. Returns EGW_ERROR for an invalid output
     * (an empty topic or one with wildcards, a payload above the gateway's limit): the call then
     * fails as if the hook had returned EGW_ERROR. */
    int (*emit)(egw_call* call, const egw_output* out);
    /* During any hook but on_snapshot: asks for on_timer at or after at_ms (Unix epoch ms).
     * One timer per instance; a later request replaces the earlier one; 0 cancels it. */
    void (*set_timer)(egw_call* call, int64_t at_ms);
    /* During on_snapshot: appends bytes to the instance's state snapshot. */
    int (*write_state)(egw_call* call, const uint8_t* data, size_t len);
} egw_host;

/* The descriptor egw_plugin_entry() returns. Static storage; the host never writes to it. */
typedef struct egw_plugin {
    uint32_t abi_major;      /* EGW_ABI_MAJOR */
    uint32_t abi_minor;      /* EGW_ABI_MINOR */
    uint32_t struct_size;    /* sizeof(egw_plugin) */
    uint32_t flags;          /* EGW_PLUGIN_* */
    const char* name;        /* NUL-terminated, e.g. "window-stats" */
    const char* version;     /* NUL-terminated, the plugin's own version */
    uint32_t max_concurrent; /* heavy plugins: calls of one instance at once; 0 means 1 */

    /* Creates an instance from its JSON config (config_json is NUL-terminated as well). On a
     * config it rejects, returns NULL and writes a NUL-terminated reason of at most error_cap
     * bytes into error, naming the key, e.g. "field: must be a string". Loop thread; also
     * called by `edge-gateway --check-config` to validate. */
    void* (*create)(const egw_host* host, void* host_ctx, const char* config_json,
                    size_t config_len, char* error, size_t error_cap);
    /* Frees an instance. Called once, after its last hook returned. */
    void (*destroy)(void* instance);
    /* One message. Emits outputs through host->emit(call, ...). */
    int (*on_message)(void* instance, const egw_message* msg, egw_call* call);
    /* The timer asked for with set_timer() is due; now_ms is the wall clock. May be NULL. */
    int (*on_timer)(void* instance, int64_t now_ms, egw_call* call);
    /* Writes the instance's whole state through host->write_state(call, ...). NULL for a
     * stateless plugin. Called after a batch of messages, before the batch commits. */
    int (*on_snapshot)(void* instance, egw_call* call);
    /* Replaces the instance's state with a snapshot that on_snapshot wrote (maybe by an
     * earlier run of the same plugin version). Called once right after create(), before any
     * message, when a snapshot exists. May be NULL. */
    int (*on_restore)(void* instance, const uint8_t* state, size_t len);
} egw_plugin;

/* The one symbol a plugin exports. */
typedef const egw_plugin* (*egw_plugin_entry_fn)(void);
#define EGW_PLUGIN_ENTRY_SYMBOL "egw_plugin_entry"
EGW_EXPORT const egw_plugin* egw_plugin_entry(void);

#ifdef __cplusplus
}
#endif

#endif /* EDGE_GATEWAY_PLUGIN_H */
