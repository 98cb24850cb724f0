/* SPDX-License-Identifier: Apache-2.0 */
/* egw_fx_old_minor: a plugin built against an older minor of ABI 1, whose descriptor ended
 * after on_message (no on_timer, on_snapshot, on_restore). Its struct_size covers only the
 * fields it has, so the host must not read past them and must treat the missing hooks as NULL.
 * It echoes every message on "{topic}/old".
 *
 * The descriptor is its own local struct, laid out like the head of egw_plugin; the static
 * asserts keep the two in step. The object after it in memory is a sentinel of non-NULL
 * "function pointers": a host that reads past struct_size and calls them crashes. */
#include "fx_common.h"

#include <stddef.h>

typedef struct fx_old_plugin {
    uint32_t abi_major;
    uint32_t abi_minor;
    uint32_t struct_size;
    uint32_t flags;
    const char* name;
    const char* version;
    uint32_t max_concurrent;
    void* (*create)(const egw_host*, void*, const char*, size_t, char*, size_t);
    void (*destroy)(void*);
    int (*on_message)(void*, const egw_message*, egw_call*);
} fx_old_plugin;

_Static_assert(offsetof(fx_old_plugin, on_message) == offsetof(egw_plugin, on_message),
               "the old descriptor must be a prefix of egw_plugin");
_Static_assert(sizeof(fx_old_plugin) == offsetof(egw_plugin, on_timer),
               "the old descriptor ends where on_timer begins");

static int on_message(void* instance, const egw_message* msg, egw_call* call) {
    return fx_echo((const fx_instance*)instance, msg, call, "/old");
}

/* One object, so that the sentinel really follows the descriptor in memory. */
static const struct {
    fx_old_plugin descriptor;
    uintptr_t sentinel[3];
} old = {
    {EGW_ABI_MAJOR, 0, sizeof(fx_old_plugin), 0, "egw_fx_old_minor", "0.9.0", 0, fx_create,
     fx_destroy, on_message},
    {1, 1, 1},
};

EGW_EXPORT const egw_plugin* egw_plugin_entry(void) {
    return (const egw_plugin*)(const void*)&old.descriptor;
}
