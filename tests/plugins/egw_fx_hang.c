/* SPDX-License-Identifier: Apache-2.0 */
/* egw_fx_hang: spins forever (burning CPU, never returning) on a payload containing "hang";
 * echoes any other message on "{topic}/out". For the time budget of isolation: "process" (a
 * native in-process plugin cannot be interrupted; a hang there is the operator's choice of
 * isolation). Declared heavy so that, even in process, it holds a worker-pool thread rather than
 * the event loop. */
#include "fx_common.h"

static int on_message(void* instance, const egw_message* msg, egw_call* call) {
    const fx_instance* self = (const fx_instance*)instance;
    if (fx_contains(msg, "hang")) {
        volatile unsigned long spins = 0;
        for (;;)
            ++spins; /* C11 6.8.5p6: a loop with a constant condition may not be assumed
                        to terminate */
    }
    return fx_echo(self, msg, call, "/out");
}

static const egw_plugin descriptor = {
    EGW_ABI_MAJOR,
    EGW_ABI_MINOR,
    sizeof(egw_plugin),
    EGW_PLUGIN_HEAVY,
    "egw_fx_hang",
    "1.0.0",
    1,
    fx_create,
    fx_destroy,
    on_message,
    NULL,
    NULL,
    NULL,
};

EGW_EXPORT const egw_plugin* egw_plugin_entry(void) { return &descriptor; }
