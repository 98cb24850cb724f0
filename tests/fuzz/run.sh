#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the libFuzzer targets (build-fuzz/, clang, ASan+UBSan) and runs each for SECONDS.
#
#   bash tests/fuzz/run.sh SECONDS            # every target, one after the other
#   bash tests/fuzz/run.sh SECONDS ingest_fuzz  # some targets
#   bash tests/fuzz/run.sh 0                  # only replay the corpus and the regressions
#
# Each target starts from tests/fuzz/corpus/<target>/ (checked in) and grows a working corpus in
# build-fuzz/corpus/<target>/; the crash inputs in tests/fuzz/regressions/<target>/ are replayed
# first. A finding stops the run with libFuzzer's report and the input in build-fuzz/findings/.
# plugin_fuzz runs once per plugin: EGW_FUZZ_PLUGIN (with EGW_FUZZ_PLUGIN_CONFIG) if set, else
# every plugin .so the build made, with tests/fuzz/plugin-configs/<name>.json as its config.
# Environment: FUZZ_PARALLEL (targets run side by side, default: the number of cores), FUZZ_JOBS
# (libFuzzer workers per target, default 1), FUZZ_NICE (default 19).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here=$root/tests/fuzz
build=$root/build-fuzz
seconds=${1:?usage: run.sh SECONDS [TARGET...]}
shift
targets=("$@")
((${#targets[@]})) || targets=(config_fuzz topic_fuzz ingest_fuzz plugin_fuzz jpeg_fuzz)
nice_level=${FUZZ_NICE:-19}
jobs=${FUZZ_JOBS:-1}
parallel=${FUZZ_PARALLEL:-$(nproc)}

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DEGW_FUZZ=ON -DEGW_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" \
    "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG" "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG" >/dev/null
nice -n "$nice_level" cmake --build "$build" -j"$(nproc)" --target egw_fuzz_all >/dev/null

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
mkdir -p "$build/findings"
status=0

# run_target NAME CORPUS_NAME [extra libFuzzer args]
run_target() {
    local name=$1 corpus=$2
    shift 2
    local bin=$build/tests/fuzz/$name
    local work=$build/corpus/$corpus
    mkdir -p "$work"
    local dict=()
    [[ "$name" == config_fuzz || "$name" == plugin_fuzz ]] && dict=(-dict="$here/json.dict")
    if [[ -d "$here/regressions/$name" ]] && compgen -G "$here/regressions/$name/*" >/dev/null; then
        echo "== $name: regressions" >&2
        "$bin" "${dict[@]}" "$@" "$here/regressions/$name"/* >"$build/findings/$corpus.regressions.log" 2>&1 ||
            { tail -40 "$build/findings/$corpus.regressions.log"; return 1; }
    fi
    echo "== $name ($corpus): ${seconds}s" >&2
    local log=$build/findings/$corpus.log
    local rc=0 budget=(-max_total_time="$seconds") workers=()
    # -jobs makes libFuzzer fork its workers, which log to ./fuzz-N.log (shared by every target
    # run side by side): only with more than one, and then from the target's own directory.
    ((jobs > 1)) && workers=(-jobs="$jobs" -workers="$jobs")
    ((seconds > 0)) || budget=(-runs=0)  # 0: only run the corpus once (libFuzzer's 0 is forever)
    mkdir -p "$build/findings/$corpus.d"
    (cd "$build/findings/$corpus.d" && exec nice -n "$nice_level" "$bin" "${dict[@]}" "${budget[@]}" -timeout=10 \
        -rss_limit_mb=2048 -max_len=65536 "${workers[@]}" \
        -artifact_prefix="$build/findings/$corpus-" -print_final_stats=1 "$@" \
        "$work" "$here/corpus/$name") >"$log" 2>&1 || rc=$?
    if ((rc == 0)); then
        grep -E "stat::number_of_executed_units|stat::new_units_added|cov:" "$log" | tail -3 >&2 || true
    elif ((rc == 2)) && grep -q "^plugin_fuzz: " "$log"; then
        # The harness could not set the plugin up (its config refused): not a finding.
        echo "SKIP $corpus: $(grep '^plugin_fuzz: ' "$log" | head -1)" >&2
        echo "     give it a config in tests/fuzz/plugin-configs/<name>.json" >&2
    else
        echo "FINDING in $name ($corpus): see $log" >&2
        grep -A30 -E "ERROR: |runtime error|deadly signal" "$log" | head -40 >&2 || tail -40 "$log" >&2
        return 1
    fi
}

# Up to $parallel targets run at once (each its own process, corpus and log); a failed one
# makes the run fail once all have finished.
running=0
spawn() {
    if ((running >= parallel)); then
        wait -n || status=1
        running=$((running - 1))
    fi
    "$@" </dev/null &
    running=$((running + 1))
}

for t in "${targets[@]}"; do
    if [[ "$t" != plugin_fuzz ]]; then
        spawn run_target "$t" "$t"
        continue
    fi
    if [[ -n "${EGW_FUZZ_PLUGIN:-}" ]]; then
        spawn run_target plugin_fuzz "plugin_fuzz-$(basename "$EGW_FUZZ_PLUGIN" .so)"
        continue
    fi
    found=0
    while IFS= read -r so; do
        name=$(basename "$so" .so)
        cfg="$here/plugin-configs/$name.json"
        EGW_FUZZ_PLUGIN=$so EGW_FUZZ_PLUGIN_CONFIG=$(cat "$cfg" 2>/dev/null || echo '{}') \
            spawn run_target plugin_fuzz "plugin_fuzz-$name"
        found=1
    done < <(find "$build/plugins" "$build/tests/fuzz" -name '*.so' 2>/dev/null | sort)
    ((found)) || echo "== plugin_fuzz: no plugin .so built" >&2
done
while ((running > 0)); do
    wait -n || status=1
    running=$((running - 1))
done
exit $status
