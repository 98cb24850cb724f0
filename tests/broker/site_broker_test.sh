#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The site broker as shipped: a real Mosquitto runs broker-config/devices.conf and
# acl.example (only /etc/mosquitto/, the ports and the bind address rewritten), with material
# from make-tls.sh, enroll-device and revoke-device, and real mosquitto_pub/sub clients check
# what a device may and may not do.
#
#   bash tests/broker/site_broker_test.sh        (ctest: broker.site_broker)
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bc=$src/broker-config
work=$(mktemp -d /tmp/egw-broker-XXXXXX)
broker_pid=""
cleanup() {
    [[ -n "$broker_pid" ]] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null
    jobs -p | xargs -r kill 2>/dev/null || true
    if [[ -n "${EGW_KEEP_TMP:-}" ]]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

failures=0
pass() { echo "ok   $*"; }
fail() {
    echo "FAIL $*"
    failures=$((failures + 1))
}
# poll_until SECONDS COMMAND...: the only way this test waits.
poll_until() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.05
    done
}
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

etc=$work/etc
tls=$etc/tls
mkdir -p "$etc"
cert_port=$(free_port)
pw_port=$(free_port)
while [[ "$pw_port" == "$cert_port" ]]; do pw_port=$(free_port); done

# --- Material, as an operator makes it ---------------------------------------------------------
bash "$bc/make-tls.sh" -d "$tls" -s localhost -s 127.0.0.1 edge-gateway >/dev/null
install -m 0644 "$bc/acl.example" "$etc/edge-gateway.acl"
enroll=("$bc/enroll-device" --conf-dir "$etc" --pid-file "$work/mosquitto.pid" --host 127.0.0.1)
"${enroll[@]}" sensor-1 --cert >"$work/enroll-sensor-1.txt" 2>&1
"${enroll[@]}" sensor-2 --cert >/dev/null 2>&1
"${enroll[@]}" pw-1 --password >"$work/enroll-pw-1.txt" 2>&1
password=$(awk '$1 == "password" {print $2}' "$work/enroll-pw-1.txt")
[[ -n "$password" ]] && pass "enroll-device --password prints a password" ||
    fail "enroll-device --password printed no password: $(cat "$work/enroll-pw-1.txt")"
grep -q "sensor-1.crt" "$work/enroll-sensor-1.txt" && pass "enroll-device --cert prints the files" ||
    fail "enroll-device --cert output: $(cat "$work/enroll-sensor-1.txt")"
if grep -q "$password" "$etc/edge-gateway.passwd"; then fail "password stored in clear"; else pass "password stored hashed"; fi
if "${enroll[@]}" edge-gateway --password >/dev/null 2>&1; then fail "enrolled the gateway's name"; else pass "gateway's name is reserved"; fi
if "${enroll[@]}" 'a/b' --password >/dev/null 2>&1; then fail "enrolled a/b"; else pass "bad id refused"; fi

# An unrelated CA with a client certificate that claims to be sensor-1.
bash "$bc/make-tls.sh" -d "$work/rogue" -s localhost sensor-1 >/dev/null
# sensor-1's files, kept to try them again after revoke-device moves them away.
cp "$tls/sensor-1.crt" "$tls/sensor-1.key" "$work/"

# --- The broker ----------------------------------------------------------------------------------
{
    # Root would switch to the mosquitto user, which cannot read the 0700 temp dir.
    echo "user $(id -un)"
    echo "pid_file $work/mosquitto.pid"
    echo "persistence false"
    echo "log_dest file $work/mosquitto.log"
    echo "log_type all"
    echo "per_listener_settings true"
    sed -e "s#/etc/mosquitto/#$etc/#g" \
        -e "s/^listener 8883 0.0.0.0$/listener $cert_port 127.0.0.1/" \
        -e "s/^listener 8884 0.0.0.0$/listener $pw_port 127.0.0.1/" "$bc/devices.conf"
} >"$work/mosquitto.conf"
grep -q "^listener $cert_port 127.0.0.1" "$work/mosquitto.conf" &&
    grep -q "^listener $pw_port 127.0.0.1" "$work/mosquitto.conf" ||
    { echo "FAIL devices.conf no longer has the listeners this test rewrites"; exit 1; }
/usr/sbin/mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.out" 2>&1 &
broker_pid=$!
if ! poll_until 10 eval 'port_open $cert_port && port_open $pw_port'; then
    echo "FAIL broker did not start:"
    cat "$work/mosquitto.out" "$work/mosquitto.log" 2>/dev/null
    exit 1
fi

as_cert() { # NAME_PREFIX: client options for a certificate identity (crt and key paths)
    echo -h 127.0.0.1 -p "$cert_port" --cafile "$tls/ca.crt" --cert "$1.crt" --key "$1.key"
}
pub() { timeout 10 mosquitto_pub "$@" -q 1 -m x; }

