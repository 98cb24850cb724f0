#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# edge-gateway in 40 seconds, on one machine: simulated sensors publish to a local Mosquitto
# broker, the gateway forwards their readings to a second Mosquitto that stands in for the
# cloud, the cloud goes away for a while and comes back, and nothing is lost.
#
#   bash gateway/demo/demo.sh
#
# Installs missing Debian packages (apt-get; sudo when not root), builds into build/, runs
# everything in a temporary directory on free loopback ports and removes it on exit.
# Environment: DEMO_SECONDS (length of the live and the outage phase, default 8),
# DEMO_DEVICES (number of sensors, default 3), EGW_BUILD_DIR (default build),
# DEMO_KEEP=1 (keep the temporary directory with all logs).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

phase_s=${DEMO_SECONDS:-8}
n_devices=${DEMO_DEVICES:-3}
build_dir=${EGW_BUILD_DIR:-build}
[[ "$phase_s" =~ ^[0-9]+$ && "$phase_s" -ge 2 ]] || { echo "DEMO_SECONDS must be >= 2" >&2; exit 2; }
[[ "$n_devices" =~ ^[0-9]+$ && "$n_devices" -ge 1 ]] || { echo "DEMO_DEVICES must be >= 1" >&2; exit 2; }

if [[ -t 1 ]]; then
    bold=$'\e[1m' dim=$'\e[2m' green=$'\e[32m' red=$'\e[31m' cyan=$'\e[36m' off=$'\e[0m'
else
    bold='' dim='' green='' red='' cyan='' off=''
fi
say() { printf '\n%s== %s%s\n' "$bold" "$*" "$off"; }
note() { printf '%s   %s%s\n' "$dim" "$*" "$off"; }
die() {
    printf '%sdemo: %s%s\n' "$red" "$*" "$off" >&2
    exit 1
}

# --- 1. dependencies and build --------------------------------------------------------------
say "Checking Debian packages (installs what is missing; a few minutes on a fresh system)"
bash .ci/install-deps.sh --without clang-format --without libgtest-dev --without libgmock-dev \
    --without git

tmp=$(mktemp -d "${TMPDIR:-/tmp}/egw-demo.XXXXXX")
pids=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    touch "$tmp/stop-devices" 2>/dev/null || true
    # Reverse start order: the gateway stops before the brokers it talks to.
    local i
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill "${pids[i]}" 2>/dev/null || true
    done
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        wait "${pids[i]}" 2>/dev/null || true
    done
    if [[ -n "${DEMO_KEEP:-}" || $rc -ne 0 ]]; then
        printf '%s   logs kept in %s%s\n' "$dim" "$tmp" "$off"
    else
        rm -rf "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "Building edge-gateway into $build_dir/ (a few minutes the first time)"
# A fresh build dir skips the tests (faster); one that tests/run.sh configured keeps them, so
# running the demo never leaves stale test binaries behind.
cmake_args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
[[ -f "$build_dir/CMakeCache.txt" ]] || cmake_args+=(-DEGW_BUILD_TESTS=OFF)
if ! { cmake -S . -B "$build_dir" "${cmake_args[@]}" &&
    cmake --build "$build_dir" -j"$(nproc)"; } >"$tmp/build.log" 2>&1; then
    tail -n 40 "$tmp/build.log" >&2
    die "build failed (full log: $tmp/build.log)"
fi
gw_bin="$root/$build_dir/gateway/edge-gateway"
[[ -x "$gw_bin" ]] || die "no binary at $gw_bin after the build"
note "$("$gw_bin" --version 2>&1 | head -n 1)"

# --- helpers --------------------------------------------------------------------------------
# Debian installs the broker in /usr/sbin, which is not on a normal user's PATH.
mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
[[ -x "$mosquitto_bin" ]] || die "mosquitto not found (apt-get install mosquitto)"
port_busy() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Mosquitto drops root privileges to the "mosquitto" user, which could not write into our 0700
# temporary directory; as root, keep it root (loopback only, and only for this demo).
run_as_line=''
[[ $(id -u) -ne 0 ]] || run_as_line='user root'

