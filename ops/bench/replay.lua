-- Idempotent replays: every request repeats one completed send (same key, same body).
function init(args)
  key = os.getenv("BENCH_KEY")
  run = os.getenv("BENCH_RUN") or "run"
end

function request()
  local headers = {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = run .. "-replayed",
  }
  return wrk.format("POST", "/api/chats/bench-replay/send", headers, '{"text":"benchmark message"}')
end

function done(summary, latency, requests)
  io.write(string.format("non-2xx: %d\n", summary.errors.status))
end
