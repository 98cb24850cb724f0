-- SPDX-License-Identifier: Apache-2.0
-- Test fixture: a script that never returns from on_message when the payload contains "loop"
-- (and echoes any other message on "{topic}/out"). The Lua runtime's instruction-count hook must
-- stop it at the instance's time budget, dead-letter the message and keep the instance usable
-- for the next one.

function on_message(msg)
    if string.find(msg.payload, "loop", 1, true) then
        local n = 0
        while true do
            n = n + 1
        end
    end
    emit { suffix = "/out", payload = msg.payload }
end
