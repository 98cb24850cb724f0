#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Drain of a backlog by the batch sinks (issue 8, "9. Benchmarks"), against the Mosquitto
# bridge's in-memory drain of the same backlog, measured in the same run:
#
#   bridge: loadgen -> edge mosquitto ==bridge==> cloud mosquitto (down) ; then the cloud starts
#           and a persistent consumer session receives the backlog: msg/s first..last message
#   gateway: buffer.db pre-filled with the same number of 100-byte JSON readings (written with
#           sqlite3 while the gateway is stopped, so the figure is the drain alone), then the
#           gateway starts with one `dir` sink, or one `s3` sink against the S3 stand-in
#           (tests/s3, s3rver behind its signature-checking front): rows/s from the first
#           status answer until rows_waiting is 0 and no batch is in flight, as
#           egw-drain-watch sees them polling the control socket every 10 ms.
#
# Prints per system: rows/s and the ratio to the bridge [s3 >= 3.0x, dir >= 6x], bytes written
# per raw payload byte (gzip NDJSON), the gateway's peak RSS (VmHWM) [<= 64 MiB] and the loop's
# longest stall seen by the lag probe during the drain (status loop.lag_max_s) [< 5 ms], and
# the spread over BD_REPEAT runs of each.
#
#   cmake -S . -B build -DEGW_BUILD_BENCH=ON
#   cmake --build build -j2 --target edge-gateway egw-loadgen egw-drain-watch
#   BD_ROWS=1000000 BD_REPEAT=2 BD_SYSTEMS="bridge dir s3 idle" nice -n 0 tests/bench/batch_drain.sh
#
# The `idle` system is the stall figure's baseline: the same daemon with nothing to drain.
#
# EGW_GATEWAY / EGW_LOADGEN / EGW_DRAIN_WATCH override the binaries (default: build/, built with
# -DEGW_BUILD_BENCH=ON). The s3 part needs `npm install --prefix tests/s3` (as .ci/run does).
# Everything runs on 127.0.0.1 with free ports and a temp dir; all processes started here are
# stopped on exit. BD_KEEP=1 keeps the temp dir.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
gw=${EGW_GATEWAY:-$root/build/gateway/edge-gateway}
loadgen=${EGW_LOADGEN:-$root/build/tests/bench/egw-loadgen}
watch=${EGW_DRAIN_WATCH:-$root/build/tests/bench/egw-drain-watch}
rows=${BD_ROWS:-1000000}
size=${BD_SIZE:-100}
repeat=${BD_REPEAT:-1}
systems=${BD_SYSTEMS:-"bridge dir s3 idle"}
max_rows=${BD_BATCH_ROWS:-10000}
inflight=${BD_INFLIGHT:-256}
command -v mosquitto >/dev/null || PATH=$PATH:/usr/sbin
tmp=$(mktemp -d "${TMPDIR:-/tmp}/egw-bd.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ ${BD_KEEP:-0} == 1 ]]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%(%H:%M:%S)T %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    local deadline=$((SECONDS + 10))
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        ((SECONDS < deadline)) || die "nothing listens on port $1"
        sleep 0.02
    done
}
wait_file_line() {  # file pattern timeout_s
    local deadline=$((SECONDS + $3))
    until grep -q -- "$2" "$1" 2>/dev/null; do
        ((SECONDS < deadline)) || die "timeout waiting for '$2' in $1"
        sleep 0.05
    done
}
stop_pid() {
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
kv() { sed -n "s/^$2=//p" "$1" | tail -1; }

# --- the bridge: edge mosquitto with a bridge to a cloud mosquitto, both real processes ------
start_cloud() {  # dir port
    [[ -f $1/cloud.conf ]] || cat >"$1/cloud.conf" <<EOF
listener $2 127.0.0.1
user $(id -un)
allow_anonymous true
max_queued_messages 0
max_inflight_messages $inflight
persistence true
persistence_location $1/
autosave_interval 0
EOF
    mosquitto -c "$1/cloud.conf" >>"$1/cloud.log" 2>&1 &
    cloud_pid=$!
    pids+=("$cloud_pid")
    wait_port "$2"
}

bridge_run() {  # run number; sets rate
    local d=$tmp/bridge.$1 cp ep
    mkdir -p "$d"
    cp=$(free_port) ep=$(free_port)
    start_cloud "$d" "$cp"
    "$loadgen" consume --uri "tcp://127.0.0.1:$cp" --filter 'devices/#' --qos 1 --count 0 \
        --clean 0 --client-id bd-consumer --subscribe-only >"$d/session.out" 2>&1 ||
        die "consumer session: $(cat "$d/session.out")"
    stop_pid "$cloud_pid"
    cat >"$d/edge.conf" <<EOF
listener $ep 127.0.0.1
user $(id -un)
allow_anonymous true
max_queued_messages 0
max_inflight_messages $inflight
connection cloud
address 127.0.0.1:$cp
remote_clientid edge-bridge
bridge_protocol_version mqttv50
topic devices/# out 1
cleansession false
restart_timeout 1 2
notifications false
EOF
    mosquitto -c "$d/edge.conf" >"$d/edge.log" 2>&1 &
    local edge=$!
    pids+=("$edge")
    wait_port "$ep"
    log "bridge: cloud down, publishing $rows messages into the edge broker"
    "$loadgen" publish --uri "tcp://127.0.0.1:$ep" --qos 1 --count "$rows" --size "$size" \
        --devices 100 --window 1000 >"$d/pub.out" 2>&1 || die "publisher: $(cat "$d/pub.out")"
    start_cloud "$d" "$cp"
    "$loadgen" consume --uri "tcp://127.0.0.1:$cp" --filter 'devices/#' --qos 1 \
        --count "$rows" --clean 0 --client-id bd-consumer --idle-ms 20000 \
        --start-timeout-ms 60000 >"$d/drain.out" 2>"$d/drain.err" || true
    local unique first last
    unique=$(kv "$d/drain.out" unique) first=$(kv "$d/drain.out" first_ns) last=$(kv "$d/drain.out" last_ns)
    [[ $unique == "$rows" ]] || log "WARNING bridge: only $unique of $rows arrived"
    bridge_hwm=$(awk '/VmHWM/ {printf "%.1f", $2/1024}' /proc/$edge/status)
    rate=$(python3 -c "print(round($unique / max(1e-9, ($last - $first) / 1e9)))")
    stop_pid "$edge"
    stop_pid "$cloud_pid"
}

# --- the gateway with one batch sink --------------------------------------------------------
fill_buffer() {  # buffer.db
    python3 - "$1" "$rows" "$size" <<'PY'
import sqlite3, sys, time
db, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = sqlite3.connect(db)
bit = c.execute("SELECT bit FROM sinks WHERE name='out'").fetchone()[0]
now = int(time.time() * 1000)
def rows():
    for i in range(1, n + 1):
        p = '{"device":"dev%d","seq":%d,"t":21.5,"pad":"' % (i % 100, i)
        p = (p + 'x' * max(0, size - len(p) - 2) + '"}').encode()
        t = "devices/dev%d/telemetry/bench" % (i % 100)
        yield (i, now, 1 << bit, len(p) + len(t), t, p)
c.executemany("INSERT INTO messages (seq, ts, sinks, size, topic, payload) VALUES (?,?,?,?,?,?)",
              rows())
# The totals as the gateway's own snapshot would hold them, so start-up does not count rows.
total = c.execute("SELECT count(*), sum(size) FROM messages").fetchone()
for b in (-1, bit):
    c.execute("INSERT OR REPLACE INTO totals (bit, rows, bytes) VALUES (?,?,?)", (b, *total))
c.execute("UPDATE meta SET value=? WHERE key IN ('last_seq', 'snapshot_seq')", (n,))
c.commit()
PY
}

gateway_run() {  # kind run; sets rate ratio_bytes hwm lag
    local kind=$1 d=$tmp/$1.$2 s3pid="" st=""
    mkdir -p "$d"
    local sink='{"type": "dir", "path": "'$d'/archive", "batch": {"max_rows": '$max_rows', "max_delay_ms": 1000}}'
    if [[ $kind == s3 ]]; then
        [[ -d $root/tests/s3/node_modules/@20minutes/s3rver ]] ||
            die "the S3 stand-in is not installed: npm install --prefix tests/s3"
        mkdir -p "$d/s3"
        node --openssl-legacy-provider "$root/tests/s3/server.js" "$d/s3" bench 0 >"$d/s3.log" 2>&1 &
        s3pid=$!
        pids+=("$s3pid")
        wait_file_line "$d/s3/port" . 20
        printf '[default]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n' >"$d/creds"
        sink='{"type": "s3", "endpoint": "http://127.0.0.1:'$(cat "$d/s3/port")'", "region": "us-east-1",
               "bucket": "bench", "path_style": true, "credentials_file": "'$d'/creds",
               "batch": {"max_rows": '$max_rows', "max_delay_ms": 1000}}'
    fi
    cat >"$d/gw.json" <<JSON
{ "gateway_id": "bench", "data_dir": "$d/data", "log_level": "warn",
  "local": { "uri": "tcp://127.0.0.1:1", "subscribe": [ { "filter": "devices/#" } ] },
  "routes": [ { "from": "devices/#", "to": ["out"] } ],
  "sinks": { "out": $sink },
  "buffer": { "max_bytes": 4294967296 } }
JSON
    # The first start creates the buffer and the sink's bit; stop it and fill the buffer.
    "$gw" --config "$d/gw.json" 2>"$d/gw0.log" &
    local p=$!
    for _ in $(seq 200); do [[ -S $d/data/control.sock ]] && break; sleep 0.1; done
    stop_pid $p
    if [[ $kind == idle ]]; then
        # The baseline of the stall figure: the same daemon with nothing to drain, for as long
        # as a drain takes here (BD_IDLE_S), on the same (shared) machine.
        "$gw" --config "$d/gw.json" 2>"$d/gw.log" &
        p=$!
        pids+=("$p")
        sleep "${BD_IDLE_S:-20}"
        st=$("$gw" status --config "$d/gw.json" --json)
        lag=$(python3 -c 'import json,sys; print("%.2f" % (json.loads(sys.argv[1])["loop"]["lag_max_s"] * 1000))' "$st")
        stop_pid $p
        rm -rf "$d/data" "$d/archive"
        return
    fi
    fill_buffer "$d/data/buffer.db"
    sync
    "$gw" --config "$d/gw.json" 2>"$d/gw.log" &
    p=$!
    pids+=("$p")
    local perf_pid=""
    if [[ -n ${BD_PERF:-} ]]; then  # BD_PERF=DIR: perf record of the gateway into DIR/KIND.perf
        perf record -F 999 ${BD_PERF_ARGS:--g} -p "$p" -o "$BD_PERF/$kind.perf" 2>/dev/null &
        perf_pid=$!
    elif [[ -n ${BD_SCHED:-} ]]; then  # BD_SCHED=DIR: scheduler events of the gateway's threads
        perf sched record -o "$BD_SCHED/$kind.sched" -p "$p" 2>/dev/null &
        perf_pid=$!
    elif [[ -n ${BD_STRACE:-} ]]; then  # BD_STRACE=DIR: the loop thread's slow syscalls
        strace -f -T -tt -e trace=!pread64,pwrite64,read,write -p "$p" -o "$BD_STRACE/$kind.strace" 2>/dev/null &
        perf_pid=$!
    fi
    # egw-drain-watch polls the control socket every 10 ms from one process (a shell loop of
    # CLI calls took a quarter of a core from the drain it timed): start is the first status
    # answer, end the first one with no row waiting and no batch in flight.
    "$watch" --socket "$d/data/control.sock" --pid "$p" --sink out --interval-ms 10 \
        --status-out "$d/status.json" >"$d/watch.out" 2>"$d/watch.err" ||
        die "$kind: the drain did not finish: $(cat "$d/watch.err")"
    local start end peak
    start=$(kv "$d/watch.out" first_ns) end=$(kv "$d/watch.out" done_ns) peak=$(kv "$d/watch.out" vmhwm_kib)
    st=$(cat "$d/status.json")
    # CPU time of the gateway and, summed over its threads, the time they were runnable but
    # waited for a CPU (schedstat), in seconds: on a shared machine the second says how much of
    # the wall time was other people's.
    read -r cpu runq <<<"$(cat /proc/$p/task/*/schedstat | awk '{c+=$1; w+=$2} END {printf "%.2f %.2f", c/1e9, w/1e9}')"
    read -r rate ratio_bytes lag own <<<"$(python3 - "$st" "$start" "$end" "$rows" "$size" <<'PY'
import json, sys
s = json.loads(sys.argv[1]); start, end = int(sys.argv[2]) / 1e9, int(sys.argv[3]) / 1e9
rows, size = int(sys.argv[4]), int(sys.argv[5])
o = s["sinks"]["out"]
print(round(rows / (end - start)), f'{o["bytes_uploaded"] / (rows * size):.3f}',
      f'{s["loop"]["lag_max_s"] * 1000:.2f}', f'{o["loop_max_s"] * 1000:.2f}/{o["loop_cpu_max_s"] * 1000:.2f}')
PY
)"
    hwm=$(python3 -c "print(f'{$peak / 1024:.1f}')")
    [[ -z $perf_pid ]] || { kill -INT "$perf_pid"; wait "$perf_pid" || true; }
    stop_pid $p
    [[ -z $s3pid ]] || stop_pid "$s3pid"
    if [[ $kind == s3 ]]; then
        objects=$(find "$d/s3/store" -name '*.ndjson.gz._S3rver_object' | wc -l)
    else
        objects=$(find "$d/archive" -name '*.ndjson.gz' | wc -l)
    fi
    rm -rf "$d/data" "$d/archive" "$d/s3/store"
}

