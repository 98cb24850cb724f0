/* SPDX-License-Identifier: Apache-2.0 */
/* egw_fx_wrong_major: a descriptor with abi_major 99. The gateway must refuse to load it with
 * an error naming both majors (99 and its own), and never call any of its hooks; so the hooks
 * here abort, to make a call that should not happen impossible to miss. */
#include <edge-gateway/plugin.h>

#include <stdlib.h>

static void* create(const egw_host* host, void* host_ctx, const char* config_json,
                    size_t config_len, char* error, size_t error_cap) {
    (void)host;
    (void)host_ctx;
    (void)config_json;
    (void)config_len;
    (void)error;
    (void)error_cap;
    abort();
}

static void destroy(void* instance) {
    (void)instance;
    abort();
}

static int on_message(void* instance, const egw_message* msg, egw_call* call) {
    (void)instance;
    (void)msg;
    (void)call;
    abort();
}

static const egw_plugin descriptor = {
    99,
    0,
    sizeof(egw_plugin),
    0,
    "egw_fx_wrong_major",
    "1.0.0",
    0,
    create,
    destroy,
    on_message,
    NULL,
    NULL,
    NULL,
};

EGW_EXPORT const egw_plugin* egw_plugin_entry(void) { return &descriptor; }
