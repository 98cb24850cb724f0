/* SPDX-License-Identifier: Apache-2.0 */
/* egw_fx_error: returns EGW_ERROR (after logging why) on a payload containing "bad"; echoes any
 * other message on "{topic}/out". For the host's error-return containment and dead letters. */
#include "fx_common.h"

static int on_message(void* instance, const egw_message* msg, egw_call* call) {
    const fx_instance* self = (const fx_instance*)instance;
    if (fx_contains(msg, "bad")) {
        fx_log(self, EGW_LOG_ERROR, "egw_fx_error: payload contains \"bad\"");
        return EGW_ERROR;
    }
    return fx_echo(self, msg, call, "/out");
}

static const egw_plugin descriptor = {
    EGW_ABI_MAJOR, EGW_ABI_MINOR, sizeof(egw_plugin), 0,    "egw_fx_error", "1.0.0", 0,
    fx_create,     fx_destroy,    on_message,         NULL, NULL,           NULL,
};

EGW_EXPORT const egw_plugin* egw_plugin_entry(void) { return &descriptor; }
