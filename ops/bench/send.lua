-- Durable sends with a unique Idempotency-Key per request, spread over 64 chats.
-- `thread_id` is a global set per thread by setup(), so keys differ across wrk threads; BENCH_RUN
-- and BENCH_ROUND make them differ across runs and rounds, which restart the counter.
local counter = 0
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function init(args)
  key = os.getenv("BENCH_KEY")
  run = (os.getenv("BENCH_RUN") or "run") .. "-" .. (os.getenv("BENCH_ROUND") or "0")
end

function request()
  counter = counter + 1
  local chat = "bench-" .. (counter % 64)
  local headers = {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = run .. "-" .. thread_id .. "-" .. counter,
  }
  return wrk.format("POST", "/api/chats/" .. chat .. "/send", headers, '{"text":"benchmark message"}')
end

function done(summary, latency, requests)
  io.write(string.format("non-2xx: %d\n", summary.errors.status))
end
