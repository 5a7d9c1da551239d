#!/bin/sh
# run.sh - the load test: the real server under wrk with mixed valid, invalid and oversize requests.
# Usage: tests/load/run.sh SERVER_BIN SECONDS CONNECTIONS
# Passes when: no 5xx, every request answered (no timeouts, responses = requests), the server
# is alive and healthy afterwards, its resident memory after the run is within 10% of after
# the warm-up, and it stops with exit status 0 on SIGTERM. Prints the figures either way.
set -u

bin=${1:?server binary}
seconds=${2:-60}
conns=${3:-64}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$bin" --port 0 --max-body-bytes 1048576 --max-elements 100000 >"$work/server.out" 2>&1 &
pid=$!
port=""
for _ in $(seq 1 100); do
    port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$work/server.out")
    [ -n "$port" ] && break
    sleep 0.1
done
if [ -z "$port" ]; then
    echo "load: the server did not start:" >&2
    cat "$work/server.out" >&2
    kill "$pid" 2>/dev/null
    exit 1
fi
url="http://127.0.0.1:$port"
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status"; }

echo "load: server pid $pid on $url; warm-up 3 s, then $seconds s at $conns connections"
wrk -t2 -c"$conns" -d3s -s "$here/mixed.lua" "$url" >"$work/warm.log" 2>&1
rss_warm=$(rss)
wrk -t2 -c"$conns" -d"${seconds}s" --timeout 10s -s "$here/mixed.lua" "$url" >"$work/run.log" 2>&1
rss_after=$(rss)
grep '^load:' "$work/run.log"

fail=0
check() { # check CONDITION MESSAGE
    if eval "$1"; then echo "load: PASS $2"; else echo "load: FAIL $2"; fail=1; fi
}
s5=$(sed -n 's/^load: responses [0-9]*, requests [0-9]*, 5xx \([0-9]*\)$/\1/p' "$work/run.log")
resp=$(sed -n 's/^load: responses \([0-9]*\),.*/\1/p' "$work/run.log")
reqs=$(sed -n 's/^load: responses [0-9]*, requests \([0-9]*\),.*/\1/p' "$work/run.log")
tmo=$(sed -n 's/^load: errors .* timeout \([0-9]*\)$/\1/p' "$work/run.log")
check '[ "${s5:-x}" = 0 ]' "no 5xx (${s5:-?})"
check '[ -n "$resp" ] && [ "$resp" = "$reqs" ] && [ "${tmo:-x}" = 0 ]' \
    "every request answered (${resp:-?} responses, ${reqs:-?} requests, ${tmo:-?} timeouts)"
check 'kill -0 "$pid" 2>/dev/null && [ "$(curl -s -o /dev/null -w "%{http_code}" "$url/healthz")" = 200 ]' \
    "alive and healthy afterwards"
check '[ -n "$rss_warm" ] && [ -n "$rss_after" ] && [ "$rss_after" -le $((rss_warm + rss_warm / 10)) ]' \
    "resident memory ${rss_after:-?} kB after the run, ${rss_warm:-?} kB after the warm-up (<= +10%)"
kill -TERM "$pid"
wait "$pid"
status=$?
check '[ "$status" = 0 ]' "stopped on SIGTERM with exit status $status"
if [ "$fail" -ne 0 ]; then
    echo "load: server output:" >&2
    tail -20 "$work/server.out" >&2
fi
exit "$fail"