declare -A all
for ((i = 1; i <= repeat; i++)); do
    for sys in $systems; do
        if [[ $sys == idle ]]; then
            gateway_run idle "$i"
            all[idle]+=" $lag"
            log "idle run $i: lag max $lag ms"
        elif [[ $sys == bridge ]]; then
            bridge_run "$i"
            all[bridge]+=" $rate"
            all[bridge_hwm]+=" $bridge_hwm"
            log "bridge run $i: $rate msg/s (edge broker VmHWM $bridge_hwm MiB)"
        else
            gateway_run "$sys" "$i"
            all[$sys]+=" $rate"
            all[$sys.bytes]+=" $ratio_bytes"
            all[$sys.hwm]+=" $hwm"
            all[$sys.lag]+=" $lag"
            all[$sys.cpu]+=" $cpu"
            all[$sys.own]+=" $own"
            log "$sys run $i: $rate rows/s, $ratio_bytes B/B, VmHWM $hwm MiB, lag max $lag ms (the sink's own longest turn on the loop, wall/CPU: $own ms), $objects objects, gateway CPU $cpu s, runnable waiting for a CPU $runq s"
        fi
    done
done

python3 - "$rows" "$size" "$repeat" "${all[idle]:-}" \
    "${all[bridge]:-}" "${all[bridge_hwm]:-}" \
    "${all[dir]:-}" "${all[dir.bytes]:-}" "${all[dir.hwm]:-}" "${all[dir.lag]:-}" "${all[dir.own]:-}" "${all[dir.cpu]:-}" \
    "${all[s3]:-}" "${all[s3.bytes]:-}" "${all[s3.hwm]:-}" "${all[s3.lag]:-}" "${all[s3.own]:-}" "${all[s3.cpu]:-}" <<'PY'
