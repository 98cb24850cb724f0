#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# edge-gateway benchmark against a plain Mosquitto bridge, on loopback, in one run.
# See tests/bench/README.md for what each figure means and the targets.
#
#   tests/bench/run.sh                 full sizes (about 10 minutes on 2 cores)
#   BENCH_QUICK=1 tests/bench/run.sh   smoke run with small sizes (about 1 minute)
#   BENCH_STARTUP=1 tests/bench/run.sh also (f): start-up with 10M rows waiting (long)
#
# Every size can be overridden, see the defaults below. Brokers and the gateway run on free
# ephemeral ports with data in a temp dir; everything started here is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BENCH_BUILD_DIR:-$ROOT/build-bench}

if [[ ${BENCH_QUICK:-0} == 1 ]]; then
    : "${BENCH_N:=20000}" "${BENCH_BACKLOG:=50000}" "${BENCH_LAT_SECONDS:=3}"
    : "${BENCH_STARTUP_ROWS:=200000}" "${BENCH_REPEAT:=1}"
fi
N=${BENCH_N:-200000}                    # (a)(b) messages in the throughput stream
BACKLOG=${BENCH_BACKLOG:-1000000}       # (c)(d) messages piled up during the outage
SIZE=${BENCH_SIZE:-100}                 # payload bytes
DEVICES=${BENCH_DEVICES:-100}           # device topics devices/devN/telemetry/bench
WINDOW=${BENCH_WINDOW:-1000}            # publisher's unacknowledged QoS 1 window
INFLIGHT=${BENCH_INFLIGHT:-256}         # bridge max_inflight_messages = sink inflight
MQTT_VERSION=${BENCH_MQTT_VERSION:-5}   # uplink protocol, bridge and gateway alike (3 or 5)
REPEAT=${BENCH_REPEAT:-3}              # (a)(b) stream runs per system; the median is reported
LAT_RATE=${BENCH_LAT_RATE:-5000}        # (e) fixed publish rate, msg/s
LAT_SECONDS=${BENCH_LAT_SECONDS:-10}    # (e) duration
STARTUP=${BENCH_STARTUP:-0}             # (f) on/off
STARTUP_ROWS=${BENCH_STARTUP_ROWS:-10000000}
PARTS=${BENCH_PARTS:-"stream drain paho startup"}  # subset of: stream drain paho startup
SYSTEMS_WANTED=${BENCH_SYSTEMS:-"bridge gateway group"}  # subset of: bridge gateway group
KEEP=${BENCH_KEEP:-0}                   # 1: keep the temp dir (logs, configs, buffer.db)
GATEWAY=${EGW_GATEWAY:-}                # prebuilt daemon; default: build it into $BUILD
COMMIT=each                             # buffer.commit of the gateway being measured

