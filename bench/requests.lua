-- wrk script: the benchmark's four requests, chosen by the first argument after `--`:
--   get <count> <step> GET /items/{id}, id = n * step for an n drawn at random from 1 to count
--                     (step 05's bench account owns one item in `step`: ids step, 2 * step, ...)
--   list              GET /items?limit=20, the first page
--   create <tag>      POST /items, a new name every time (the tag keeps runs apart)
--   search <words>    GET /items?q=<one of the words>, drawn at random
-- BENCH_TOKEN in the environment becomes a bearer token (step 05), kept off the command line.
-- It ends with one line for bench.py to read: BENCH {json}.

local next_id = 1

-- Runs once per thread, before init: numbers the threads so their names never collide.
function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
end

function init(args)
  kind = args[1]
  words = {}
  for i = 2, #args do
    words[#words + 1] = args[i]
  end
  count = tonumber(args[2])
  stride = tonumber(args[3]) or 1
  sent = 0
  math.randomseed(os.time() + thread_id * 7919)
  local token = os.getenv("BENCH_TOKEN")
  if token and token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
  if kind == "create" then
    wrk.headers["Content-Type"] = "application/json"
  end
end

function request()
  if kind == "get" then
    return wrk.format("GET", "/items/" .. math.random(1, count) * stride)
  elseif kind == "list" then
    return wrk.format("GET", "/items?limit=20")
  elseif kind == "create" then
    sent = sent + 1
    local body = string.format(
      '{"name": "bench %s %d-%d", "description": "A lamp made for the benchmark.", '
        .. '"price": "12.50", "attributes": {"color": "red", "size": 3}}',
      words[1], thread_id, sent
    )
    return wrk.format("POST", "/items", nil, body)
  elseif kind == "search" then
    return wrk.format("GET", "/items?q=" .. words[math.random(1, #words)])
  end
  error("unknown request kind: " .. tostring(kind))
end

-- Latencies are in microseconds; errors.status counts answers of 400 and above.
function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
      .. '"socket_errors": %d, "timeouts": %d, "error_statuses": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    errors.connect + errors.read + errors.write, errors.timeout, errors.status
  ))
end
