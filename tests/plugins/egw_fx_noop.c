/* SPDX-License-Identifier: Apache-2.0 */
/* egw_fx_noop: emits every message unchanged (payload, content type) on "{topic}/noop". The
 * cheapest plugin there is: the baseline of the plugin benchmarks and of the chain tests. */
#include "fx_common.h"

static int on_message(void* instance, const egw_message* msg, egw_call* call) {
    return fx_echo((const fx_instance*)instance, msg, call, "/noop");
}

static const egw_plugin descriptor = {
    EGW_ABI_MAJOR, EGW_ABI_MINOR, sizeof(egw_plugin), 0,    "egw_fx_noop", "1.0.0", 0,
    fx_create,     fx_destroy,    on_message,         NULL, NULL,          NULL,
};

EGW_EXPORT const egw_plugin* egw_plugin_entry(void) { return &descriptor; }
