#!/usr/bin/env bash
# Early send-path benchmark: /livez ceiling vs durable sends, same binary, same connections.
# Usage: ops/bench/run.sh [seconds]   (needs wrk: apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_RUN=${1:-10}
CONNECTIONS=64

cargo build --release --quiet
DATA=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The benchmark measures the durable send path, not the limiter: limits far above any rate here.
export SOFIIA_RATE_LIMIT__CHAT__PER_MINUTE=600000 SOFIIA_RATE_LIMIT__CHAT__BURST=1000000 \
  SOFIIA_RATE_LIMIT__OPERATOR__PER_MINUTE=600000 SOFIIA_RATE_LIMIT__OPERATOR__BURST=1000000
./target/release/sofiia-console serve --listen "127.0.0.1:$PORT" --data-dir "$DATA/data" \
  --config /dev/null >/dev/null 2>"$DATA/stderr" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 50); do [ -s "$DATA/data/admin.key" ] && curl -sf "http://127.0.0.1:$PORT/livez" >/dev/null && break; sleep 0.1; done

export BENCH_KEY=$(cat "$DATA/data/admin.key") BENCH_RUN=$(date +%s%N)
URL="http://127.0.0.1:$PORT"

rps() { awk '/Requests\/sec/ {print $2}'; }
livez=$(wrk -t2 -c$CONNECTIONS -d"${SECONDS_PER_RUN}s" "$URL/livez" | tee "$DATA/livez.txt" | rps)
sends=$(wrk -t2 -c$CONNECTIONS -d"${SECONDS_PER_RUN}s" --latency -s ops/bench/send.lua "$URL" | tee "$DATA/send.txt" | rps)

echo "connections: $CONNECTIONS, ${SECONDS_PER_RUN}s per run, $(nproc) cores"
printf '%-28s %12s %8s\n' figure req/s ratio
printf '%-28s %12.0f %8s\n' "/livez ceiling" "$livez" "1.00"
printf '%-28s %12.0f %8.2f\n' "durable sends (unique keys)" "$sends" "$(awk -v s="$sends" -v l="$livez" 'BEGIN{print s/l}')"
grep -E "non-2xx|50%|99%" "$DATA/send.txt" | sed 's/^/  send /'
