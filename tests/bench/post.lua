-- post.lua - wrk script for attn_bench: POSTs the body in $BENCH_BODY to the URL given to wrk
-- and prints one line the bench parses: requests/s, p50 and p99 latency (microseconds),
-- socket errors and answers with status >= 400. No per-response hook: it would slow wrk.
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("bench rps %.3f p50 %.1f p99 %.1f requests %d errors %d status %d\n",
        summary.requests / (summary.duration / 1e6), latency:percentile(50),
        latency:percentile(99), summary.requests, e.connect + e.read + e.write + e.timeout,
        e.status))
end
