-- SPDX-License-Identifier: Apache-2.0
-- Test fixture: the no-op Lua plugin. Emits every message unchanged on "{topic}/noop", like
-- egw_fx_noop.so does, so the Lua runtime's cost per message can be compared with the C one's.
-- Script API: docs/plugins-lua.md (globals on_message(msg) and emit{...}).

function on_message(msg)
    emit { suffix = "/noop", payload = msg.payload, content_type = msg.content_type }
end
