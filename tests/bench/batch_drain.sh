#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Drain of a backlog by the batch sinks (issue 8): the buffer is pre-filled with BD_ROWS rows of
# BD_SIZE-byte JSON readings (written with sqlite3 while the gateway is stopped, so the figure
# is the drain alone), then the gateway starts with one dir sink (or, with BD_SINK=s3, the S3
# stand-in from tests/s3) and the time until rows_waiting is 0 is measured from `status --json`.
# Prints rows/s, bytes written per raw payload byte, the gateway's peak RSS (VmHWM).
#
#   EGW_GATEWAY=build/gateway/edge-gateway BD_ROWS=1000000 tests/bench/batch_drain.sh
#
# Not yet wired into run.sh: compare its rows/s with run.sh's drain (d) of the bridge, measured on
# the same machine.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
gw=${EGW_GATEWAY:-$root/build/gateway/edge-gateway}
rows=${BD_ROWS:-1000000}
size=${BD_SIZE:-100}
kind=${BD_SINK:-dir}
tmp=$(mktemp -d /tmp/egw-bd.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

sink='{"type": "dir", "path": "'$tmp'/archive", "batch": {"max_rows": 10000, "max_delay_ms": 1000}}'
if [[ $kind == s3 ]]; then
    mkdir -p "$tmp/s3"
    node --openssl-legacy-provider "$root/tests/s3/server.js" "$tmp/s3" bench 0 >"$tmp/s3.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do [[ -f $tmp/s3/port ]] && break; sleep 0.1; done
    printf '[default]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n' >"$tmp/creds"
    sink='{"type": "s3", "endpoint": "http://127.0.0.1:'$(cat "$tmp/s3/port")'", "region": "us-east-1",
           "bucket": "bench", "path_style": true, "credentials_file": "'$tmp'/creds",
           "batch": {"max_rows": 10000, "max_delay_ms": 1000}}'
fi
cat >"$tmp/gw.json" <<JSON
{ "gateway_id": "bench", "data_dir": "$tmp/data", "log_level": "warn",
  "local": { "uri": "tcp://127.0.0.1:1", "subscribe": [ { "filter": "devices/#" } ] },
  "routes": [ { "from": "devices/#", "to": ["out"] } ],
  "sinks": { "out": $sink },
  "buffer": { "max_bytes": 4294967296 } }
JSON
# First start creates the buffer and the sink's bit; then stop it and fill the buffer.
"$gw" --config "$tmp/gw.json" 2>"$tmp/gw0.log" &
p=$!
for _ in $(seq 100); do [[ -S $tmp/data/control.sock ]] && break; sleep 0.1; done
kill -TERM $p; wait $p || true
python3 - "$tmp/data/buffer.db" "$rows" "$size" <<'PY'
import sqlite3, sys, time
db, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = sqlite3.connect(db)
bit = c.execute("SELECT bit FROM sinks WHERE name='out'").fetchone()[0]
now = int(time.time() * 1000)
def rows():
    for i in range(1, n + 1):
        p = ('{"device":"dev%d","seq":%d,"t":21.5,"pad":"' % (i % 100, i))
        p = (p + 'x' * max(0, size - len(p) - 2) + '"}').encode()
        yield (i, now, 1 << bit, len(p) + 24, "devices/dev%d/telemetry/bench" % (i % 100), p)
c.executemany("INSERT INTO messages VALUES (?,?,?,?,?,?)", rows())
c.execute("UPDATE meta SET value=? WHERE key='last_seq'", (n,))
c.commit()
PY
raw=$((rows * size))
start=$(date +%s.%N)
"$gw" --config "$tmp/gw.json" 2>"$tmp/gw.log" &
p=$!
pids+=($p)
peak=0
while true; do
    st=$("$gw" status --config "$tmp/gw.json" --json 2>/dev/null || true)
    hwm=$(awk '/VmHWM/ {print $2}' /proc/$p/status 2>/dev/null || echo 0)
    ((hwm > peak)) && peak=$hwm
    w=$(python3 -c 'import json,sys; s=json.loads(sys.argv[1]); o=s["sinks"]["out"]; print(o["rows_waiting"], o["bytes_uploaded"], o["batch_in_flight"] is None)' "$st" 2>/dev/null || echo "x 0 False")
    read -r waiting uploaded idle <<<"$w"
    [[ $waiting == 0 && $idle == True ]] && break
    sleep 0.2
done
end=$(date +%s.%N)
secs=$(python3 -c "print($end - $start)")
python3 - <<PY
secs, rows, raw, up, peak = $secs, $rows, $raw, $uploaded, $peak
print(f"batch drain ($kind): {rows} rows of {raw // rows} B in {secs:.2f} s = {rows / secs:,.0f} rows/s")
print(f"  bytes written per raw payload byte (gzip NDJSON): {up / raw:.3f}")
print(f"  peak RSS of the gateway: {peak / 1024:.1f} MiB")
PY
