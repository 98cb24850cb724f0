#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the gateway with its tests and runs them with ctest.
#
#   bash tests/run.sh                 # build/ (RelWithDebInfo), all tests
#   bash tests/run.sh --sanitize      # build-asan/ with ASan+UBSan (EGW_SANITIZE=ON)
#   bash tests/run.sh -R buffer       # any other arguments go to ctest
#
# Installs missing Debian packages first (.ci/install-deps.sh). The integration tests start their
# own Mosquitto brokers on ephemeral loopback ports, so two tests can run at once (-j2).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

sanitize=0
ctest_args=()
for arg in "$@"; do
    case "$arg" in
        --sanitize) sanitize=1 ;;
        -h | --help)
            sed -n '3,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *) ctest_args+=("$arg") ;;
    esac
done

bash .ci/install-deps.sh

jobs=$(nproc)
# Line tables only (-g1): backtraces and sanitizer reports keep their file:line, and the build
# takes about 30 % less time than with full debug info. ASan builds at -O1, as its docs advise.
opt=-O2
((sanitize)) && opt=-O1
# Installs to /usr like the .deb, so that the package test can package this very tree.
cmake_args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DEGW_BUILD_TESTS=ON -DCMAKE_INSTALL_PREFIX=/usr
    "-DCMAKE_C_FLAGS_RELWITHDEBINFO=$opt -g1 -DNDEBUG" "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=$opt -g1 -DNDEBUG")
# A developer machine with ccache shares object files between worktrees; CI builds from
# scratch (CI=true), so that what it tests is exactly what the sources say.
if [[ -z "${CI:-}" ]] && command -v ccache >/dev/null 2>&1; then
    cmake_args+=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
if ((sanitize)); then
    build="build-asan"
    cmake_args+=(-DEGW_SANITIZE=ON)
    # The package test builds its own Release tree and installs it into a chroot: nothing of
    # it runs instrumented, so the plain run covers it.
    ctest_args+=(-LE package)
    # Stop at the first report and fail the test; leaks count as failures.
    export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:print_stacktrace=1
    export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
    if [[ -f tests/lsan.supp ]]; then
        export LSAN_OPTIONS="suppressions=$root/tests/lsan.supp:print_suppressions=0"
    fi
else
    build="build"
fi

echo "== configure $build/" >&2
cmake -S . -B "$build" "${cmake_args[@]}" >/dev/null
echo "== build $build/ (-j$jobs)" >&2
cmake --build "$build" -j"$jobs"
echo "== test $build/" >&2
# --timeout only applies to tests that set no TIMEOUT property themselves.
ctest --test-dir "$build" --output-on-failure -j2 --timeout 600 --no-tests=error "${ctest_args[@]}"