import statistics, sys
idle = sys.argv.pop(4)
rows, size, repeat = sys.argv[1:4]
def nums(s): return [float(x) for x in s.split()]
def med(s): return statistics.median(nums(s)) if s.strip() else None
def spread(s):
    v = nums(s)
    return f"{min(v):,.0f}..{max(v):,.0f}" if v else "-"
bridge, bridge_hwm = sys.argv[4], sys.argv[5]
print(f"\nbatch drain of {int(rows):,} rows of {size} B JSON, {repeat} run(s) each, medians (spread)")
b = med(bridge)
if b:
    print(f"  mosquitto bridge (in memory)  {b:>10,.0f} msg/s   ({spread(bridge)}; edge broker VmHWM {med(bridge_hwm):.1f} MiB)")
for kind, target, args in (("dir", 6.0, sys.argv[6:12]), ("s3", 3.0, sys.argv[12:18])):
    r, by, hwm, lag, own, cpu = args
    if not r.strip():
        continue
    m = med(r)
    ratio = f"{m / b:.2f}x" if b else "-"
    ok = "met" if b and m / b >= target else "NOT met"
    print(f"  gateway -> {kind:<3}                {m:>10,.0f} rows/s  ({spread(r)})  ratio {ratio} [>= {target}x: {ok}]")
    print(f"      bytes written per raw payload byte (gzip NDJSON) {med(by):.3f}")
    hv = nums(hwm)
    print(f"      gateway peak RSS (VmHWM) {med(hwm):.1f} MiB (max {max(hv):.1f}) [<= 64 MiB: {'met' if max(hv) <= 64 else 'NOT met'}]")
    lv = nums(lag)
    print(f"      loop's longest stall (lag probe) {med(lag):.2f} ms (all runs: {' '.join(f'{x:.2f}' for x in lv)}) [< 5 ms: {'met' if max(lv) < 5 else 'NOT met'}]")
    print(f"      the sink's own longest turn on the loop, wall/CPU (status loop_max_s, loop_cpu_max_s): {' '.join(own.split())} ms")
    print(f"      gateway CPU per row: {' '.join(f'{x / int(rows) * 1e6:.1f}' for x in nums(cpu))} us")
if idle.strip():
    print(f"  the same daemon idle, loop's longest stall: {' '.join(f'{x:.2f}' for x in nums(idle))} ms (the machine's own noise)")
PY
