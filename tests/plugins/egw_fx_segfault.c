/* SPDX-License-Identifier: Apache-2.0 */
/* egw_fx_segfault: dies of SIGSEGV on a payload containing "crash", and
 * aborts (SIGABRT) on one containing "abort"; echoes any other message on "{topic}/out". Only
 * safe under isolation: "process"; in process it takes the gateway down, as any native plugin
 * would. */
#include <signal.h>

#include "fx_common.h"

static int on_message(void* instance, const egw_message* msg, egw_call* call) {
    const fx_instance* self = (const fx_instance*)instance;
    if (fx_contains(msg, "crash")) {
        /* A real SIGSEGV, also under ASan/UBSan, whose handlers would turn a faulting store
         * into a report and exit(1). */
        signal(SIGSEGV, SIG_DFL);
        raise(SIGSEGV);
    }
    if (fx_contains(msg, "abort")) abort();
    return fx_echo(self, msg, call, "/out");
}

static const egw_plugin descriptor = {
    EGW_ABI_MAJOR,
    EGW_ABI_MINOR,
    sizeof(egw_plugin),
    0,
    "egw_fx_segfault",
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
