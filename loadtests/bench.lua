-- wrk script of the benchmark harness (loadtests/bench.py). Env: SINGLE_FILE (a JSON array of single request
-- bodies, cycled), BATCH_FILE (one batch body, optional), BATCH_EVERY (every n-th request is a batch; 0 = none,
-- 1 = only batches). Prints one JSON line of results at the end.
local function read(path)
  local f = assert(io.open(path))
  local text = f:read("*a")
  f:close()
  return text
end

local singles, batch = {}, nil
local batch_every = tonumber(os.getenv("BATCH_EVERY") or "0")
local counter = 0

function init(args)
  local raw = read(os.getenv("SINGLE_FILE"))
  for line in raw:gmatch("[^\n]+") do table.insert(singles, line) end
  if os.getenv("BATCH_FILE") then batch = read(os.getenv("BATCH_FILE")) end
end

local headers = { ["Content-Type"] = "application/json" }

function request()
  counter = counter + 1
  if batch and batch_every > 0 and counter % batch_every == 0 then
    return wrk.format("POST", "/api/v1/skills/infer/batch", headers, batch)
  end
  return wrk.format("POST", "/api/v1/skills/infer", headers, singles[(counter % #singles) + 1])
end

function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "errors": %d, "non2xx": %d, "p50": %.3f, "p95": %.3f, "p99": %.3f}\n',
    summary.requests, summary.duration / 1e6, errors, summary.errors.status,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
