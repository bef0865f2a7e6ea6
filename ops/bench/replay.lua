-- Idempotent replays: every request repeats one completed send (same key, same body).
-- The request is fixed, so it is built once (no request() function): the load generator then
-- spends as little per request as it does for /livez, which keeps the ratio fair.
wrk.method = "POST"
wrk.path = "/api/chats/bench-replay/send"
wrk.body = '{"text":"benchmark message"}'
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Idempotency-Key"] = (os.getenv("BENCH_RUN") or "run") .. "-replayed"

function done(summary, latency, requests)
  io.write(string.format("non-2xx: %d\n", summary.errors.status))
end