# The gateway's identity watches everything devices send.
mosquitto_sub $(as_cert "$tls/edge-gateway") -v -t 'devices/#' >"$work/gateway-sees.txt" 2>&1 &
# sensor-2 asks for its own tasks and for sensor-1's.
mosquitto_sub $(as_cert "$tls/sensor-2") -v -t 'devices/sensor-1/tasks/#' \
    -t 'devices/sensor-2/tasks/#' >"$work/sensor-2-sees.txt" 2>&1 &

# A device cannot publish as another: each round publishes the forged message before the
# genuine one on the same broker, so once a genuine one arrived the forged one had its chance.
seen_own() {
    pub $(as_cert "$tls/sensor-1") -t devices/sensor-2/telemetry/forged
    pub $(as_cert "$tls/sensor-1") -t devices/sensor-1/telemetry/own
    grep -q "^devices/sensor-1/telemetry/own" "$work/gateway-sees.txt"
}
if poll_until 15 seen_own; then pass "device publishes under its own id"; else fail "own publish never arrived"; fi
if grep -q forged "$work/gateway-sees.txt"; then fail "sensor-1 published as sensor-2"; else pass "device cannot publish as another"; fi

# A device cannot read another's tasks (the gateway sends both, the foreign one first).
seen_task() {
    pub $(as_cert "$tls/edge-gateway") -t devices/sensor-1/tasks/t1
    pub $(as_cert "$tls/edge-gateway") -t devices/sensor-2/tasks/t2
    grep -q "^devices/sensor-2/tasks/t2" "$work/sensor-2-sees.txt"
}
if poll_until 15 seen_task; then pass "device reads its own tasks"; else fail "own task never arrived"; fi
if grep -q "sensor-1/tasks" "$work/sensor-2-sees.txt"; then fail "sensor-2 read sensor-1's task"; else pass "device cannot read another's tasks"; fi

# Passwords.
as_pw() { echo -h 127.0.0.1 -p "$pw_port" --cafile "$tls/ca.crt"; }
if pub $(as_pw) -u pw-1 -P "$password" -t devices/pw-1/telemetry/t >/dev/null 2>&1; then
    pass "password device connects"
else fail "password device refused"; fi
if pub $(as_pw) -u pw-1 -P "wrong-$password" -t devices/pw-1/telemetry/t >"$work/out" 2>&1; then
    fail "wrong password accepted"
else pass "wrong password refused ($(tr '\n' ' ' <"$work/out"))"; fi
if pub $(as_pw) -t devices/anon/telemetry/t >"$work/out" 2>&1; then fail "anonymous accepted on the password listener"; else pass "anonymous refused (password listener)"; fi
if pub -h 127.0.0.1 -p "$cert_port" --cafile "$tls/ca.crt" -t devices/x/telemetry/t >/dev/null 2>&1; then
    fail "no certificate accepted"
else pass "no certificate refused"; fi
if pub $(as_cert "$work/rogue/sensor-1") -t devices/sensor-1/telemetry/t >/dev/null 2>&1; then
    fail "certificate from an unknown CA accepted"
else pass "unknown certificate refused"; fi

# Revocation: the CRL and the password file are reread on reload (SIGHUP via the pid file).
"$bc/revoke-device" sensor-1 --conf-dir "$etc" --pid-file "$work/mosquitto.pid" >"$work/out" 2>&1 ||
    fail "revoke-device sensor-1: $(cat "$work/out")"
refused() { ! pub "$@" >/dev/null 2>&1; }
if poll_until 10 refused $(as_cert "$work/sensor-1") -t devices/sensor-1/telemetry/t; then
    pass "revoked certificate refused"
else fail "revoked certificate still accepted"; fi
if pub $(as_cert "$tls/sensor-2") -t devices/sensor-2/telemetry/t >/dev/null 2>&1; then
    pass "other devices unaffected by the revocation"
else fail "sensor-2 refused after revoking sensor-1"; fi
"$bc/revoke-device" pw-1 --conf-dir "$etc" --pid-file "$work/mosquitto.pid" >"$work/out" 2>&1 ||
    fail "revoke-device pw-1: $(cat "$work/out")"
if poll_until 10 refused $(as_pw) -u pw-1 -P "$password" -t devices/pw-1/telemetry/t; then
    pass "revoked password refused"
else fail "revoked password still accepted"; fi
# The id can be enrolled again with a fresh certificate.
"${enroll[@]}" sensor-1 --cert >/dev/null 2>&1
if poll_until 10 pub $(as_cert "$tls/sensor-1") -t devices/sensor-1/telemetry/t; then
    pass "re-enrolled device connects"
else fail "re-enrolled device refused"; fi

if ((failures)); then
    echo "--- broker log"
    tail -40 "$work/mosquitto.log"
    echo "$failures check(s) failed"
    exit 1
fi
echo "all checks passed"
