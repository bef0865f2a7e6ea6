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
# Bounded: about 14 load runs of the given length, ~60 s of seeding, two retention runs (about
# a minute each at full size: see below) and one compaction; loopback only.
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
LOADER=""
cleanup() {
  [ -n "$LOADER" ] && kill "$LOADER" 2>/dev/null
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null
  wait 2>/dev/null; rm -rf "$WORK"
}
trap cleanup EXIT

# The benchmark measures the durable send path, not the limiter: limits far above any rate here.
export SOFIIA_RATE_LIMIT__CHAT__PER_MINUTE=60000 SOFIIA_RATE_LIMIT__CHAT__BURST=1000000 \
  SOFIIA_RATE_LIMIT__OPERATOR__PER_MINUTE=60000 SOFIIA_RATE_LIMIT__OPERATOR__BURST=1000000
# Retention runs only when the benchmark starts one: the daily time is set an hour back, so the
# schedule's first run would be 23 hours away, never in the middle of a measurement.
SOFIIA_RETENTION__SCHEDULE=$(date -u -d '1 hour ago' +%H:%M)
export SOFIIA_RETENTION__SCHEDULE

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

# retention_run COMPACT: starts a real retention run on the running service; prints its id.
retention_run() {
  local entry
  entry=$(curl -sf -X POST "$URL/api/admin/retention/run" -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' -d "{\"dry_run\": false, \"compact\": $1}") ||
    { echo "POST /api/admin/retention/run was refused" >&2; return 1; }
  json "$entry" id
}
# await_run ID: run ID's job log entry once the run has ended. Looks four times a second with
# one request (no process per look: the machine is busy with the load meanwhile), for at most
# 10 minutes.
await_run() {
  local entry n
  for n in $(seq 2400); do
    entry=$(curl -sf "$URL/api/admin/retention/runs/$1" -H "Authorization: Bearer $KEY") ||
      { echo "GET /api/admin/retention/runs/$1 failed" >&2; return 1; }
    case $entry in
      *'"status":"running"'*) sleep 0.25 ;;
      *) echo "$entry"; return 0 ;;
    esac
  done
  echo "retention run $1 did not end within 10 minutes" >&2
  return 1
}
# run_facts ENTRY: status, audit events deleted, seconds from start to end (the job log's own
# clock), compacted, pause_ms, db_bytes_before, db_bytes_after.
run_facts() {
  python3 -c '
import json, sys
from datetime import datetime
run = json.loads(sys.argv[1])
at = lambda key: datetime.fromisoformat(run[key].replace("Z", "+00:00"))
print(run["status"], run["per_class"].get("audit", {}).get("deleted", 0),
      (at("finished_at") - at("started_at")).total_seconds(), str(run["compacted"]).lower(),
      run["pause_ms"], run["db_bytes_before"], run["db_bytes_after"])' "$1"
}

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

echo "== a 1 GB database, most of it expired"
# One file serves the prune, start-up and compaction figures. Its audit chain, oldest first (the
# chain's clock never runs backwards): PRUNE_EVENTS events 200 days old, as many 100 days old,
# then unaged ones up to 3 300 000 events in all, ~1.1 GB. Keeping audit 150 days, a run deletes
# exactly the oldest PRUNE_EVENTS; keeping the default 90 days, the next ones. The pacing
# (`retention.max_rows_per_second`) bounds a prune's rate, so short runs (CI: run.sh 2) prune
# SECONDS_PER_RUN x 100 000 rows instead of 1 000 000 each time: the same file, less waiting.
PRUNE_EVENTS=$(( (SECONDS_PER_RUN < 1 ? 1 : SECONDS_PER_RUN > 10 ? 10 : SECONDS_PER_RUN) * 100000 ))
mkdir -m 700 "$WORK/big"
"$BENCH" seed-audit --data-dir "$WORK/big" --events "$PRUNE_EVENTS" --age-days 200 2>/dev/null
"$BENCH" seed-audit --data-dir "$WORK/big" --events "$PRUNE_EVENTS" --age-days 100 2>/dev/null
"$BENCH" seed-audit --data-dir "$WORK/big" --events $(( 3300000 - 2 * PRUNE_EVENTS )) 2>/dev/null

echo "== retention: prune $PRUNE_EVENTS expired audit events under the send load"
# The paced send load of the half-load figure, first alone for a run (the baseline p99), then
# again with a real run started a second into it. That round ends when the run does, so its p99
# is the p99 while the prune shares the writer. Each connection waits for its answer before its
# next request, so when sends slow down fewer are asked: the rate served is printed beside the
# p99, which understates the wait when that rate falls short. The prune rate is the job log's:
# rows over its started_at..finished_at.
SOFIIA_RETENTION__AUDIT_DAYS=150 start "$WORK/big"
PACED=$(awk -v s="$SENDS" 'BEGIN{printf "%d", s/2}')
ALONE=$("$BENCH" load --url "$URL" --key "$KEY" --mode send --connections $CONNECTIONS \
  --seconds "$SECONDS_PER_RUN" --rate "$PACED")
"$BENCH" load --url "$URL" --key "$KEY" --mode send --connections $CONNECTIONS \
  --seconds 600 --rate "$PACED" > "$WORK/pruning.json" &
