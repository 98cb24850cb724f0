#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The .deb in a fresh Debian 12 root: package the build tree (cpack -G DEB) twice, as 0.1.99 and
# as the real version, debootstrap a minbase bookworm root, install the old one with apt, check
# the layout, the user, the conffile, run --version and --check-config, buffer rows with the old
# package's gateway, upgrade, check the rows survived and the new binary reads them; then remove
# (data kept) and purge (data gone).
#
#   sudo bash tests/package/package_test.sh [BUILD_DIR]     (ctest: package.deb; skipped
#                                                            unless root with debootstrap)
# The bookworm root comes from a tarball cached in BUILD_DIR/pkgtest/ (made once with
# debootstrap --make-tarball from deb.debian.org, then unpacked offline for every run).
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=$(realpath "${1:-$src/build}")
skip() {
    echo "SKIP: $*"
    exit 77
}
((EUID == 0)) || skip "needs root (chroot, mounts)"
command -v debootstrap >/dev/null || skip "needs debootstrap"
command -v mosquitto_pub >/dev/null && [[ -x /usr/sbin/mosquitto ]] || skip "needs mosquitto"

cache=$build/pkgtest
rel=$cache/release
tarball=$cache/bookworm-minbase.tgz
mkdir -p "$cache"
work=$(mktemp -d /tmp/egw-pkg-XXXXXX)
root=$work/root
broker_pid=""
gw_pid=""
cleanup() {
    [[ -n "$gw_pid" ]] && kill "$gw_pid" 2>/dev/null || true
    [[ -n "$broker_pid" ]] && kill "$broker_pid" 2>/dev/null || true
    for m in "$root/dev" "$root/proc"; do mountpoint -q "$m" && umount -l "$m"; done
    if [[ -n "${EGW_KEEP_TMP:-}" ]]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

failures=0
check() { # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@" >/dev/null 2>&1; then echo "ok   $what"; else
        echo "FAIL $what"
        failures=$((failures + 1))
    fi
}
poll_until() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }

