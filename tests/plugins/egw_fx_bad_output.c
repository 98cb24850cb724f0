/* SPDX-License-Identifier: Apache-2.0 */
/* egw_fx_bad_output: emits invalid outputs, which the host must refuse (emit() returns
 * EGW_ERROR and the message is dead-lettered as bad output):
 *   payload containing "big"   -> a payload of 4 MiB + 1 bytes (above the default 1 MiB limit
 *                                 and any sane local.max_payload_bytes) on "{topic}/out"
 *   payload containing "empty" -> an empty topic
 *   any other payload          -> the topic "{topic}/#" (a wildcard)
 * It ignores emit()'s return value and returns EGW_OK, as a careless plugin would: the host must
 * fail the call anyway. */
#include "fx_common.h"

#define FX_BIG_BYTES ((size_t)4 * 1024 * 1024 + 1)

static int on_message(void* instance, const egw_message* msg, egw_call* call) {
    const fx_instance* self = (const fx_instance*)instance;
    egw_output out;
    memset(&out, 0, sizeof out);
    out.struct_size = sizeof out;
    out.payload = msg->payload;
    out.payload_len = msg->payload_len;
    if (fx_contains(msg, "big")) {
        uint8_t* big = (uint8_t*)calloc(1, FX_BIG_BYTES);
        if (big == NULL) return EGW_ERROR;
        out.flags = EGW_OUTPUT_SUFFIX;
        out.topic = "/out";
        out.topic_len = 4;
        out.payload = big;
        out.payload_len = FX_BIG_BYTES;
        (void)self->host->emit(call, &out);
        free(big);
        return EGW_OK;
    }
    if (fx_contains(msg, "empty")) {
        out.topic = "";
        out.topic_len = 0;
    } else {
        out.flags = EGW_OUTPUT_SUFFIX;
        out.topic = "/#";
        out.topic_len = 2;
    }
    (void)self->host->emit(call, &out);
    return EGW_OK;
}

static const egw_plugin descriptor = {
    EGW_ABI_MAJOR,
    EGW_ABI_MINOR,
    sizeof(egw_plugin),
    0,
    "egw_fx_bad_output",
    "1.0.0",
    0,
    fx_create,
    fx_destroy,
    on_message,
    NULL,
    NULL,
    NULL,
};

EGW_EXPORT const egw_plugin* egw_plugin_entry(void) { return &descriptor; }
