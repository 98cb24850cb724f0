#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# edge-gateway in about a minute, on one machine: simulated sensors and a simulated camera
# publish to a local Mosquitto broker; the gateway processes them at the edge (plugins: deadband
# and window-stats turn readings into summaries, threshold-alert raises alerts, camera-motion turns
# JPEG frames into motion events and thumbnails) and forwards the results to a second Mosquitto
# that stands in for the cloud, and to a local dir sink. Meanwhile the cloud submits a task: the
# gateway sends it to the simulated device that fits it best, that device dies with it, and the
# task moves to another device, which runs it; its result reaches the cloud. The cloud goes away
# for a while and comes back, and nothing is lost.
#
#   bash gateway/demo/demo.sh
#
# Installs missing Debian packages (apt-get; sudo when not root), builds into build/, runs
# everything in a temporary directory on free loopback ports and removes it on exit.
# Environment: DEMO_SECONDS (length of the live and the outage phase, default 10),
# DEMO_DEVICES (number of sensors, default 3), EGW_BUILD_DIR (default build),
# DEMO_KEEP=1 (keep the temporary directory with all logs).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

phase_s=${DEMO_SECONDS:-10}
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
# Only what the build and the demo need: not the test, lint, fuzz and S3/HTTP test tools.
bash .ci/install-deps.sh --without clang-format --without libgtest-dev --without libgmock-dev \
    --without git --without nodejs --without npm --without rclone --without clang \
    --without libclang-rt-14-dev --without python3-prometheus-client

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
cam_bin="$root/$build_dir/tests/support/egw-camera-sim"
[[ -x "$cam_bin" ]] || die "no simulated camera at $cam_bin after the build (EGW_BUILD_CAMERA_SIM=OFF?)"
dev_bin="$root/$build_dir/tests/support/egw-device-sim"
[[ -x "$dev_bin" ]] || die "no simulated device at $dev_bin after the build (EGW_BUILD_CAMERA_SIM=OFF?)"
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

