#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs whatever Debian packages from .ci/packages.txt are missing. Quiet unless something
# fails (then apt's output is shown). Uses sudo only when not root.
#
#   bash .ci/install-deps.sh                      # the whole list (build, tests, CI)
#   bash .ci/install-deps.sh --without clang-format --without git   # leave some out
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
list="$here/packages.txt"

declare -A without=()
while (($#)); do
    case "$1" in
        --without)
            [[ $# -ge 2 ]] || { echo "install-deps: --without needs a package name" >&2; exit 2; }
            without[$2]=1
            shift 2
            ;;
        -h | --help)
            sed -n '3,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "install-deps: unknown argument: $1" >&2
            exit 2
            ;;
    esac
done

missing=()
while read -r pkg _; do
    [[ -z "$pkg" || "$pkg" == \#* ]] && continue
    [[ -n "${without[$pkg]:-}" ]] && continue
    # Node.js from another source (e.g. NodeSource's nodejs, which bundles npm and conflicts
    # with Debian's npm package) serves as well as Debian's: only the commands matter.
    case "$pkg" in
        nodejs) command -v node >/dev/null 2>&1 && continue ;;
        npm) command -v npm >/dev/null 2>&1 && continue ;;
    esac
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [[ "$status" == "installed" ]] || missing+=("$pkg")
done <"$list"

((${#missing[@]})) || exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps: missing packages (${missing[*]}) and no apt-get: this needs Debian 12" >&2
    exit 1
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "install-deps: missing packages: ${missing[*]}" >&2
        echo "install-deps: not root and no sudo; install them as root and run again" >&2
        exit 1
    fi
    sudo=(sudo)
fi

echo "install-deps: installing ${missing[*]}" >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >"$log" 2>&1 ||
    ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
    cat "$log" >&2
    echo "install-deps: apt-get failed (output above)" >&2
    exit 1
fi