LOADER=$!
sleep 1
RUN_ID=$(retention_run false)
PRUNE_RUN=$(await_run "$RUN_ID")
kill -TERM "$LOADER"
wait "$LOADER"
LOADER=""
PRUNING=$(cat "$WORK/pruning.json")
stop
read -r STATUS DELETED PRUNE_SECONDS _ _ _ _ <<< "$(run_facts "$PRUNE_RUN")"
# A failed run, or one that deleted other than the expired events, makes the rate meaningless.
[ "$STATUS" = ok ] && [ "$DELETED" -eq "$PRUNE_EVENTS" ] ||
  { echo "the prune run ended $STATUS with $DELETED of $PRUNE_EVENTS events deleted: $PRUNE_RUN" >&2; exit 1; }
PRUNE_RATE=$(awk -v n="$DELETED" -v s="$PRUNE_SECONDS" 'BEGIN{printf "%.0f", n/s}')
ERRORS=$(( ERRORS + $(json "$ALONE" errors) + $(json "$PRUNING" errors) ))

echo "== start-up on a 1 GB database"
DB_MB=$(( $(stat -c %s "$WORK/big/sofiia.redb") / 1048576 ))
STARTUP_1G=$(json "$("$BENCH" startup --bin "$BIN" --data-dir "$WORK/big" --port "$(free_port)")" startup_ms)

echo "== retention with compaction on the 1 GB file"
# The default 90 days expire the 100-day-old events; compaction is asked for and made to happen
# whatever it would give back. Nothing else runs: the pause is the compaction's own.
SOFIIA_RETENTION__COMPACT_MIN_RECLAIMABLE_MIB=0 SOFIIA_RETENTION__COMPACT_MIN_RECLAIMABLE_PERCENT=0 start "$WORK/big"
RUN_ID=$(retention_run true)
COMPACT_RUN=$(await_run "$RUN_ID")
stop
read -r STATUS DELETED _ COMPACTED PAUSE_MS BYTES_BEFORE BYTES_AFTER <<< "$(run_facts "$COMPACT_RUN")"
[ "$STATUS" = ok ] && [ "$DELETED" -eq "$PRUNE_EVENTS" ] && [ "$COMPACTED" = true ] ||
  { echo "the compacting run ended $STATUS, compacted $COMPACTED, with $DELETED of $PRUNE_EVENTS events deleted: $COMPACT_RUN" >&2; exit 1; }

ratio() { awk -v a="$1" -v b="$LIVEZ" 'BEGIN{printf "%.2f", a/b}'; }
SEND_RATIO=$(median < "$WORK/send.ratios")
REPLAY_RATIO=$(median < "$WORK/replay.ratios")
PAGE_RATIO=$(median < "$WORK/page.ratios")
verdict() { awk "BEGIN{print ($1) ? \"met\" : \"missed\"}"; }
HALF_P50=$(printf %.1f "$(json "$HALF" p50_ms)"); HALF_P99=$(printf %.1f "$(json "$HALF" p99_ms)")
HALF_RPS=$(json "$HALF" rps)
AUDIT_P50=$(printf %.1f "$AUDIT_P50"); AUDIT_P99=$(printf %.1f "$AUDIT_P99")
ALONE_P99=$(printf %.1f "$(json "$ALONE" p99_ms)"); PRUNING_P99=$(printf %.1f "$(json "$PRUNING" p99_ms)")
PRUNE_P99_RATIO=$(awk -v a="$PRUNING_P99" -v b="$ALONE_P99" 'BEGIN{printf "%.2f", a/b}')
mb() { awk -v b="$1" 'BEGIN{printf "%.0f", b/1048576}'; }
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
printf '| %-44s | %-22s | %-6s | %-36s | %-6s |\n' "retention prune of $PRUNE_EVENTS rows under sends" "$PRUNE_RATE rows/s in $(printf %.1f "$PRUNE_SECONDS") s" "" ">= 100 000 rows/s" "$(verdict "$PRUNE_RATE >= 100000")"
printf '| %-44s | %-22s | %-6s | %-36s | %-6s |\n' "  send p99 at $PACED/s: alone / during it" "$ALONE_P99 / $PRUNING_P99 ms" "$PRUNE_P99_RATIO" "<= 2 x alone" "$(verdict "$PRUNING_P99 <= 2 * $ALONE_P99")"
printf '| %-44s | %-22s | %-6s | %-36s | %-6s |\n' "  sends served: alone / during it" "$(rounded "$(json "$ALONE" rps)") / $(rounded "$(json "$PRUNING" rps)") /s" "" "-" "-"
printf '| %-44s | %-22s | %-6s | %-36s | %-6s |\n' "compaction pause, $(mb "$BYTES_BEFORE") -> $(mb "$BYTES_AFTER") MB file" "$PAUSE_MS ms" "" "-" "-"
printf '| %-44s | %-22s | %-6s | %-36s | %-6s |\n' "RSS idle / after the send run (peak)" "$RSS_IDLE / $RSS_LOAD MiB" "" "<= 40 / <= 200 MiB" "$(verdict "$RSS_IDLE <= 40 && $RSS_LOAD <= 200")"
printf '| %-44s | %-22s | %-6s | %-36s | %-6s |\n' "start-up to /livez, ${DB_MB} MB database" "$(printf %.0f "$STARTUP_1G") ms" "" "<= 500 ms on 1 GB" "$(verdict "$STARTUP_1G <= 500")"
