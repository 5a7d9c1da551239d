#!/bin/sh
# run.sh - runs every libFuzzer target of a fuzz build for a bounded time and prints its figures.
# Usage: tests/fuzz/run.sh BUILD_DIR SECONDS_PER_TARGET
# Each target starts from its seed corpus (tests/fuzz/corpus/<name>) and the recorded crash
# regressions (tests/data/fuzz/<name>); new inputs go to BUILD_DIR/corpus/<name>, findings to
# BUILD_DIR/crashes/. Exits 1 if any target found a crash, a leak or a timeout.
set -u

build=${1:?build folder}
seconds=${2:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$build/crashes"
failed=0
printf '%-12s %8s %10s %8s %8s %8s  %s\n' target seconds execs exec/s cov corpus result

for bin in "$build"/fuzz_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin" | sed 's/^fuzz_//')
    corpus="$build/corpus/$name"
    mkdir -p "$corpus"
    log="$build/fuzz_$name.log"
    seeds="$root/tests/fuzz/corpus/$name"
    regress="$root/tests/data/fuzz/$name"
    set -- "$corpus"
    [ -d "$seeds" ] && set -- "$@" "$seeds"
    [ -d "$regress" ] && set -- "$@" "$regress"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$build/crashes/$name-" "$@" >"$log" 2>&1
    status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | sed 's/cov: //')
    size=$(find "$corpus" -type f | wc -l)
    if [ "$status" -eq 0 ]; then
        result=ok
    else
        result="FOUND (exit $status): see $log and $build/crashes/"
        failed=1
    fi
    printf '%-12s %8s %10s %8s %8s %8s  %s\n' "$name" "$seconds" "${execs:-?}" "${rate:-?}" \
        "${cov:-?}" "$size" "$result"
done
if [ "$failed" -ne 0 ]; then
    echo "fuzz: findings above; add each crash input to tests/data/fuzz/<target>/ with the fix" >&2
fi
exit "$failed"
