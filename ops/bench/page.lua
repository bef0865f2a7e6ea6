-- One page of 50 messages, newest first. The request is fixed, so it is built once (see
-- replay.lua).
wrk.path = "/api/chats/bench-0/messages?limit=50&order=desc"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")

function done(summary, latency, requests)
  io.write(string.format("non-2xx: %d\n", summary.errors.status))
end
