-- mixed.lua - wrk script: valid, invalid and oversize requests in one stream, counted by status.
-- Used by tests/load/run.sh; the server runs with --max-body-bytes 1048576 --max-elements 100000.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local function rows(n, d, seed)
  local out = {}
  for i = 1, n do
    local r = {}
    for j = 1, d do
      r[j] = string.format("%.3f", math.sin(seed + i * 0.7 + j * 1.3))
    end
    out[i] = "[" .. table.concat(r, ",") .. "]"
  end
  return "[" .. table.concat(out, ",") .. "]"
end

local json = { ["Content-Type"] = "application/json" }

function init(args)
  counts = {}
  i = 0
  local q6 = rows(6, 8, 1)
  local q64 = rows(64, 64, 2)
  local big = rows(400, 2, 3)
  reqs = {
    -- valid
    { "POST", "/v1/attention", json, '{"query":' .. q6 .. ',"key":' .. q6 .. ',"value":' .. q6 .. '}' },
    { "POST", "/v1/attention", json, '{"query":' .. q64 .. ',"key":' .. q64 .. ',"value":' .. q64 .. ',"causal":true}' },
    { "POST", "/v1/multihead_attention", json, '{"query":' .. q6 .. ',"num_heads":2,"seed":1}' },
    { "POST", "/v1/transformer/encoder", json, '{"input":' .. q6 .. ',"nhead":2,"num_layers":2,"dim_feedforward":16,"seed":3}' },
    { "POST", "/v1/attention?format=text", json, '{"query":' .. q6 .. ',"key":' .. q6 .. ',"value":' .. q6 .. '}' },
    { "GET", "/healthz", nil, nil },
    -- invalid: 400, 404, 405, 415
    { "POST", "/v1/attention", json, '{"query": [[1, 2], [3]' },
    { "POST", "/v1/attention", json, '{"query":[[1,2]],"key":[[1,2]],"value":[[1]],"foo":1}' },
    { "POST", "/v1/attention", json, '{"query":[[1,2],[3]],"key":[[1,2]],"value":[[1]]}' },
    { "POST", "/v1/nothing", json, '{}' },
    { "GET", "/v1/attention", nil, nil },
    { "POST", "/v1/attention", { ["Content-Type"] = "text/plain" }, 'query=1' },
    -- over the limits: outputs (413 before computing), then the body (413 from Content-Length)
    { "POST", "/v1/attention", json, '{"query":' .. big .. ',"key":' .. big .. ',"value":' .. big .. '}' },
    { "POST", "/v1/attention", json, '{"query":[[' .. string.rep("0.5,", 300000) .. '0.5]]}' },
  }
end

function request()
  i = i + 1
  local r = reqs[(i % #reqs) + 1]
  return wrk.format(r[1], r[2], r[3], r[4])
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
  local total, n = {}, 0
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    for k, v in pairs(c) do
      total[k] = (total[k] or 0) + v
      n = n + v
    end
  end
  local keys = {}
  for k, _ in pairs(total) do table.insert(keys, k) end
  table.sort(keys)
  for _, k in ipairs(keys) do
    io.write(string.format("load: status %d: %d\n", k, total[k]))
  end
  local s5 = 0
  for k, v in pairs(total) do if k >= 500 then s5 = s5 + v end end
  io.write(string.format("load: responses %d, requests %d, 5xx %d\n", n, summary.requests, s5))
  io.write(string.format("load: errors connect %d read %d write %d status %d timeout %d\n",
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
    summary.errors.timeout))
  io.write(string.format("load: latency p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
  io.write(string.format("load: %.0f requests/s\n", summary.requests / (summary.duration / 1e6)))
end
