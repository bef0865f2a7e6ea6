-- One page of 50 messages, newest first.
function init(args)
  key = os.getenv("BENCH_KEY")
end

function request()
  return wrk.format("GET", "/api/chats/bench-0/messages?limit=50&order=desc",
    { ["Authorization"] = "Bearer " .. key })
end

function done(summary, latency, requests)
  io.write(string.format("non-2xx: %d\n", summary.errors.status))
end