# start_broker NAME CONF_TEMPLATE: CONF_TEMPLATE is a file with @PORT@ where the port goes.
# Picks a free loopback port (retrying if another process takes it first), starts Mosquitto
# and waits until it accepts connections. Sets broker_pid and broker_port.
start_broker() {
    local name=$1 template=$2 i port pid
    mkdir -p "$tmp/$name"
    for ((i = 0; i < 8; i++)); do
        port=$((20000 + RANDOM % 40000))
        port_busy "$port" && continue
        sed "s/@PORT@/$port/g" "$template" >"$tmp/$name/mosquitto.conf"
        launch_broker "$name"
        pid=$!
        if wait_port "$port" "$pid"; then
            broker_pid=$pid broker_port=$port
            return 0
        fi
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    tail -n 5 "$tmp/$name/mosquitto.log" >&2
    die "$name broker did not start"
}
launch_broker() { "$mosquitto_bin" -c "$tmp/$1/mosquitto.conf" >>"$tmp/$1/mosquitto.log" 2>&1 & }

# wait_port PORT PID: true once PORT accepts connections, false if PID died or after 5 s.
wait_port() {
    local i
    for ((i = 0; i < 50; i++)); do
        port_busy "$1" && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

status_json() { "$gw_bin" status --config "$tmp/gateway.json" --json 2>/dev/null || true; }
# json_field KEY JSON: the first value of "KEY" in JSON (a number or a string, quotes removed).
json_field() {
    local v
    v=$(grep -oE "\"$1\"[[:space:]]*:[[:space:]]*(\"[^\"]*\"|[-0-9.eE+]+|true|false)" <<<"$2" |
        head -n 1 || true)
    v=${v#*:}
    v=${v#"${v%%[![:space:]]*}"}
    v=${v//\"/}
    printf '%s' "$v"
}
status_line() {
    local js
    js=$(status_json)
    if [[ -z "$js" ]]; then
        printf '%s   [status] gateway not answering%s\n' "$cyan" "$off"
        return
    fi
    LC_ALL=C printf '%s   [status] cloud sink: %-8s rows waiting %-5s oldest %5.1fs   acked %s%s\n' \
        "$cyan" "$(json_field state "$js")" "$(json_field rows_waiting "$js")" \
        "$(json_field oldest_age_s "$js")" "$(json_field acked "$js")" "$off"
}
show_status() {
    note "\$ edge-gateway status --config $tmp/gateway.json"
    "$gw_bin" status --config "$tmp/gateway.json" 2>&1 | sed 's/^/     /' || true
}
cloud_count() { grep -c '/telemetry/' "$tmp/cloud.txt" 2>/dev/null || true; }
published_count() {
    local f total=0 n
    for f in "$tmp"/devices/*.count; do
        [[ -e "$f" ]] || continue
        n=$(<"$f")
        total=$((total + n))
    done
    echo "$total"
}

# --- 2. brokers -----------------------------------------------------------------------------
say "Starting the local broker (broker-config/mosquitto.conf, port moved to a free one)"
# The shipped settings as they are; only the loopback listener's port and the places for the
# persistence file and the log change.
grep -q '^listener 1883 127\.0\.0\.1$' broker-config/mosquitto.conf ||
    die "broker-config/mosquitto.conf has no 'listener 1883 127.0.0.1' line to move"
{
    sed 's/^listener 1883 127\.0\.0\.1$/listener @PORT@ 127.0.0.1/' broker-config/mosquitto.conf
    printf '\n# demo.sh\npersistence_location %s/local/\nlog_dest stderr\n%s\n' "$tmp" "$run_as_line"
} >"$tmp/local.conf.in"
start_broker local "$tmp/local.conf.in"
local_pid=$broker_pid local_port=$broker_port
pids+=("$local_pid")
note "local broker: tcp://127.0.0.1:$local_port (pid $local_pid)"

say "Starting the cloud stand-in (a second Mosquitto)"
cat >"$tmp/cloud.conf.in" <<EOF
listener @PORT@ 127.0.0.1
allow_anonymous true
# Keeps the demo consumer's session across the simulated outage.
persistence true
persistence_location $tmp/cloud/
log_dest stderr
$run_as_line
EOF
start_broker cloud "$tmp/cloud.conf.in"
cloud_pid=$broker_pid cloud_port=$broker_port
note "cloud stand-in: tcp://127.0.0.1:$cloud_port (pid $cloud_pid)"

# A consumer in the cloud: persistent session, QoS 1, MQTT 5 so the egw-seq user property shows.
mkfifo "$tmp/cloud.fifo"
: >"$tmp/cloud.txt"
mosquitto_sub -h 127.0.0.1 -p "$cloud_port" -V mqttv5 -c -i demo-cloud-consumer -q 1 \
    -t 'gateways/#' -F '%t|%P|%p' >"$tmp/cloud.fifo" 2>"$tmp/consumer.log" &
pids+=("$!")
while IFS='|' read -r topic props payload; do
    printf '%s\n' "$topic|$props|$payload" >>"$tmp/cloud.txt"
    seq=''
    [[ "$props" =~ egw-seq:([0-9]+) ]] && seq="seq=${BASH_REMATCH[1]}"
    printf '%s   [cloud] %-48s %-8s %s%s\n' "$green" "$topic" "$seq" "$payload" "$off"
done <"$tmp/cloud.fifo" &
pids+=("$!")

# --- 3. gateway -----------------------------------------------------------------------------
say "Starting edge-gateway"
mkdir -p "$tmp/gw"
cat >"$tmp/gateway.json" <<EOF
{
  "gateway_id": "demo-gw",
  "data_dir": "$tmp/gw",
  "log_level": "info",
  "status_interval_ms": 5000,
  "local": {
    "uri": "tcp://127.0.0.1:$local_port",
    "client_id": "demo-gateway",
    "subscribe": [ { "filter": "devices/+/telemetry/#", "qos": 1 } ]
  },
  "routes": [ { "from": "devices/+/telemetry/#", "to": ["cloud", "archive"] } ],
  "sinks": {
    "cloud": {
      "type": "mqtt",
      "uri": "tcp://127.0.0.1:$cloud_port",
      "client_id": "demo-gw-uplink",
      "topic": "gateways/{gateway_id}/{topic}",
      "qos": 1,
      "mqtt_version": 5,
      "backoff": { "initial_ms": 200, "max_ms": 1000 }
    },
    "archive": {
      "type": "dir",
      "path": "$tmp/archive",
      "batch": { "max_rows": 1000, "max_delay_ms": 1000 }
    }
  },
  "buffer": { "max_bytes": 67108864, "when_full": "drop-oldest", "synchronous": "normal" }
}
EOF
check=$("$gw_bin" --check-config "$tmp/gateway.json" 2>&1) || die "config rejected: $check"
note "\$ edge-gateway --check-config $tmp/gateway.json"
note "${check##*$'\n'}"
"$gw_bin" --config "$tmp/gateway.json" 2>"$tmp/gateway.log" &
gw_pid=$!
pids+=("$gw_pid")
tail -n +1 -F --pid="$gw_pid" "$tmp/gateway.log" 2>/dev/null |
    sed -u "s/^/${dim}   [gateway] /; s/\$/${off}/" &
log_pid=$!
pids+=("$log_pid")
for ((i = 0; i < 100; i++)); do
    grep -q 'info gateway: ready' "$tmp/gateway.log" && break
    kill -0 "$gw_pid" 2>/dev/null || die "edge-gateway exited (log: $tmp/gateway.log)"
    sleep 0.1
done
grep -q 'info gateway: ready' "$tmp/gateway.log" || die "edge-gateway not ready after 10 s"
# Ready means the buffer and loop run; wait for the local subscription too, so the devices'
# first readings already have somewhere to go.
for ((i = 0; i < 50; i++)); do
    [[ "$(json_field subscribed "$(status_json)")" == true ]] && break
    sleep 0.1
done

# --- 4. devices -----------------------------------------------------------------------------
# One loop per sensor: a QoS 1 reading every 200 ms. A reading counts as published once the
# local broker acknowledged it (mosquitto_pub exits 0 after the PUBACK).
device_loop() {
    local id=$1 seq=0 ok=0 t us
    while [[ ! -e "$tmp/stop-devices" ]]; do
        seq=$((seq + 1))
        t=$((190 + RANDOM % 60))
        us=${EPOCHREALTIME//[!0-9]/}
        if mosquitto_pub -h 127.0.0.1 -p "$local_port" -i "$id" -q 1 \
            -t "devices/$id/telemetry/temp" \
            -m "{\"device\":\"$id\",\"seq\":$seq,\"temp_c\":$((t / 10)).$((t % 10)),\"ts\":${us:0:-3}}" \
            2>>"$tmp/devices/$id.err"; then
            ok=$((ok + 1))
            echo "$ok" >"$tmp/devices/$id.count"
        fi
        sleep 0.2
    done
}
say "Starting $n_devices simulated sensors: devices/sensor-N/telemetry/temp every 200 ms, QoS 1"
mkdir -p "$tmp/devices"
device_pids=()
for ((d = 1; d <= n_devices; d++)); do
    device_loop "sensor-$d" &
    device_pids+=("$!")
    pids+=("$!")
done

# --- 5. phases ------------------------------------------------------------------------------
say "Phase 1: live flow for ${phase_s}s. Readings reach the cloud within milliseconds."
note "cloud topic = gateways/{gateway_id}/{topic}; seq = the egw-seq MQTT 5 user property"
sleep "$phase_s"
show_status

say "Phase 2: the cloud goes away for ${phase_s}s. Readings wait in the gateway's SQLite buffer."
kill "$cloud_pid"
wait "$cloud_pid" 2>/dev/null || true
note "cloud stand-in stopped"
end=$((SECONDS + phase_s))
while ((SECONDS < end)); do
    sleep 2
    status_line
done
show_status

say "Phase 3: the cloud is back. The backlog drains oldest first, then live flow resumes."
port_busy "$cloud_port" && die "port $cloud_port was taken while the cloud was down"
launch_broker cloud
cloud_pid=$!
pids+=("$cloud_pid")
wait_port "$cloud_port" "$cloud_pid" || die "cloud stand-in did not restart"
note "cloud stand-in restarted on port $cloud_port"
drain_limit=$((SECONDS + phase_s + 10))
back_online=''
while ((SECONDS < drain_limit)); do
    sleep 1
    status_line
    # online = connected, caught up with the buffer, sending live messages as they come.
    if [[ "$(json_field state "$(status_json)")" == online ]]; then
        back_online=yes
        break
    fi
done
show_status
[[ -n "$back_online" ]] ||
    printf '%s   the cloud sink is not back online after %ss%s\n' "$red" "$((phase_s + 10))" "$off"

say "Stopping the sensors and letting the last readings through"
touch "$tmp/stop-devices"
wait "${device_pids[@]}" 2>/dev/null || true
published=$(published_count)
for ((i = 0; i < 100; i++)); do
    (($(cloud_count) >= published)) && break
    sleep 0.1
done
sleep 0.5

say "Stopping edge-gateway (SIGTERM: graceful, publishes its offline status)"
kill -TERM "$gw_pid"
gw_rc=0
wait "$gw_pid" || gw_rc=$?
wait "$log_pid" 2>/dev/null || true
note "edge-gateway exited with status $gw_rc"

# --- 6. summary -----------------------------------------------------------------------------
received=$(cloud_count)
# (device, seq) pairs from the payloads: duplicates are possible by design (at least once).
unique=$(grep '/telemetry/' "$tmp/cloud.txt" | grep -oE '"device":"[^"]*","seq":[0-9]+' |
    sort -u | wc -l)
status_msgs=$(grep -c '/status|' "$tmp/cloud.txt" || true)
lost=$((published - unique))
say "Summary"
printf '   sensors published (acked by the local broker): %s\n' "$published"
printf '   readings received by the cloud consumer:       %s\n' "$received"
printf '   distinct readings (device, seq):               %s  (duplicates: %s)\n' \
    "$unique" "$((received - unique))"
printf '   status messages on gateways/demo-gw/status:    %s\n' "$status_msgs"
# The dir sink: gzip NDJSON files, one per batch, named {gateway_id}/{yyyy}/{mm}/{dd}/{first}-{last}.
archive_files=$(find "$tmp/archive" -name '*.ndjson.gz' -not -path '*/.tmp/*' 2>/dev/null | sort)
archive_rows=0
[[ -n "$archive_files" ]] && archive_rows=$(xargs zcat <<<"$archive_files" | wc -l)
printf '   files written by the dir sink "archive":       %s  (%s readings; %s)\n' \
    "$(grep -c . <<<"$archive_files" || true)" "$archive_rows" "$tmp/archive"
first_file=$(head -n 1 <<<"$archive_files")
[[ -n "$first_file" ]] && printf '     first file: %s\n' "${first_file#"$tmp"/archive/}"
if ((lost == 0)) && ((gw_rc == 0)); then
    printf '%s   every reading reached the cloud, in spite of the outage%s\n' "$green$bold" "$off"
else
    printf '%s   %s readings missing at the cloud, gateway exit status %s (logs: %s)%s\n' \
        "$red$bold" "$lost" "$gw_rc" "$tmp" "$off"
    exit 1
fi