log() { printf '%(%H:%M:%S)T %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Build: the whole project with the bench enabled; if the daemon does not build (yet), the load
# generator alone, and the gateway columns stay empty.

LOADGEN=""
PAHO_BENCH=""
MOSQ_BENCH=""
build() {
    if [[ " $SYSTEMS_WANTED " != *" gateway "* ]]; then
        GATEWAY=""
    elif [[ -z $GATEWAY ]] && cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
            -DEGW_BUILD_BENCH=ON -DEGW_BUILD_TESTS=OFF >"$BUILD/bench-build.log" 2>&1 &&
        cmake --build "$BUILD" -j2 --target egw-loadgen edge-gateway >>"$BUILD/bench-build.log" 2>&1; then
        GATEWAY=$BUILD/gateway/edge-gateway
        LOADGEN=$BUILD/tests/bench/egw-loadgen
        # The Paho baselines are optional: without the Paho C headers the rows stay empty.
        cmake --build "$BUILD" -j2 --target egw-paho-bench >>"$BUILD/bench-build.log" 2>&1 &&
            PAHO_BENCH=$BUILD/tests/bench/egw-paho-bench
        # The event-loop comparison needs libmosquitto-dev; without it that row stays empty.
        cmake --build "$BUILD" -j2 --target egw-mosq-bench >>"$BUILD/bench-build.log" 2>&1 &&
            MOSQ_BENCH=$BUILD/tests/bench/egw-mosq-bench
        return
    fi
    [[ -n $GATEWAY || " $SYSTEMS_WANTED " != *" gateway "* ]] ||
        log "gateway build failed (see $BUILD/bench-build.log): bridge figures only"
    cmake -S "$ROOT/tests/bench" -B "$BUILD/loadgen-only" -DCMAKE_BUILD_TYPE=Release \
        >"$BUILD/bench-loadgen-build.log" 2>&1 &&
        cmake --build "$BUILD/loadgen-only" -j2 >>"$BUILD/bench-loadgen-build.log" 2>&1 ||
        die "load generator build failed, see $BUILD/bench-loadgen-build.log"
    LOADGEN=$BUILD/loadgen-only/egw-loadgen
}
mkdir -p "$BUILD"
build
[[ -z $GATEWAY || -x $GATEWAY ]] || die "gateway binary $GATEWAY not found"
command -v mosquitto >/dev/null || PATH=$PATH:/usr/sbin
command -v mosquitto >/dev/null || die "mosquitto not installed"
command -v python3 >/dev/null || die "python3 needed (ports, JSON)"

# ---------------------------------------------------------------------------------------------
# Processes, ports, files

TMP=$(mktemp -d "${TMPDIR:-/tmp}/egw-bench.XXXXXX")
PIDS=()
cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [[ $KEEP == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# Stops one process we started: SIGTERM (or $2), wait up to 10 s, then SIGKILL.
stop() {
    local pid=$1 sig=${2:-TERM}
    STOP_KILLED=0
    kill -"$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null && STOP_KILLED=1
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {  # port [timeout_s]
    local deadline=$((SECONDS + ${2:-10}))
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        ((SECONDS < deadline)) || die "nothing listens on port $1"
        sleep 0.02
    done
}

wait_log() {  # file pattern [timeout_s]
    local deadline=$((SECONDS + ${3:-30}))
    until grep -q -- "$2" "$1" 2>/dev/null; do
        ((SECONDS < deadline)) || die "timeout waiting for '$2' in $1"
        sleep 0.05
    done
}

kv() { sed -n "s/^$2=//p" "$1" | tail -1; }  # file key
now_ns() { date +%s%N; }
calc() { python3 -c "import sys; print($1)"; }
ratio() { [[ -n $1 && -n $2 && $2 != 0 ]] && calc "f'{$1/$2:.2f}'" || echo "-"; }

# VmHWM / VmRSS of a pid in MiB
mem_mib() { awk -v k="$2:" '$1==k {printf "%.1f", $2/1024}' "/proc/$1/status"; }

# CPU seconds (user+sys) used so far by a process
cpu_s() { awk '{printf "%.2f", ($14+$15)/100}' "/proc/$1/stat"; }

# Per-thread CPU seconds "tid comm secs" (for the gateway bottleneck report)
thread_cpu() {
    local t
    for t in /proc/"$1"/task/*; do
        awk -v c="$(cat "$t/comm")" '{printf "%s %s %.2f\n", $1, c, ($14+$15)/100}' "$t/stat"
    done 2>/dev/null
}
thread_cpu_diff() {  # before-file after-file seconds
    python3 - "$1" "$2" "$3" <<'EOF'
import sys
def load(p):
    d = {}
    for line in open(p):
        tid, *name, secs = line.split()
        d[tid] = (" ".join(name), float(secs))
    return d
a, b, secs = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
rows = sorted(((v[1] - a.get(t, (v[0], 0.0))[1], v[0], t) for t, v in b.items()), reverse=True)
print("  ".join(f"{name}[{tid}]={100*d/secs:.0f}%" for d, name, tid in rows if d > 0.01 * secs))
EOF
}

json_get() {  # json-string dotted.path
    python3 -c '
import json, sys
v = json.loads(sys.argv[1])
for k in sys.argv[2].split("."):
    v = v[k]
print(v)' "$1" "$2" 2>/dev/null
}

# ---------------------------------------------------------------------------------------------
# Brokers and the gateway

CLOUD_PORT=0 EDGE_PORT=0
CLOUD_PID="" EDGE_PID="" GW_PID=""
CONSUMER_ID=bench-consumer

# The cloud broker. Persistence (saved only at exit: autosave_interval 0) keeps the consumer's
# session across the outage in (c); it costs nothing while running. `user` keeps a broker started
# as root from switching to the mosquitto user, which could not write the temp dir.
start_cloud() {  # dir
    local d=$1
    mkdir -p "$d"
    if [[ ! -f $d/cloud.conf ]]; then
        cat >"$d/cloud.conf" <<EOF
listener $CLOUD_PORT 127.0.0.1
user $(id -un)
allow_anonymous true
max_queued_messages 0
max_inflight_messages $INFLIGHT
persistence true
persistence_location $d/
autosave_interval 0
EOF
    fi
    mosquitto -c "$d/cloud.conf" >>"$d/cloud.log" 2>&1 &
    CLOUD_PID=$!
    PIDS+=("$CLOUD_PID")
    wait_port "$CLOUD_PORT"
}

# The edge broker; with $2 = bridge it carries the Mosquitto bridge to the cloud. Unlimited
# queues (max_queued_messages 0) both for the bridge's backlog and for the gateway's persistent
# session, as the spec asks of a gateway's local broker.
start_edge() {  # dir plain|bridge
    local d=$1
    mkdir -p "$d"
    cat >"$d/edge.conf" <<EOF
listener $EDGE_PORT 127.0.0.1
user $(id -un)
allow_anonymous true
max_queued_messages 0
max_inflight_messages $INFLIGHT
EOF
    if [[ $2 == bridge ]]; then
        local proto=mqttv50
        [[ $MQTT_VERSION == 5 ]] || proto=mqttv311
        # restart_timeout: Mosquitto 2.0.11 waits about 7 s between attempts with a constant
        # "restart_timeout 1"; backoff from 1 s capped at 2 s retries after 1-3 s, close to the
        # gateway's backoff below (200 ms .. 1 s).
        cat >>"$d/edge.conf" <<EOF
connection cloud
address 127.0.0.1:$CLOUD_PORT
remote_clientid edge-bridge
bridge_protocol_version $proto
topic devices/# out 1
cleansession false
restart_timeout 1 2
notifications false
EOF
    fi
    mosquitto -c "$d/edge.conf" >>"$d/edge.log" 2>&1 &
    EDGE_PID=$!
    PIDS+=("$EDGE_PID")
    wait_port "$EDGE_PORT"
}

write_gateway_config() {  # dir
    local d=$1
    mkdir -p "$d/gw-data"
    cat >"$d/gateway.json" <<EOF
{
  "gateway_id": "gw-bench",
  "data_dir": "$d/gw-data",
  "log_level": "info",
  "status_interval_ms": 5000,
  "local": {
    "uri": "tcp://127.0.0.1:$EDGE_PORT",
    "client_id": "egw-bench",
    "clean_session": false,
    "subscribe": [ { "filter": "devices/+/telemetry/#", "qos": 1 } ]
  },
  "routes": [ { "from": "devices/+/telemetry/#", "to": ["cloud"] } ],
  "sinks": {
    "cloud": {
      "type": "mqtt",
      "uri": "tcp://127.0.0.1:$CLOUD_PORT",
      "client_id": "gw-bench-uplink",
      "topic": "gateways/{gateway_id}/{topic}",
      "qos": 1,
      "mqtt_version": $MQTT_VERSION,
      "inflight": $INFLIGHT,
      "batch": 512,
      "backoff": { "initial_ms": 200, "max_ms": 1000 }
    }
  },
  "buffer": { "max_bytes": 68719476736, "when_full": "drop-oldest", "synchronous": "normal", "commit": "$COMMIT" }
}
EOF
}

# Starts the gateway; its stderr lines are stamped with the wall clock (bash's $EPOCHREALTIME,
# no fork per line) so that start-up can be timed from the log.
start_gateway() {  # dir
    local d=$1
    GW_T0=$(now_ns)
    "$GATEWAY" --config "$d/gateway.json" \
        2> >(while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done \
            >>"$d/gateway.log") &
    GW_PID=$!
    PIDS+=("$GW_PID")
}

gw_status() { "$GATEWAY" status --config "$1/gateway.json" --json 2>/dev/null; }

# Ready and subscribed on the edge broker: "ready" comes before the local subscription, and
# messages published before it would have no subscriber (on a first start, no session yet).
wait_gateway_ready() {  # dir
    wait_log "$1/gateway.log" "info gateway: ready" 60
    local deadline=$((SECONDS + 30))
    until [[ $(json_get "$(gw_status "$1")" local.subscribed) == True ]]; do
        ((SECONDS < deadline)) || die "gateway not subscribed to the edge broker"
        sleep 0.05
    done
}

wait_sink_state() {  # dir state
    local deadline=$((SECONDS + 30)) s
    for (( ; ; )); do
        s=$(json_get "$(gw_status "$1")" sinks.cloud.state || true)
        [[ $s == "$2" ]] && return
        ((SECONDS < deadline)) || die "gateway sink not $2 (is: ${s:-?})"
        sleep 0.1
    done
}

wait_buffer_rows() {  # dir rows
    local deadline=$((SECONDS + 3600)) rows last=-1 still=0
    for (( ; ; )); do
        rows=$(json_get "$(gw_status "$1")" buffer.rows || echo 0)
        ((rows >= $2)) && return
        if ((rows == last)); then ((++still)); else still=0; fi
        ((still < 100)) || { gw_status "$1" >&2; die "buffer stuck at $rows rows (want $2)"; }
        last=$rows
        ((SECONDS < deadline)) || die "timeout: buffer has $rows of $2 rows"
        sleep 0.2
    done
}

consumer() {  # out-file filter count [extra args...]
    local out=$1 filter=$2 count=$3
    shift 3
    # A stalled uplink ends the run after 20 s without messages (60 s before the first one)
    # instead of hanging; the delivery check then reports what is missing.
    "$LOADGEN" consume --uri "tcp://127.0.0.1:$CLOUD_PORT" --filter "$filter" --qos 1 \
        --count "$count" --idle-ms 20000 --start-timeout-ms 60000 "$@" >"$out" 2>"$out.err" &
    CONSUMER_PID=$!
    PIDS+=("$CONSUMER_PID")
    wait_log "$out" "ready=1" 10
}

wait_consumer() {
    wait "$CONSUMER_PID" || true
    forget_pid "$CONSUMER_PID"
}

publish() {  # out-file count [extra args...]
    local out=$1 count=$2
    shift 2
    "$LOADGEN" publish --uri "tcp://127.0.0.1:$EDGE_PORT" --qos 1 --count "$count" \
        --size "$SIZE" --devices "$DEVICES" --window "$WINDOW" "$@" >"$out" 2>"$out.err" ||
        die "publisher failed: $(cat "$out.err")"
}

check_delivery() {  # label consumer-out expected
    local u d m
    u=$(kv "$2" unique) d=$(kv "$2" duplicates) m=$(kv "$2" missing)
    CHECKS+=("$1: received $(kv "$2" received), unique ${u:-0}/$3, duplicates ${d:-?}, reordered $(kv "$2" reordered)")
    [[ ${u:-0} == "$3" ]] || log "WARNING $1: only ${u:-0} of $3 messages arrived"
}

declare -A R    # results: R[figure.system]
declare -A RUN  # per stream run details, by system.rate
CHECKS=()
BRIDGE_FILTER='devices/#'
GW_FILTER='gateways/gw-bench/devices/#'

# (e): fixed rate, latency, REPEAT times; the run with the median p99 counts. One stall of a few
# ms in a 10 s run (a 2-core VM is noisy) moves a single run's p99 a lot.
latency_runs() {  # system dir consumer-filter
    local sys=$1 d=$2 filter=$3 lat_n=$((LAT_RATE * LAT_SECONDS)) p99s=() i
    for ((i = 1; i <= REPEAT; i++)); do
        log "$sys: latency at $LAT_RATE msg/s for ${LAT_SECONDS}s (run $i/$REPEAT)"
        consumer "$d/lat.$i.out" "$filter" "$lat_n"
        publish "$d/lat.$i.pub" "$lat_n" --rate "$LAT_RATE"
        wait_consumer
        check_delivery "latency $sys run $i" "$d/lat.$i.out" "$lat_n"
        p99s+=("$(kv "$d/lat.$i.out" lat_p99_us) $i")
        log "$sys: latency p50 $(kv "$d/lat.$i.out" lat_p50_us) p90 $(kv "$d/lat.$i.out" lat_p90_us)" \
            "p95 $(kv "$d/lat.$i.out" lat_p95_us) p99 $(kv "$d/lat.$i.out" lat_p99_us)" \
            "p99.9 $(kv "$d/lat.$i.out" lat_p999_us) max $(kv "$d/lat.$i.out" lat_max_us) us"
    done
    local mid
    mid=$(printf '%s\n' "${p99s[@]}" | sort -n | sed -n "$(((REPEAT + 1) / 2))p" | cut -d' ' -f2)
    R[p50.$sys]=$(kv "$d/lat.$mid.out" lat_p50_us)
    R[p99.$sys]=$(kv "$d/lat.$mid.out" lat_p99_us)
    R[max.$sys]=$(kv "$d/lat.$mid.out" lat_max_us)
    R[p99all.$sys]=$(printf '%s\n' "${p99s[@]}" | cut -d' ' -f1 | sort -n |
        awk '{printf "%s%.1f", (NR > 1 ? "/" : ""), $1 / 1000}')
}

# ---------------------------------------------------------------------------------------------
# (a)(b)(e): live stream and latency through an online uplink

stream_run() {  # system (bridge|gateway)
    local sys=$1 d=$TMP/stream-$1
    mkdir -p "$d"
    CLOUD_PORT=$(free_port) EDGE_PORT=$(free_port)
    start_cloud "$d/cloud"
    local filter=$BRIDGE_FILTER
    [[ $sys != bridge ]] && filter=$GW_FILTER
    if [[ $sys == bridge ]]; then
        start_edge "$d/edge" bridge
        wait_log "$d/cloud/cloud.log" "as edge-bridge" 15
    else
        start_edge "$d/edge" plain
        COMMIT=each
        [[ $sys == group ]] && COMMIT=group
        write_gateway_config "$d"
        start_gateway "$d"
        wait_gateway_ready "$d"
        wait_sink_state "$d" online
    fi
    # Warm-up (connections, allocations), not measured.
    consumer "$d/warm.out" "$filter" 2000
    publish "$d/warm.pub" 2000
    wait_consumer

    # (a)/(b): N messages at full speed, end to end, REPEAT times; the median run counts.
    local worker=$EDGE_PID
    [[ $sys != bridge ]] && worker=$GW_PID
    local rates=() i
    for ((i = 1; i <= REPEAT; i++)); do
        log "$sys: stream of $N messages (run $i/$REPEAT)"
        local cpu_e0 cpu_c0 cpu_w0 t0 t1 secs rate
        cpu_e0=$(cpu_s "$EDGE_PID") cpu_c0=$(cpu_s "$CLOUD_PID") cpu_w0=$(cpu_s "$worker")
        [[ $sys != bridge ]] && thread_cpu "$GW_PID" >"$d/threads.$i.0"
        consumer "$d/stream.$i.out" "$filter" "$N"
        publish "$d/stream.$i.pub" "$N"
        wait_consumer
        t0=$(kv "$d/stream.$i.pub" start_ns) t1=$(kv "$d/stream.$i.out" last_ns)
        secs=$(calc "($t1-$t0)/1e9")
        rate=$(calc "round($(kv "$d/stream.$i.out" unique)/$secs)")
        rates+=("$rate")
        check_delivery "stream $sys run $i" "$d/stream.$i.out" "$N"
        log "$sys: $rate msg/s end to end (publisher $(kv "$d/stream.$i.pub" rate) msg/s)"
        # Keep the details of the run that turns out to be the median.
        RUN[$sys.$rate]="$(kv "$d/stream.$i.pub" rate)|$(kv "$d/stream.$i.out" lat_p50_us)/$(kv "$d/stream.$i.out" lat_p99_us)"
        RUN[$sys.$rate]+="|$(calc "f'edge {$(cpu_s "$EDGE_PID")-$cpu_e0:.1f}s cloud {$(cpu_s "$CLOUD_PID")-$cpu_c0:.1f}s'")"
        if [[ $sys != bridge ]]; then
            RUN[$sys.$rate]+=$(calc "f' gateway {$(cpu_s "$GW_PID")-$cpu_w0:.1f}s'")
            thread_cpu "$GW_PID" >"$d/threads.$i.1"
            RUN[$sys.$rate]+="|$(thread_cpu_diff "$d/threads.$i.0" "$d/threads.$i.1" "$secs")"
        fi
        RUN[$sys.$rate]+="|$(calc "f'{$secs:.2f}'")"
    done
    local sorted median
    sorted=$(printf '%s\n' "${rates[@]}" | sort -n)
    median=$(sed -n "$(((REPEAT + 1) / 2))p" <<<"$sorted")
    R[stream.$sys]=$median
    R[streamall.$sys]=$(echo $sorted | tr ' ' '/')
    IFS='|' read -r "R[pubrate.$sys]" "R[streamlat.$sys]" "R[cpu.$sys]" "R[threads.$sys]" _ <<<"${RUN[$sys.$median]}"
    [[ $sys != bridge ]] || R[threads.$sys]=""

    latency_runs "$sys" "$d" "$filter"

    [[ -n $GW_PID ]] && { stop "$GW_PID"; GW_PID=""; }
    stop "$EDGE_PID"
    stop "$CLOUD_PID"
}

# ---------------------------------------------------------------------------------------------
# (c)(d): backlog piled up while the cloud is down, then drained

drain_run() {  # system
    local sys=$1 d=$TMP/drain-$1
    mkdir -p "$d"
    CLOUD_PORT=$(free_port) EDGE_PORT=$(free_port)
    local filter=$BRIDGE_FILTER
    [[ $sys == gateway ]] && filter=$GW_FILTER

    # The consumer's persistent session exists on the cloud before the outage, so nothing the
    # uplink sends after the cloud returns is lost, whoever connects first.
    start_cloud "$d/cloud"
    consumer "$d/session.out" "$filter" 0 --clean 0 --client-id "$CONSUMER_ID" --subscribe-only
    wait_consumer
    stop "$CLOUD_PID"

    if [[ $sys == bridge ]]; then
        start_edge "$d/edge" bridge
    else
        start_edge "$d/edge" plain
        write_gateway_config "$d"
        start_gateway "$d"
        wait_gateway_ready "$d"
    fi
    log "$sys: cloud down, publishing a backlog of $BACKLOG messages"
    publish "$d/backlog.pub" "$BACKLOG"
    R[fill.$sys]=$(kv "$d/backlog.pub" rate)
    if [[ $sys == gateway ]]; then
        local t_fill0
        t_fill0=$(kv "$d/backlog.pub" start_ns)
        wait_buffer_rows "$d" "$BACKLOG"
        R[fill.$sys]=$(calc "round($BACKLOG/(($(now_ns)-$t_fill0)/1e9))")
        local db=$d/gw-data/buffer.db bytes dbb walb
        dbb=$(stat -c %s "$db") walb=$(stat -c %s "$db-wal" 2>/dev/null || echo 0)
        bytes=$((dbb + walb))
        R[dbsize]=$(calc "f'{$bytes/1048576:.1f} ({$dbb/1048576:.0f}+{$walb/1048576:.0f})'")
        R[bytespermsg]=$(calc "f'{$bytes/$BACKLOG:.0f}'")
        R[rss_full.gateway]=$(mem_mib "$GW_PID" VmRSS)
    else
        R[rss_full.bridge]=$(mem_mib "$EDGE_PID" VmRSS)
    fi
    log "$sys: backlog stored (ingest ${R[fill.$sys]} msg/s), starting the cloud"

    local t0
    t0=$(now_ns)
    start_cloud "$d/cloud"
    consumer "$d/drain.out" "$filter" "$BACKLOG" --clean 0 --client-id "$CONSUMER_ID" \
        --report-ms 5000
    wait_consumer
    # Rate over the transfer itself (first to last message at the consumer); the time from the
    # cloud's start also holds the uplink's reconnect backoff.
    local t1 secs
    t1=$(kv "$d/drain.out" last_ns)
    secs=$(calc "($t1-$t0)/1e9")
    R[drain.$sys]=$(calc "round($(kv "$d/drain.out" unique)/max(1e-9,($t1-$(kv "$d/drain.out" first_ns))/1e9))")
    R[draintime.$sys]=$(calc "f'{$secs:.1f}'")
    R[drainfirst.$sys]=$(calc "f'{($(kv "$d/drain.out" first_ns)-$t0)/1e9:.1f}'")
    check_delivery "drain $sys" "$d/drain.out" "$BACKLOG"
    log "$sys: drained in ${R[draintime.$sys]} s (${R[drain.$sys]} msg/s)"

    if [[ $sys == gateway ]]; then
        R[hwm.gateway]=$(mem_mib "$GW_PID" VmHWM)
        R[hwm.edge_gw]=$(mem_mib "$EDGE_PID" VmHWM)
        stop "$GW_PID"
        GW_PID=""
    else
        R[hwm.bridge]=$(mem_mib "$EDGE_PID" VmHWM)
    fi
    stop "$EDGE_PID"
    stop "$CLOUD_PID"
}

# ---------------------------------------------------------------------------------------------
# (f): gateway start-up with STARTUP_ROWS rows waiting in its buffer

startup_run() {
    local d=$TMP/startup
    mkdir -p "$d"
    CLOUD_PORT=$(free_port) EDGE_PORT=$(free_port)  # nothing listens on CLOUD_PORT
    start_edge "$d/edge" plain
    write_gateway_config "$d"
    start_gateway "$d"
    wait_gateway_ready "$d"
    log "startup: publishing $STARTUP_ROWS messages into the gateway's buffer (cloud down)"
    publish "$d/fill.pub" "$STARTUP_ROWS" --report-ms 30000
    wait_buffer_rows "$d" "$STARTUP_ROWS"
    local t_stop
    t_stop=$(now_ns)
    stop "$GW_PID"
    R[stop.gateway]=$(calc "f'{($(now_ns)-$t_stop)/1e9:.2f}'")
    ((STOP_KILLED == 0)) || R[stop.gateway]+=" (SIGKILL after 10 s)"
    local db=$d/gw-data/buffer.db
    R[startup_db]=$(calc "f'{$(stat -c %s "$db")/1048576:.0f}'")
    sync
    : >"$d/gateway.log"
    start_gateway "$d"
    local t0=$GW_T0 t_status
    until gw_status "$d" >/dev/null; do sleep 0.01; done
    t_status=$(now_ns)
    wait_log "$d/gateway.log" "info gateway: ready" 600
    local ready
    ready=$(awk '/info gateway: ready/ {print $1; exit}' "$d/gateway.log")
    R[ready.gateway]=$(calc "f'{$ready-$t0/1e9:.3f}'")
    R[status.gateway]=$(calc "f'{($t_status-$t0)/1e9:.3f}'")
    R[startup_rows]=$(json_get "$(gw_status "$d")" buffer.rows)
    log "startup: ready after ${R[ready.gateway]} s, status after ${R[status.gateway]} s"
    stop "$GW_PID"
    GW_PID=""
    stop "$EDGE_PID"
}

# ---------------------------------------------------------------------------------------------
# (a')(c'): the Paho C client alone, no gateway code: the ceilings for anything built on it.
# The gateway's uplink and ingest are Paho, so these say how much of the gap to the bridge is
# the client library's and how much is the gateway's own (the buffer, routing, the loop).

# One relay (edge -> relay binary -> cloud, no buffer): REPEAT streams of N, then latency.
relay_run() {  # key label binary
    local key=$1 label=$2 d=$TMP/paho
    "$3" relay --uri "tcp://127.0.0.1:$CLOUD_PORT" --edge-uri "tcp://127.0.0.1:$EDGE_PORT" \
        --filter 'devices/#' --count $((2000 + (N + LAT_RATE * LAT_SECONDS) * REPEAT)) \
        --window "$INFLIGHT" --mqtt-version "$MQTT_VERSION" --idle-ms 30000 \
        >"$d/$key.out" 2>"$d/$key.err" &
    local relay=$!
    PIDS+=("$relay")
    wait_log "$d/$key.out" "ready=1" 15
    consumer "$d/$key.warm.out" "gateways/bench/devices/#" 2000
    publish "$d/$key.warm.pub" 2000
    wait_consumer
    local rates=() i
    for ((i = 1; i <= REPEAT; i++)); do
        log "$label: stream of $N messages (run $i/$REPEAT)"
        consumer "$d/$key.$i.out" "gateways/bench/devices/#" "$N"
        publish "$d/$key.$i.pub" "$N"
        wait_consumer
        rates+=("$(calc "round($(kv "$d/$key.$i.out" unique)/(($(kv "$d/$key.$i.out" last_ns)-$(kv "$d/$key.$i.pub" start_ns))/1e9))")")
        check_delivery "$label run $i" "$d/$key.$i.out" "$N"
    done
    R[$key]=$(printf '%s\n' "${rates[@]}" | sort -n | sed -n "$(((REPEAT + 1) / 2))p")
    log "$label: ${R[$key]} msg/s end to end"
    latency_runs "$key" "$d" "gateways/bench/devices/#"
    stop "$relay"
}

paho_run() {
    local d=$TMP/paho
    mkdir -p "$d"
    CLOUD_PORT=$(free_port) EDGE_PORT=$(free_port)
    start_cloud "$d/cloud"
    start_edge "$d/edge" plain

    # (a') relay: edge -> Paho subscriber -> forwarding thread -> Paho publisher -> cloud.
    relay_run relay "paho relay" "$PAHO_BENCH"
    # (a'') the same relay on libmosquitto from one poll() loop: an event-loop client, no threads.
    [[ -z $MOSQ_BENCH ]] || relay_run mosqrelay "libmosquitto relay" "$MOSQ_BENCH"

    # (c') publisher: N messages as fast as the in-flight window allows.
    log "paho publisher: $N messages"
    consumer "$d/pub.out" "gateways/bench/devices/#" "$N"
    "$PAHO_BENCH" publish --uri "tcp://127.0.0.1:$CLOUD_PORT" --count "$N" --size "$SIZE" \
        --devices "$DEVICES" --window "$INFLIGHT" --mqtt-version "$MQTT_VERSION" \
        >"$d/pub.pub" 2>"$d/pub.err" || die "paho publisher failed: $(cat "$d/pub.err")"
    wait_consumer
    R[pahopub]=$(calc "round($(kv "$d/pub.out" unique)/max(1e-9,($(kv "$d/pub.out" last_ns)-$(kv "$d/pub.out" first_ns))/1e9))")
    check_delivery "paho publisher" "$d/pub.out" "$N"
    log "paho publisher: ${R[pahopub]} msg/s"
    stop "$EDGE_PID"
    stop "$CLOUD_PID"
}

# ---------------------------------------------------------------------------------------------

SYSTEMS=()
[[ " $SYSTEMS_WANTED " == *" bridge "* ]] && SYSTEMS+=(bridge)
[[ -n $GATEWAY && " $SYSTEMS_WANTED " == *" gateway "* ]] && SYSTEMS+=(gateway)
# group: the gateway with buffer.commit "group" (stream and latency only; a drain reads the same)
[[ -n $GATEWAY && " $SYSTEMS_WANTED " == *" group "* ]] && SYSTEMS+=(group)
log "loadgen $LOADGEN; gateway ${GATEWAY:-(none)}; temp $TMP"
log "sizes: stream $N, backlog $BACKLOG, ${SIZE} B, QoS 1, $DEVICES devices, inflight $INFLIGHT, MQTT $MQTT_VERSION uplink"
if [[ " $PARTS " == *" stream "* ]]; then
    for s in "${SYSTEMS[@]}"; do stream_run "$s"; done
fi
if [[ " $PARTS " == *" drain "* ]]; then
    for s in "${SYSTEMS[@]}"; do [[ $s == group ]] || drain_run "$s"; done
fi
if [[ -n $PAHO_BENCH && " $PARTS " == *" paho "* ]]; then
    paho_run
fi
if [[ $STARTUP == 1 && -n $GATEWAY && " $PARTS " == *" startup "* ]]; then
    startup_run
fi

# ---------------------------------------------------------------------------------------------
# Report

v() { echo "${R[$1]:--}"; }
row() { printf '%-44s %14s %14s %8s   %s\n' "$@"; }
ms() { [[ -n ${R[$1]:-} ]] && calc "f'{${R[$1]}/1000:.1f}'" || echo "-"; }
echo
echo "edge-gateway benchmark: $(nproc) CPUs, $(uname -r), mosquitto $(mosquitto -h 2>&1 | sed -n 's/^mosquitto version //p')"
echo "sizes: stream $N, backlog $BACKLOG, payload $SIZE B, QoS 1, $DEVICES devices, uplink MQTT $MQTT_VERSION, inflight $INFLIGHT"
echo
row "figure" "mosquitto bridge" "edge-gateway" "ratio" "target"
row "(a/b) stream end to end, msg/s" "$(v stream.bridge)" "$(v stream.gateway)" \
    "$(ratio "${R[stream.gateway]:-}" "${R[stream.bridge]:-}")" "gateway/bridge >= 1.0"
row "      all runs, msg/s" "$(v streamall.bridge)" "$(v streamall.gateway)" "" ""
row "      publisher into edge, msg/s" "$(v pubrate.bridge)" "$(v pubrate.gateway)" "" ""
row "      latency p50/p99 under full load, us" "$(v streamlat.bridge)" "$(v streamlat.gateway)" "" ""
row "(c) drain of $BACKLOG backlog, msg/s" "$(v drain.bridge)" "$(v drain.gateway)" \
    "$(ratio "${R[drain.gateway]:-}" "${R[drain.bridge]:-}")" "gateway/bridge >= 1.0"
row "    cloud start to first message, s" "$(v drainfirst.bridge)" "$(v drainfirst.gateway)" "" "(reconnect backoff)"
row "    cloud start to last message, s" "$(v draintime.bridge)" "$(v draintime.gateway)" "" ""
row "    backlog ingest while offline, msg/s" "$(v fill.bridge)" "$(v fill.gateway)" "" ""
row "(d) peak RSS (VmHWM) after drain, MiB" "$(v hwm.bridge)" "$(v hwm.gateway)" \
    "$(ratio "${R[hwm.gateway]:-}" "${R[hwm.bridge]:-}")" "(edge broker vs gateway process)"
row "    RSS with full backlog, MiB" "$(v rss_full.bridge)" "$(v rss_full.gateway)" "" ""
row "    edge broker VmHWM in gateway setup, MiB" "" "$(v hwm.edge_gw)" "" ""
row "    buffer.db+wal at backlog, MiB" "" "$(v dbsize)" "" "(db + wal)"
row "    buffer bytes per message" "" "$(v bytespermsg)" "" "(payload $SIZE B + topic)"
row "(e) latency p50 at $LAT_RATE msg/s, ms (median run)" "$(ms p50.bridge)" "$(ms p50.gateway)" \
    "$(ratio "${R[p50.gateway]:-}" "${R[p50.bridge]:-}")" ""
row "    latency p99 at $LAT_RATE msg/s, ms" "$(ms p99.bridge)" "$(ms p99.gateway)" \
    "$(ratio "${R[p99.gateway]:-}" "${R[p99.bridge]:-}")" ""
row "    latency p99 of each run, ms" "$(v p99all.bridge)" "$(v p99all.gateway)" "" ""
row "    latency max at $LAT_RATE msg/s, ms" "$(ms max.bridge)" "$(ms max.gateway)" "" ""
if [[ -n ${R[stream.group]:-} ]]; then
    row "buffer.commit group (opt-in, see docs):" "" "" "" ""
    row "(b) stream end to end, msg/s" "$(v stream.bridge)" "$(v stream.group)" \
        "$(ratio "${R[stream.group]:-}" "${R[stream.bridge]:-}")" "gateway/bridge >= 1.0"
    row "    all runs, msg/s" "" "$(v streamall.group)" "" ""
    row "(e) latency p50/p99 at $LAT_RATE msg/s, ms" "$(ms p50.bridge)/$(ms p99.bridge)" \
        "$(ms p50.group)/$(ms p99.group)" "" ""
    row "    latency p99 of each run, ms" "" "$(v p99all.group)" "" ""
fi
if [[ -n ${R[relay]:-}${R[pahopub]:-} ]]; then
    row "Paho C client alone (no gateway code):" "" "" "" ""
    row "(a') Paho relay edge->cloud, no buffer" "$(v stream.bridge)" "$(v relay)" \
        "$(ratio "${R[relay]:-}" "${R[stream.bridge]:-}")" "ceiling of (b): relay/bridge"
    row "     gateway stream / Paho relay" "" "" "$(ratio "${R[stream.gateway]:-}" "${R[relay]:-}")" ""
    row "     relay latency p50/p99 at $LAT_RATE msg/s, ms" "" "$(ms p50.relay)/$(ms p99.relay)" "" "ceiling of (e)"
    row "     relay latency p99 of each run, ms" "" "$(v p99all.relay)" "" ""
    if [[ -n ${R[mosqrelay]:-} ]]; then
        row "(a'') libmosquitto relay, one poll() loop" "$(v stream.bridge)" "$(v mosqrelay)" \
            "$(ratio "${R[mosqrelay]:-}" "${R[stream.bridge]:-}")" "an event-loop client, not Paho"
        row "     its latency p50/p99 at $LAT_RATE msg/s, ms" "" "$(ms p50.mosqrelay)/$(ms p99.mosqrelay)" "" ""
        row "     its latency p99 of each run, ms" "" "$(v p99all.mosqrelay)" "" ""
    fi
    row "(c') Paho publisher alone, msg/s" "$(v drain.bridge)" "$(v pahopub)" \
        "$(ratio "${R[pahopub]:-}" "${R[drain.bridge]:-}")" "ceiling of (c): publisher/bridge"
    row "     gateway drain / Paho publisher" "" "" "$(ratio "${R[drain.gateway]:-}" "${R[pahopub]:-}")" ""
fi
if [[ $STARTUP == 1 ]]; then
    row "(f) start-up with $(v startup_rows) rows: to ready, s" "" "$(v ready.gateway)" "" ""
    row "    start-up: to status answering, s" "" "$(v status.gateway)" "" ""
    row "    graceful stop with that backlog, s" "" "$(v stop.gateway)" "" ""
    row "    buffer.db size, MiB" "" "$(v startup_db)" "" ""
fi
echo
echo "CPU during the median stream run: bridge setup: $(v cpu.bridge); gateway setup: $(v cpu.gateway); group commit: $(v cpu.group)"
[[ -n ${R[threads.gateway]:-} ]] && echo "gateway threads (CPU % of the stream's wall time): ${R[threads.gateway]}"
echo
echo "delivery checks:"
for c in "${CHECKS[@]}"; do echo "  $c"; done
