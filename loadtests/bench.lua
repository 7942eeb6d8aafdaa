-- wrk script of the benchmark harness (loadtests/bench.py). Env: SINGLE_FILE (lines "PATH<TAB>JSON body" of
-- single requests, cycled; an optional third field "Header-Name: value" adds a header), BATCH_FILE (one such line for a batch, optional), BATCH_EVERY (every n-th request
-- is the batch; 0 = none, 1 = only batches). Prints one JSON line of results at the end.
local function read(path)
  local f = assert(io.open(path))
  local text = f:read("*a")
  f:close()
  return text
end

local singles, batch = {}, nil

local function split(line)
  local tab = line:find("\t")
  local path, rest = line:sub(1, tab - 1), line:sub(tab + 1)
  local headers = { ["Content-Type"] = "application/json" }
  local second = rest:find("\t")
  if second then
    local name, value = rest:sub(second + 1):match("^([^:]+):%s*(.*)$")
    headers[name] = value
    rest = rest:sub(1, second - 1)
  end
  return { path = path, body = rest, headers = headers }
end
local batch_every = tonumber(os.getenv("BATCH_EVERY") or "0")
local counter = 0

function init(args)
  local raw = read(os.getenv("SINGLE_FILE"))
  for line in raw:gmatch("[^\n]+") do table.insert(singles, split(line)) end
  if os.getenv("BATCH_FILE") then batch = split(read(os.getenv("BATCH_FILE")):match("[^\n]+")) end
end

function request()
  counter = counter + 1
  if batch and batch_every > 0 and counter % batch_every == 0 then
    return wrk.format("POST", batch.path, batch.headers, batch.body)
  end
  local single = singles[(counter % #singles) + 1]
  return wrk.format("POST", single.path, single.headers, single.body)
end

function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "errors": %d, "non2xx": %d, "p50": %.3f, "p95": %.3f, "p99": %.3f}\n',
    summary.requests, summary.duration / 1e6, errors, summary.errors.status,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