# task_state_text JSON: a task state as the cloud got it, in a line: "#seq state attempt N on
# DEVICE (reason) result" (the keys are sorted: result comes right before seq).
task_state_text() {
    local js=$1 text device reason result
    text="#$(json_field seq "$js") $(json_field state "$js")"
    device=$(json_field device "$js")
    [[ -z "$device" ]] || text+=" attempt $(json_field attempt "$js") on $device"
    reason=$(json_field reason "$js")
    [[ -z "$reason" ]] || text+=" ($reason)"
    if [[ "$js" == *'"result":'* ]]; then
        result=${js#*\"result\":}
        text+=" result ${result%,\"seq\":*}"
    fi
    printf '%s' "$text"
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
# The cloud sink's part of the status (keys are sorted: the plugin stage's rows_waiting and
# the dir sinks come before it).
cloud_part() {
    local js=$1
    js=${js#*\"sinks\"}
    printf '%s' "${js#*\"cloud\"}"
}
cloud_status() { cloud_part "$(status_json)"; }
status_line() {
    local all js
    all=$(status_json)
    if [[ -z "$all" ]]; then
        printf '%s   [status] gateway not answering%s\n' "$cyan" "$off"
        return
    fi
    js=$(cloud_part "$all")
    LC_ALL=C printf '%s   [status] cloud sink: %-8s rows waiting %-5s oldest %5.1fs   acked %s%s\n' \
        "$cyan" "$(json_field state "$js")" "$(json_field rows_waiting "$js")" \
        "$(json_field oldest_age_s "$js")" "$(json_field acked "$all")" "$off"
}
show_status() {
    note "\$ edge-gateway status --config $tmp/gateway.json"
    "$gw_bin" status --config "$tmp/gateway.json" 2>&1 | sed 's/^/     /' || true
}
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
# Two of them: one prints the JSON messages, the other the JPEG thumbnails' sizes (binary
# payloads do not belong on a terminal).
mkfifo "$tmp/cloud.fifo" "$tmp/media.fifo"
: >"$tmp/cloud.txt"
: >"$tmp/media.txt"
mosquitto_sub -h 127.0.0.1 -p "$cloud_port" -V mqttv5 -c -i demo-cloud-consumer -q 1 \
    -t 'gateways/#' -T 'gateways/+/devices/+/camera/+/thumbnail' \
    -T 'gateways/+/devices/+/camera/+/frame' \
    -F '%t|%P|%l|%p' >"$tmp/cloud.fifo" 2>"$tmp/consumer.log" &
pids+=("$!")
while IFS='|' read -r topic props len payload; do
    printf '%s\n' "$topic|$props|$len|$payload" >>"$tmp/cloud.txt"
    seq=''
    [[ "$props" =~ egw-seq:([0-9]+) ]] && seq="seq=${BASH_REMATCH[1]}"
    colour=$green
    [[ "$topic" == */alert ]] && colour=$red$bold
    # The retained status carries the whole status JSON: show the gateway's state (the last
    # "state" key: the keys are sorted) only.
    if [[ "$topic" == */status ]]; then
        payload=$(grep -oE '"state":"[a-z]*"' <<<"$payload" | tail -n 1 || true)
        payload="{$payload, ...}"
    elif [[ "$topic" == */tasks/*/state ]]; then
        colour=$cyan$bold
        payload=$(task_state_text "$payload")
    elif [[ "$topic" == */tasks/submit ]]; then
        colour=$cyan
        topic="$topic (cloud -> gateway)"
    elif [[ "$topic" =~ ^gateways/[^/]+/devices/[^/]+$ ]]; then
        # A registry record (retained): the device's presence, not its whole record.
        colour=$cyan
        payload="{\"id\":\"$(json_field id "$payload")\", \"state\":\"$(json_field state "$payload")\", ...}"
    fi
    printf '%s   [cloud] %-48s %-8s %s%s\n' "$colour" "${topic#gateways/demo-gw/}" "$seq" "$payload" "$off"
done <"$tmp/cloud.fifo" &
pids+=("$!")
mosquitto_sub -h 127.0.0.1 -p "$cloud_port" -V mqttv5 -c -i demo-cloud-media -q 1 \
    -t 'gateways/+/devices/+/camera/+/thumbnail' -t 'gateways/+/devices/+/camera/+/frame' \
    -F '%t|%P|%l' >"$tmp/media.fifo" 2>"$tmp/consumer-media.log" &
pids+=("$!")
while IFS='|' read -r topic props len; do
    printf '%s\n' "$topic|$props|$len" >>"$tmp/media.txt"
    role=''
    [[ "$props" =~ egw-role:([a-z]+) ]] && role="role=${BASH_REMATCH[1]}"
    printf '%s   [cloud] %-48s %-8s JPEG, %s bytes%s\n' "$green" "${topic#gateways/demo-gw/}" "$role" \
        "$len" "$off"
done <"$tmp/media.fifo" &
pids+=("$!")

# --- 3. gateway -----------------------------------------------------------------------------
say "Starting edge-gateway"
mkdir -p "$tmp/gw"
# Plugins: each sensor's readings go through deadband (only changes of 0.5 or more) and
# window-stats (one summary per 5 s window) to the cloud; threshold-alert raises and clears
# over-temperature alerts at high priority; every raw reading goes to the local dir sink
# "archive". The camera's frames go through camera-motion (in a child process: a decoder crash
# cannot take the gateway down); events and thumbnails go to the cloud, full frames only to
# the dir sink "frames" (the route's outputs), each a JPEG file of its own (object_key), as
# they would be objects of their own in an s3 bucket.
cat >"$tmp/gateway.json" <<EOF
{
  "gateway_id": "demo-gw",
  "data_dir": "$tmp/gw",
  "log_level": "info",
  "status_interval_ms": 5000,
  "local": {
    "uri": "tcp://127.0.0.1:$local_port",
    "client_id": "demo-gateway",
    "subscribe": [ { "filter": "devices/+/telemetry/#", "qos": 1 },
                   { "filter": "devices/+/camera/#", "qos": 1 } ]
  },
  "plugins": {
    "instances": {
      "quiet":      { "plugin": "deadband", "config": { "field": "temp", "delta": 0.5, "max_silence_s": 300 } },
      "temp-stats": { "plugin": "window-stats", "config": { "field": "temp", "window_s": 5 } },
      "overheat":   { "plugin": "threshold-alert",
                      "config": { "rules": [ { "field": "temp", "above": 80, "clear_below": 75 } ] } },
      "motion":     { "plugin": "camera-motion", "isolation": "process",
                      "config": { "scale_height": 120, "pixel_threshold": 30, "min_area_pct": 0.5,
                                  "min_frames": 2, "end_after_s": 3, "thumbnail_width": 240,
                                  "keep_frames": "start+peak", "heartbeat_s": 10 } }
    }
  },
  "routes": [
    { "from": "devices/+/telemetry/#", "via": ["quiet", "temp-stats"], "to": ["cloud"] },
    { "from": "devices/+/telemetry/#", "via": ["overheat"], "to": ["cloud"], "priority": "high" },
    { "from": "devices/+/telemetry/#", "to": ["archive"] },
    { "from": "devices/+/camera/#", "via": ["motion"], "to": ["cloud"],
      "outputs": [ { "filter": "devices/+/camera/+/frame", "to": ["frames"] } ] }
  ],
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
    },
    "frames": {
      "type": "dir",
      "path": "$tmp/frames",
      "object_key": "{gateway_id}/objects/{topic}/{seq}.jpg",
      "batch": { "max_rows": 100, "max_delay_ms": 1000 }
    }
  },
  "downlink": { "sink": "cloud" },
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
local_subscribed() {
    local js
    js=$(status_json)
    js=${js#*\"local\"}
    [[ "$(json_field subscribed "$js")" == true ]]
}
for ((i = 0; i < 50; i++)); do
    local_subscribed && break
    sleep 0.1
done

# --- 4. devices -----------------------------------------------------------------------------
# One loop per sensor: a QoS 1 reading every 200 ms. A reading counts as published once the
# local broker acknowledged it (mosquitto_pub exits 0 after the PUBACK). The temperature (in
# tenths of a degree) drifts around the sensor's set point with noise; sensor-1 sits by a
# machine that overheats now and then: every 50 readings (10 s) it climbs above 80 for about
# 3 s and cools down again.
device_loop() {
    local id=$1 n=$2 seq=0 ok=0 v base target us sign
    base=$((200 + 15 * n))
    v=$base
    while [[ ! -e "$tmp/stop-devices" ]]; do
        seq=$((seq + 1))
        target=$base
        ((n == 1 && seq % 50 >= 20 && seq % 50 < 35)) && target=880
        # Halfway to the target in a step when heating or cooling, else a slow pull back to
        # the set point; plus noise of +-0.3.
        if ((target > base || v > base + 30)); then
            v=$(((v + target) / 2 + RANDOM % 7 - 3))
        else
            v=$((v + (target - v) / 8 + RANDOM % 7 - 3))
        fi
        us=${EPOCHREALTIME//[!0-9]/}
        sign=''
        ((v < 0)) && sign='-'
        if mosquitto_pub -h 127.0.0.1 -p "$local_port" -i "$id" -q 1 \
            -t "devices/$id/telemetry/temp" \
            -m "{\"device\":\"$id\",\"seq\":$seq,\"temp\":$sign$((${v#-} / 10)).$((${v#-} % 10)),\"ts\":${us:0:-3}}" \
            2>>"$tmp/devices/$id.err"; then
            ok=$((ok + 1))
            echo "$ok" >"$tmp/devices/$id.count"
        fi
        sleep 0.2
    done
}
say "Starting $n_devices simulated sensors: devices/sensor-N/telemetry/temp every 200 ms, QoS 1"
note "sensor-1 overheats (above 80) for about 3 s every 10 s"
mkdir -p "$tmp/devices"
device_pids=()
for ((d = 1; d <= n_devices; d++)); do
    device_loop "sensor-$d" "$d" &
    device_pids+=("$!")
    pids+=("$!")
done
cam_s=$((3 * phase_s + 6))
say "Starting a simulated camera: devices/cam-1/camera/front, 640x480 JPEG at 2 fps for ${cam_s}s"
note "a textured scene with noise, small distractors and brightness steps; 2 objects cross it"
"$cam_bin" --broker "tcp://127.0.0.1:$local_port" --topic devices/cam-1/camera/front \
    --client-id cam-1 --width 640 --height 480 --fps 2 --duration-s "$cam_s" --episodes 2 \
    --seed 7 --truth "$tmp/camera-truth.json" >"$tmp/camera.out" 2>&1 &
cam_pid=$!
pids+=("$cam_pid")

# Three simulated devices (egw-device-sim, real MQTT clients of the local broker) that run tasks
# of type "detect" for 1 s each. The demo's task asks for 2 cores: edge-a (2 cores) fits it best,
# so the scheduler picks it first (docs/devices.md, the score), and edge-a dies right after
# accepting; the task moves to the best of the others, edge-b (4 cores; edge-c has 8).
task_id=demo-task-1
task_devices=(edge-a edge-b edge-c)
say "Starting 3 simulated devices (egw-device-sim): they register and run tasks of type \"detect\""
note "edge-a: 2 cores; dies right after accepting a task (--vanish-after-accept: no DISCONNECT, so the broker publishes its will)"
note "edge-b: 4 cores, edge-c: 8 cores; a task runs 1 s"
dev_cores=(2 4 8)
for ((d = 0; d < ${#task_devices[@]}; d++)); do
    dev_args=(--uri "tcp://127.0.0.1:$local_port" --id "${task_devices[d]}" --type detect
        --cores "${dev_cores[d]}" --delay-ms 1000)
    ((d == 0)) && dev_args+=(--vanish-after-accept)
    "$dev_bin" "${dev_args[@]}" >"$tmp/${task_devices[d]}.out" 2>&1 &
    pids+=("$!")
done

# run_task: submits a task the way the cloud does (on the cloud broker) once the gateway has the
# devices and its downlink subscription, follows it to its end, shows what the gateway's CLI says
# about it, and checks that it moved from edge-a to edge-b and succeeded there with its result at
# the cloud. Sets task_ok (yes or empty) and task_summary.
task_ok='' task_summary=''
task_states() { grep "^gateways/demo-gw/tasks/$task_id/state|" "$tmp/cloud.txt" 2>/dev/null | cut -d'|' -f4- || true; }
devices_online() { "$gw_bin" devices --config "$tmp/gateway.json" 2>/dev/null | grep -c '"state":"online"' || true; }
downlink_subscribed() {
    local js
    js=$(status_json)
    [[ "$js" == *'"downlink"'* ]] || return 1
    js=${js#*\"downlink\"}
    [[ "$(json_field subscribed "$js")" == true ]]
}
indent() { printf '%s\n' "$1" | while IFS= read -r line; do printf '     %s\n' "$line"; done; }
# The CLI's JSON, condensed to what the demo is about: a device a line; a task's attempts a line.
devices_text() {
    local line
    while IFS= read -r line; do
        [[ "$line" == *'"id":'* ]] || continue
        printf '%-8s %-8s cores %-3s in flight %s, boot %s\n' "$(json_field id "$line")" \
            "$(json_field state "$line")" "$(json_field cores "$line")" \
            "$(json_field in_flight "$line")" "$(json_field boot "$line")"
    done
}
# The attempts are the only objects of a task without nested braces that start with "boot".
attempts_text() {
    local a reason
    grep -oE '\{"boot":[^{}]*\}' | while IFS= read -r a; do
        reason=$(json_field reason "$a")
        printf 'attempt %s on %-8s %s%s\n' "$(json_field n "$a")" "$(json_field device "$a")" \
            "$(json_field state "$a")" "${reason:+ ($reason)}"
    done
}
run_task() {
    local i j submit states final line
    for ((i = 0; i < 100; i++)); do
        (($(devices_online) >= ${#task_devices[@]})) && downlink_subscribed && break
        sleep 0.1
    done
    (($(devices_online) >= ${#task_devices[@]})) || { task_summary="the devices did not register within 10 s"; return; }
    downlink_subscribed || { task_summary="the gateway's downlink is not subscribed after 10 s"; return; }
    note "the gateway has the 3 devices online (edge-gateway devices) and its downlink subscribed"
    submit='{"task":"'$task_id'","type":"detect","input":{"frame":"cam-1/front/0042.jpg"},"requirements":{"min_cores":2},"attempt_timeout_ms":10000,"max_attempts":3,"deadline_ms":30000}'
    note "the cloud submits $task_id on gateways/demo-gw/tasks/submit: $submit"
    # QoS 1 to the cloud broker; the gateway stores it a moment after its PUBACK, so a cloud that
    # sees no "queued" submits again (the task id makes a second submit a no-op).
    for ((i = 0; i < 3; i++)); do
        mosquitto_pub -h 127.0.0.1 -p "$cloud_port" -i demo-cloud-tasks -q 1 \
            -t gateways/demo-gw/tasks/submit -m "$submit" 2>>"$tmp/submit.err" || true
        for ((j = 0; j < 30; j++)); do
            [[ -n "$(task_states)" ]] && break 2
            sleep 0.1
        done
    done
    final=''
    for ((i = 0; i < 200; i++)); do
        final=$(task_states | grep '"final":true' | tail -n 1 || true)
        [[ -n "$final" ]] && break
        sleep 0.1
    done
    [[ -n "$final" ]] || { task_summary="$task_id did not end within 20 s at the cloud"; return; }
    local listed attempts devs
    listed=$("$gw_bin" tasks --config "$tmp/gateway.json" 2>&1 || true)
    attempts=$("$gw_bin" tasks --config "$tmp/gateway.json" --json "$task_id" 2>&1 | attempts_text || true)
    devs=$("$gw_bin" devices --config "$tmp/gateway.json" 2>&1 | devices_text || true)
    note "\$ edge-gateway tasks --config $tmp/gateway.json"
    indent "$listed"
    note "\$ edge-gateway tasks --config $tmp/gateway.json --json $task_id   (its attempts, condensed)"
    indent "$attempts"
    note "\$ edge-gateway devices --config $tmp/gateway.json   (condensed)"
    indent "$devs"
    # The check: the states the cloud saw, in order (state attempt@device), the result from
    # edge-b at the cloud, and the gateway's own view: two attempts, edge-a offline.
    states=$(task_states | while IFS= read -r line; do task_state_text "$line"; printf '\n'; done)
    task_summary=$(sed -E 's/^#[0-9]+ //; s/ attempt ([0-9]+) on / \1@/; s/ result .*//; s/ \(.*//' <<<"$states" | paste -sd' ')
    if [[ "$task_summary" =~ ^queued\ dispatched\ 1@edge-a\ accepted\ 1@edge-a\ .*dispatched\ 2@edge-b\ .*succeeded\ 2@edge-b$ ]] &&
        grep -qE '^#[0-9]+ succeeded attempt 2 on edge-b result \{"device":"edge-b"' <<<"$states" &&
        [[ "$final" == *'"state":"succeeded"'* ]] &&
        grep -qE '^attempt 1 on edge-a +failed' <<<"$attempts" &&
        grep -qE '^attempt 2 on edge-b +succeeded' <<<"$attempts" &&
        grep -qE '^edge-a +offline' <<<"$devs"; then
        task_ok=yes
    fi
}

# --- 5. phases ------------------------------------------------------------------------------
say "Phase 1: live flow for ${phase_s}s. Summaries every 5 s, alerts and motion events at once."
note "cloud topic = gateways/{gateway_id}/{topic}; seq = the egw-seq MQTT 5 user property"
note "meanwhile the cloud submits a task; #N = the task's own seq, state attempt N on DEVICE"
phase_end=$((SECONDS + phase_s))
run_task
if [[ -n "$task_ok" ]]; then
    printf '%s   %s: edge-a died with it, it moved to edge-b and succeeded; the result is at the cloud%s\n' \
        "$green$bold" "$task_id" "$off"
else
    printf '%s   %s: %s%s\n' "$red$bold" "$task_id" "${task_summary:-no state at the cloud}" "$off"
fi
# The rest of the phase: the live flow goes on.
while ((SECONDS < phase_end)); do sleep 0.5; done
show_status

say "Phase 2: the cloud goes away for ${phase_s}s. Messages wait in the gateway's SQLite buffer."
kill "$cloud_pid"
wait "$cloud_pid" 2>/dev/null || true
note "cloud stand-in stopped"
end=$((SECONDS + phase_s))
while ((SECONDS < end)); do
    sleep 2
    status_line
done
show_status

say "Phase 3: the cloud is back. Alerts drain first, then the backlog, then live flow resumes."
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
    if [[ "$(json_field state "$(cloud_status)")" == online ]]; then
        back_online=yes
        break
    fi
done
show_status
[[ -n "$back_online" ]] ||
    printf '%s   the cloud sink is not back online after %ss%s\n' "$red" "$((phase_s + 10))" "$off"

say "Stopping the sensors, letting the camera finish its scene and the last messages through"
touch "$tmp/stop-devices"
wait "${device_pids[@]}" 2>/dev/null || true
cam_rc=0
wait "$cam_pid" || cam_rc=$?
published=$(published_count)
motion_count() { grep -c "/camera/.*/motion|.*\"event\":\"$1\"" "$tmp/cloud.txt" 2>/dev/null || true; }
archive_files() { find "$tmp/$1" -name '*.ndjson.gz' -not -path '*/.tmp/*' 2>/dev/null | sort; }
archived_count() {
    local files
    files=$(archive_files archive)
    [[ -n "$files" ]] || { echo 0; return; }
    xargs zcat <<<"$files" | grep -oE '"device":"[^"]*","seq":[0-9]+' | sort -u | wc -l
}
# Every reading in the archive, and every motion episode ended (end_after_s after its last
# motion frame) and its end event at the cloud.
for ((i = 0; i < 100; i++)); do
    (($(archived_count) >= published)) && (($(motion_count end) >= $(motion_count start))) && break
    sleep 0.1
done
sleep 1

say "Stopping edge-gateway (SIGTERM: graceful, publishes its offline status)"
kill -TERM "$gw_pid"
gw_rc=0
wait "$gw_pid" || gw_rc=$?
wait "$log_pid" 2>/dev/null || true
note "edge-gateway exited with status $gw_rc"

# --- 6. summary -----------------------------------------------------------------------------
count() { grep -c "$1" "$2" 2>/dev/null || true; }
sum_len() { grep "$1" "$2" 2>/dev/null | awk -F'|' '{ s += $3 } END { print s + 0 }'; }
windows=$(count '/telemetry/.*/window|' "$tmp/cloud.txt")
raised=$(count '/alert|.*"state":"raised"' "$tmp/cloud.txt")
cleared=$(count '/alert|.*"state":"cleared"' "$tmp/cloud.txt")
to_cloud=$((windows + raised + cleared))
archived=$(archived_count)
lost=$((published - archived))
status_msgs=$(count '/status|' "$tmp/cloud.txt")
say "Summary"
printf '   sensors: %s readings published (acked by the local broker)\n' "$published"
printf '     became %s messages to the cloud: %s window summaries, %s alerts raised, %s cleared' \
    "$to_cloud" "$windows" "$raised" "$cleared"
((published > 0)) && LC_ALL=C printf ' (%.1f %% of the readings)' \
    "$(awk -v o="$to_cloud" -v i="$published" 'BEGIN { print 100 * o / i }')"
printf '\n'
printf '     every raw reading also went to the dir sink "archive": %s distinct readings in %s files\n' \
    "$archived" "$(archive_files archive | grep -c . || true)"
# The camera: what egw-camera-sim published (frames and payload bytes), and what came out.
read -r cam_frames cam_bytes cam_truth < <(sed -nE \
    's/^egw-camera-sim: ([0-9]+) frames, ([0-9]+) bytes, ([0-9]+) true episodes.*/\1 \2 \3/p' \
    "$tmp/camera.out")
cam_frames=${cam_frames:-0} cam_bytes=${cam_bytes:-0} cam_truth=${cam_truth:-0}
starts=$(motion_count start) ends=$(motion_count end) beats=$(motion_count heartbeat)
event_bytes=$(sum_len '/camera/.*/motion|' "$tmp/cloud.txt")
thumbs=$(count '/thumbnail|' "$tmp/media.txt")
thumb_bytes=$(sum_len '/thumbnail|' "$tmp/media.txt")
cloud_frames=$(count '/frame|' "$tmp/media.txt")
# Frames in the dir sink "frames": each JPEG a file of its own (object_key), which the batch
# files' NDJSON lines point to.
frame_rows=0 frame_bytes=0
while IFS= read -r f; do
    frame_rows=$((frame_rows + 1))
    frame_bytes=$((frame_bytes + $(stat -c %s "$f")))
done < <(find "$tmp/frames" -path '*/objects/*' -name '*.jpg' -type f -not -path '*/.tmp/*' 2>/dev/null)
out_bytes=$((event_bytes + thumb_bytes + frame_bytes))
printf '   camera: %s frames, %s bytes in (%s objects crossed the scene)\n' "$cam_frames" \
    "$cam_bytes" "$cam_truth"
printf '     to the cloud: %s motion events (%s start, %s end, %s heartbeat; %s bytes), %s thumbnails (%s bytes), %s full frames\n' \
    "$((starts + ends + beats))" "$starts" "$ends" "$beats" "$event_bytes" "$thumbs" "$thumb_bytes" \
    "$cloud_frames"
printf '     to the dir sink "frames": %s full frames as JPEG files (start and peak of each episode; %s bytes)\n' \
    "$frame_rows" "$frame_bytes"
((cam_bytes > 0)) && LC_ALL=C printf '     bytes out / bytes in: %s / %s = %.1f %%\n' "$out_bytes" "$cam_bytes" \
    "$(awk -v o="$out_bytes" -v i="$cam_bytes" 'BEGIN { print 100 * o / i }')"
((cam_bytes > 0)) && LC_ALL=C printf '     of which to the cloud (events and thumbnails): %.2f %%\n' \
    "$(awk -v o="$((event_bytes + thumb_bytes))" -v i="$cam_bytes" 'BEGIN { print 100 * o / i }')"
printf '   task %s from the cloud, its states at the cloud (state attempt@device):\n     %s\n' \
    "$task_id" "${task_summary:-none}"
[[ -n "$task_ok" ]] && printf '     edge-a died with attempt 1; attempt 2 succeeded on edge-b, result at the cloud\n'
printf '   status messages on gateways/demo-gw/status: %s\n' "$status_msgs"
if ((lost == 0)) && ((gw_rc == 0)) && ((cam_rc == 0)) && ((starts > 0)) && ((thumbs == starts)) &&
    [[ -n "$task_ok" ]]; then
    printf '%s   every reading, every motion event and the task result reached their destination, in spite of a dead device and the outage%s\n' \
        "$green$bold" "$off"
else
    printf '%s   %s readings missing in the archive, %s motion starts with %s thumbnails, task %s, gateway exit status %s, camera %s (logs: %s)%s\n' \
        "$red$bold" "$lost" "$starts" "$thumbs" "$([[ -n "$task_ok" ]] && echo ok || echo 'not as expected')" "$gw_rc" "$cam_rc" "$tmp" "$off"
    exit 1
fi