# --- Build both packages from this tree ---------------------------------------------------------
version=$(sed -n 's/^project(edge-gateway VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
old_version=0.1.99
# The tree the tests were built in is packaged as it is when it installs to /usr (tests/run.sh
# configures it so); any other tree gets a Release tree of its own under pkgtest/. cpack -R
# stamps the old version on the same files, which is all an upgrade test needs of it.
if grep -qx 'CMAKE_INSTALL_PREFIX:PATH=/usr' "$build/CMakeCache.txt" 2>/dev/null; then
    pkgtree=$build
    echo "== package $build as it is"
else
    pkgtree=$rel
    launcher=()
    command -v ccache >/dev/null && launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
    echo "== build $rel (Release, /usr)"
    cmake -S "$src" -B "$rel" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
        -DEGW_BUILD_TESTS=OFF "${launcher[@]}" >/dev/null
    cmake --build "$rel" -j"$(nproc)" >/dev/null
fi
for v in "$old_version" "$version"; do
    cpack --config "$pkgtree/CPackConfig.cmake" -G DEB -R "$v" -B "$work/cpack-$v" >/dev/null
    mv "$work/cpack-$v/edge-gateway_${v}_amd64.deb" "$work/"
done
new_deb=edge-gateway_${version}_amd64.deb
echo "== built $new_deb and edge-gateway_${old_version}_amd64.deb"
dpkg-deb -f "$work/$new_deb" Depends | sed 's/^/   Depends: /'

# --- A fresh Debian 12 root -----------------------------------------------------------------------
if [[ ! -s "$tarball" ]]; then
    echo "== debootstrap --make-tarball (once, from deb.debian.org)"
    debootstrap --variant=minbase \
        --include=libpaho-mqtt1.3,libpaho-mqttpp3-1,libuv1,libsqlite3-0,libspdlog1.10,libfmt9,libsystemd0,libssl3,libcurl4,liblua5.4-0,libturbojpeg0,systemd,sqlite3 \
        --make-tarball="$tarball.tmp" bookworm "$work/mk" http://deb.debian.org/debian >/dev/null
    mv "$tarball.tmp" "$tarball"
fi
echo "== debootstrap --unpack-tarball"
debootstrap --variant=minbase \
    --include=libpaho-mqtt1.3,libpaho-mqttpp3-1,libuv1,libsqlite3-0,libspdlog1.10,libfmt9,libsystemd0,libssl3,libcurl4,liblua5.4-0,libturbojpeg0,systemd,sqlite3 \
    --unpack-tarball="$tarball" bookworm "$root" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log"; exit 1; }
mount --bind /dev "$root/dev"
mount -t proc proc "$root/proc"
cp "$work"/*.deb "$root/tmp/"

apt_install() { # the dependencies are in the root already; fetch lists only if apt needs them
    in_root apt-get install -y -o Dpkg::Options::=--force-confold "$@" >"$work/apt.log" 2>&1 && return 0
    in_root apt-get update >/dev/null 2>&1 || true
    in_root apt-get install -y -o Dpkg::Options::=--force-confold "$@" >"$work/apt.log" 2>&1 ||
        { tail -30 "$work/apt.log"; return 1; }
}

# --- Install the old one ----------------------------------------------------------------------------
echo "== apt-get install ./edge-gateway_${old_version}_amd64.deb"
apt_install "/tmp/edge-gateway_${old_version}_amd64.deb"
check "installed $old_version" test "$(in_root dpkg-query -W -f='${Version}' edge-gateway)" = $old_version

echo "== layout"
for f in /usr/bin/edge-gateway /lib/systemd/system/edge-gateway.service \
    /usr/lib/sysusers.d/edge-gateway.conf /usr/lib/tmpfiles.d/edge-gateway.conf \
    /etc/edge-gateway/gateway.json /usr/include/edge-gateway/plugin.h \
    /usr/share/man/man8/edge-gateway.8.gz /usr/share/man/man5/gateway.json.5.gz \
    /usr/share/edge-gateway/config.schema.json /usr/share/edge-gateway/grafana-dashboard.json \
    /usr/share/edge-gateway/broker-config/devices.conf; do
    check "file $f" test -f "$root$f"
done
check "dir /usr/lib/edge-gateway/plugins" test -d "$root/usr/lib/edge-gateway/plugins"
check "enroll-device is executable" test -x "$root/usr/share/edge-gateway/broker-config/enroll-device"
check "user edge-gateway" in_root getent passwd edge-gateway
check "/var/lib/edge-gateway owned by edge-gateway" \
    test "$(in_root stat -c %U:%a /var/lib/edge-gateway)" = "edge-gateway:750"
check "gateway.json group edge-gateway, 0640" \
    test "$(in_root stat -c %G:%a /etc/edge-gateway/gateway.json)" = "edge-gateway:640"
check "gateway.json is a conffile" grep -q "/etc/edge-gateway/gateway.json" "$root/var/lib/dpkg/info/edge-gateway.conffiles"
check "service enabled" test -L "$root/etc/systemd/system/multi-user.target.wants/edge-gateway.service"
check "--version" sh -c "chroot '$root' edge-gateway --version | grep -qx 'edge-gateway $version'"
# The shipped example names TLS files nobody has made yet: the check says exactly that.
in_root edge-gateway --check-config /etc/edge-gateway/gateway.json >"$work/check.out" 2>&1 && rc=0 || rc=$?
check "--check-config on the shipped example: exit 2" test "$rc" = 2
check "--check-config names the missing TLS file" grep -q "sinks.cloud.tls.ca_file" "$work/check.out"
check "--check-config says nothing else" test "$(grep -vc 'tls\.' "$work/check.out")" = 0

# --- Rows in the buffer, upgrade, rows still there ---------------------------------------------------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$port" >"$work/m.conf"
/usr/sbin/mosquitto -c "$work/m.conf" >"$work/mosquitto.log" 2>&1 &
broker_pid=$!
poll_until 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null
# The operator's edit: the local broker, a cloud that is not reachable (so rows wait).
/usr/bin/python3 - "$root/etc/edge-gateway/gateway.json" "$port" <<'PY'
import json, sys
p, port = sys.argv[1], sys.argv[2]
c = json.load(open(p))
c["local"]["uri"] = "tcp://127.0.0.1:%s" % port
c["sinks"]["cloud"]["uri"] = "tcp://127.0.0.1:1"
del c["sinks"]["cloud"]["tls"]
json.dump(c, open(p, "w"), indent=2)
PY
check "--check-config on the edited config" in_root edge-gateway --check-config /etc/edge-gateway/gateway.json
run_gateway() {
    chroot "$root" /usr/sbin/runuser -u edge-gateway -- /usr/bin/edge-gateway \
        --config /etc/edge-gateway/gateway.json >"$1" 2>&1 &
    gw_pid=$!
}
status_field() { # a status --json field via python (jq is not in minbase)
    in_root edge-gateway status --config /etc/edge-gateway/gateway.json --json 2>/dev/null |
        /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); print($1)" 2>/dev/null
}
run_gateway "$work/gw-old.log"
poll_until 15 sh -c "test \"\$(chroot '$root' edge-gateway status --json 2>/dev/null | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)[\"local\"][\"subscribed\"])' 2>/dev/null)\" = True" ||
    { echo "FAIL old gateway did not subscribe"; cat "$work/gw-old.log"; exit 1; }
for i in $(seq 1 10); do mosquitto_pub -p "$port" -q 1 -t devices/d1/telemetry/t -m "{\"n\":$i}"; done
rows() { status_field 'd["buffer"]["rows"]'; }
poll_until 15 test "$(rows)" = 10 2>/dev/null || true
check "10 rows buffered by $old_version" test "$(rows)" = 10
kill -TERM "$gw_pid"
wait "$gw_pid" || true
gw_pid=""

echo "== upgrade to $new_deb"
apt_install "/tmp/$new_deb"
check "upgraded to $version" test "$(in_root dpkg-query -W -f='${Version}' edge-gateway)" = "$version"
check "edited config kept" grep -q "127.0.0.1:$port" "$root/etc/edge-gateway/gateway.json"
check "buffer kept" test -s "$root/var/lib/edge-gateway/buffer.db"
run_gateway "$work/gw-new.log"
check "new gateway reads the 10 rows" poll_until 15 grep -q "10 row(s)" "$work/gw-new.log"
kill -TERM "$gw_pid"
wait "$gw_pid" || true
gw_pid=""

# --- Remove keeps the data, purge deletes it ---------------------------------------------------------
in_root apt-get remove -y edge-gateway >"$work/apt.log" 2>&1
check "remove: binary gone" test ! -e "$root/usr/bin/edge-gateway"
check "remove: buffer kept" test -s "$root/var/lib/edge-gateway/buffer.db"
check "remove: config kept" test -f "$root/etc/edge-gateway/gateway.json"
in_root apt-get purge -y edge-gateway >"$work/apt.log" 2>&1
check "purge: /var/lib/edge-gateway gone" test ! -e "$root/var/lib/edge-gateway"
check "purge: /etc/edge-gateway gone" test ! -e "$root/etc/edge-gateway"

if ((failures)); then
    echo "--- old gateway log"; tail -20 "$work/gw-old.log" 2>/dev/null
    echo "--- new gateway log"; tail -20 "$work/gw-new.log" 2>/dev/null
    echo "$failures check(s) failed"
    exit 1
fi
echo "all checks passed"
