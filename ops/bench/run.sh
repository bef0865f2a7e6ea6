#!/usr/bin/env bash
# The benchmark (SPEC §14): builds the release binary, starts it on temporary data dirs, drives it
# over loopback and prints every figure beside the /livez ceiling measured in the same run.
#
#   ops/bench/run.sh [seconds-per-run]     (default 10; needs wrk: apt-get install wrk)
#
# Throughputs are measured in rounds: /livez, then the workload, each half a run long, three
# times; a workload's ratio is the median of its rounds' ratios to the ceiling measured just before
# it. Capacity on a shared machine drifts by tens of percent within a minute, and a ceiling
# measured once, minutes earlier, says little about the workload measured now.
#
# Bounded: about 12 load runs of the given length plus ~90 s of seeding; loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_RUN=${1:-10}
CONNECTIONS=64
command -v wrk >/dev/null || { echo "the benchmark needs wrk (apt-get install wrk)" >&2; exit 2; }

cargo build --release --quiet -p sofiia-console -p sofiia-bench
BIN=$PWD/target/release/sofiia-console
BENCH=$PWD/target/release/sofiia-bench
WORK=$(mktemp -d)
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

# The benchmark measures the durable send path, not the limiter: limits far above any rate here.
export SOFIIA_RATE_LIMIT__CHAT__PER_MINUTE=60000 SOFIIA_RATE_LIMIT__CHAT__BURST=1000000 \
  SOFIIA_RATE_LIMIT__OPERATOR__PER_MINUTE=60000 SOFIIA_RATE_LIMIT__OPERATOR__BURST=1000000

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start DATA_DIR: starts the service, waits for /livez; sets SERVER, URL, KEY.
start() {
  local port; port=$(free_port)
  URL="http://127.0.0.1:$port"
  "$BIN" serve --listen "127.0.0.1:$port" --data-dir "$1" --config /dev/null >/dev/null 2>"$WORK/stderr" &
  SERVER=$!
  until curl -sf "$URL/livez" >/dev/null 2>&1; do
    kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/stderr" >&2; exit 1; }
    sleep 0.01
  done
  KEY=$(cat "$1/admin.key")
}
stop() { kill -TERM "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""; }
rss_mib() { awk -v f="$2" '$1==f":" {printf "%.1f", $2/1024}' "/proc/$1/status"; }
wrk_rps() { awk '/Requests\/sec/ {print $2}' "$1"; }
json() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
ROUNDS=3
ROUND_SECONDS=$(( SECONDS_PER_RUN / 2 > 2 ? SECONDS_PER_RUN / 2 : 2 ))
median() { sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

# rounds NAME WRK-ARGS...: ROUNDS rounds of /livez then the workload on the running service.
# Leaves every rate in $WORK/livez.rates and $WORK/NAME.rates, each round's ratio in
# $WORK/NAME.ratios, and wrk's reports in $WORK/NAME-*.txt.
rounds() {
  local name=$1 round ceiling rate
  shift
  for round in $(seq $ROUNDS); do
    wrk -t2 -c$CONNECTIONS -d"${ROUND_SECONDS}s" "$URL/livez" > "$WORK/livez-$name-$round.txt"
    BENCH_ROUND=$round wrk -t2 -c$CONNECTIONS -d"${ROUND_SECONDS}s" "$@" > "$WORK/$name-$round.txt"
    ceiling=$(wrk_rps "$WORK/livez-$name-$round.txt")
    rate=$(wrk_rps "$WORK/$name-$round.txt")
    echo "$ceiling" >> "$WORK/livez.rates"
    echo "$rate" >> "$WORK/$name.rates"
    awk -v a="$rate" -v b="$ceiling" 'BEGIN{printf "%.4f\n", a/b}' >> "$WORK/$name.ratios"
  done
}

echo "== disk: one fsync per request"
FSYNC=$(json "$("$BENCH" fsync-rate --dir "$WORK")" fsyncs_per_s)

echo "== the writer alone: durable sends straight into the store, no HTTP"
mkdir -m 700 "$WORK/store"
STORE_SENDS=$(json "$("$BENCH" store-sends --dir "$WORK/store" --tasks $CONNECTIONS --seconds "$SECONDS_PER_RUN")" sends_per_s)
rm -rf "$WORK/store"

echo "== send path"
start "$WORK/send"
sleep 1
RSS_IDLE=$(rss_mib "$SERVER" VmRSS)
export BENCH_KEY=$KEY BENCH_RUN=$(date +%s%N)
rounds send -s ops/bench/send.lua "$URL"
SENDS=$(median < "$WORK/send.rates")
# Each counted send must have stored its message pair: a key repeated by mistake would be counted
# as a send while only replaying one.
SENT=$(cat "$WORK"/send-*.txt | awk '/requests in/ {s+=$1} END {print s}')
STORED=$(curl -sf "$URL/api/chats?limit=200" -H "Authorization: Bearer $KEY" | python3 -c '
import json, sys
chats = json.load(sys.stdin)["items"]
print(sum(c["last_seq"] for c in chats if c["id"].startswith("bench-")) // 2)')
[ "$STORED" -ge "$SENT" ] || { echo "only $STORED of $SENT counted sends were stored" >&2; exit 1; }
RSS_LOAD=$(rss_mib "$SERVER" VmHWM)
HALF=$("$BENCH" load --url "$URL" --key "$KEY" --mode send --connections $CONNECTIONS \
  --seconds "$SECONDS_PER_RUN" --rate "$(awk -v s="$SENDS" 'BEGIN{printf "%d", s/2}')")
rounds replay -s ops/bench/replay.lua "$URL"
REPLAYS=$(median < "$WORK/replay.rates")
for n in $(seq 30); do
  curl -sf -o /dev/null -X POST "$URL/api/chats/bench-0/send" -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' -d "{\"text\":\"page seed $n\"}"
done
rounds page -s ops/bench/page.lua "$URL"
PAGES=$(median < "$WORK/page.rates")
LIVEZ=$(median < "$WORK/livez.rates")
ERRORS=$(cat "$WORK"/send-*.txt "$WORK"/replay-*.txt "$WORK"/page-*.txt | awk '/non-2xx/ {s+=$2} END {print s+0}')
stop

echo "== audit trail: 1 000 000 events"
mkdir -m 700 "$WORK/audit"
"$BENCH" seed-audit --data-dir "$WORK/audit" --events 1000000 2>/dev/null
start "$WORK/audit"
AUDIT_P99=0
AUDIT_P50=0
for query in "action=chat.update&target=chat:chat-7&limit=50" \
             "actor=key:seed00000042&action=chat.send&limit=50" \
             "outcome=ok&limit=50"; do
  r=$("$BENCH" load --url "$URL" --key "$KEY" --mode audit --connections 1 \
      --seconds "$ROUND_SECONDS" --query "$query")
  AUDIT_P99=$(awk -v a="$AUDIT_P99" -v b="$(json "$r" p99_ms)" 'BEGIN{print (b>a)?b:a}')
  AUDIT_P50=$(awk -v a="$AUDIT_P50" -v b="$(json "$r" p50_ms)" 'BEGIN{print (b>a)?b:a}')
done
stop

echo "== start-up on a 1 GB database"
"$BENCH" seed-audit --data-dir "$WORK/audit" --events 2300000 2>/dev/null
DB_MB=$(( $(stat -c %s "$WORK/audit/sofiia.redb") / 1048576 ))
STARTUP_1G=$(json "$("$BENCH" startup --bin "$BIN" --data-dir "$WORK/audit" --port "$(free_port)")" startup_ms)

ratio() { awk -v a="$1" -v b="$LIVEZ" 'BEGIN{printf "%.2f", a/b}'; }
SEND_RATIO=$(median < "$WORK/send.ratios")
REPLAY_RATIO=$(median < "$WORK/replay.ratios")
PAGE_RATIO=$(median < "$WORK/page.ratios")
verdict() { awk "BEGIN{print ($1) ? \"met\" : \"missed\"}"; }
HALF_P50=$(printf %.1f "$(json "$HALF" p50_ms)"); HALF_P99=$(printf %.1f "$(json "$HALF" p99_ms)")
HALF_RPS=$(json "$HALF" rps)
AUDIT_P50=$(printf %.1f "$AUDIT_P50"); AUDIT_P99=$(printf %.1f "$AUDIT_P99")
rounded() { printf %.0f "$1"; }

echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $CONNECTIONS connections; non-2xx responses: $ERRORS"
echo "throughputs: median of $ROUNDS rounds of ${ROUND_SECONDS}s; their ratios: median of the rounds' ratios to the /livez run just before each"
printf '| %-44s | %-22s | %-6s | %-36s | %-6s |\n' figure measured ratio target result
printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..46})" "$(printf -- '-%.0s' {1..24})" "--------" "$(printf -- '-%.0s' {1..38})" "--------"
printf '| %-44s | %-22s | %-6s | %-36s | %-6s |\n' "/livez ceiling (median of all rounds)" "$(rounded "$LIVEZ") req/s" "1.00" "-" "-"
printf '| %-44s | %-22s | %-6s | %-36s | %-6s |\n' "one fsync per request (this disk)" "$(printf %.0f "$FSYNC") /s" "$(ratio "$FSYNC")" "-" "-"
printf '| %-44s | %-22s | %-6s | %-36s | %-6s |\n' "durable sends, unique keys, no agent" "$(rounded "$SENDS") req/s" "$(printf %.2f "$SEND_RATIO")" ">= 0.40 x livez and >= 2.5 x fsync" \
  "$(verdict "$SEND_RATIO >= 0.40 && $SENDS >= 2.5 * $FSYNC")"
printf '| %-44s | %-22s | %-6s | %-36s | %-6s |\n' "  the writer alone (store, no HTTP)" "$(rounded "$STORE_SENDS") /s" "$(ratio "$STORE_SENDS")" "-" "-"
printf '| %-44s | %-22s | %-6s | %-36s | %-6s |\n' "send p50 / p99 at half load ($(printf %.0f "$HALF_RPS")/s)" "$HALF_P50 / $HALF_P99 ms" "" "p99 <= 10 ms" "$(verdict "$HALF_P99 <= 10")"
printf '| %-44s | %-22s | %-6s | %-36s | %-6s |\n' "idempotent replays" "$(rounded "$REPLAYS") req/s" "$(printf %.2f "$REPLAY_RATIO")" ">= 0.70 x livez" "$(verdict "$REPLAY_RATIO >= 0.70")"
printf '| %-44s | %-22s | %-6s | %-36s | %-6s |\n' "one page of 50 messages" "$(rounded "$PAGES") req/s" "$(printf %.2f "$PAGE_RATIO")" ">= 0.50 x livez" "$(verdict "$PAGE_RATIO >= 0.50")"
printf '| %-44s | %-22s | %-6s | %-36s | %-6s |\n' "filtered audit page, 1M events (worst query)" "$AUDIT_P50 / $AUDIT_P99 ms" "" "p99 <= 20 ms" "$(verdict "$AUDIT_P99 <= 20")"
printf '| %-44s | %-22s | %-6s | %-36s | %-6s |\n' "retention prune under send load" "not built yet" "" ">= 100 000 rows/s" "-"
printf '| %-44s | %-22s | %-6s | %-36s | %-6s |\n' "RSS idle / after the send run (peak)" "$RSS_IDLE / $RSS_LOAD MiB" "" "<= 40 / <= 200 MiB" "$(verdict "$RSS_IDLE <= 40 && $RSS_LOAD <= 200")"
printf '| %-44s | %-22s | %-6s | %-36s | %-6s |\n' "start-up to /livez, ${DB_MB} MB database" "$(printf %.0f "$STARTUP_1G") ms" "" "<= 500 ms on 1 GB" "$(verdict "$STARTUP_1G <= 500")"
