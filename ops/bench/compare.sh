#!/usr/bin/env bash
# Durable send throughput of two commits in one run (SPEC §14): the way to show that a change
# costs the send path nothing beyond noise.
#
#   ops/bench/compare.sh BEFORE AFTER [rounds] [seconds-per-round]   (defaults 5 and 5; needs wrk)
#
# Builds both commits' release binaries (in target/compare/), starts each on its own fresh data
# dir, and alternates: /livez then sends on BEFORE, /livez then sends on AFTER, ROUNDS times. Each
# send round's ratio is taken to the /livez round just before it on the same service, so drift
# of the machine's capacity within the run falls on both alike. Prints each round and the
# medians; AFTER's median ratio against BEFORE's is the change.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 2 ] || { sed -n 2,11p "$0" >&2; exit 2; }
BEFORE_REV=$1 AFTER_REV=$2 ROUNDS=${3:-5} ROUND_SECONDS=${4:-5}
CONNECTIONS=64
command -v wrk >/dev/null || { echo "the comparison needs wrk (apt-get install wrk)" >&2; exit 2; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  git worktree remove --force "$WORK/tree" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# build REV NAME: the release binary of REV, as $WORK/NAME.
build() {
  git worktree add --quiet --detach "$WORK/tree" "$1"
  CARGO_TARGET_DIR=$PWD/target/compare cargo build --release --quiet -p sofiia-console \
    --manifest-path "$WORK/tree/Cargo.toml"
  cp target/compare/release/sofiia-console "$WORK/$2"
  git worktree remove --force "$WORK/tree"
}
build "$BEFORE_REV" before
build "$AFTER_REV" after

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export SOFIIA_RATE_LIMIT__CHAT__PER_MINUTE=60000 SOFIIA_RATE_LIMIT__CHAT__BURST=1000000 \
  SOFIIA_RATE_LIMIT__OPERATOR__PER_MINUTE=60000 SOFIIA_RATE_LIMIT__OPERATOR__BURST=1000000
SOFIIA_RETENTION__SCHEDULE=$(date -u -d '1 hour ago' +%H:%M)
export SOFIIA_RETENTION__SCHEDULE

# start NAME: starts $WORK/NAME on a fresh data dir; sets URL_NAME and KEY_NAME.
start() {
  local port; port=$(free_port)
  mkdir -m 700 "$WORK/data-$1"
  "$WORK/$1" serve --listen "127.0.0.1:$port" --data-dir "$WORK/data-$1" --config /dev/null \
    >/dev/null 2>"$WORK/$1.stderr" &
  PIDS+=($!)
  until curl -sf "http://127.0.0.1:$port/livez" >/dev/null 2>&1; do sleep 0.01; done
  printf -v "URL_$1" '%s' "http://127.0.0.1:$port"
  printf -v "KEY_$1" '%s' "$(cat "$WORK/data-$1/admin.key")"
}
start before
start after

rps() { awk '/Requests\/sec/ {print $2}' "$1"; }
median() { sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
export BENCH_RUN
BENCH_RUN=$(date +%s%N)
echo "round  build   /livez req/s  sends req/s  ratio"
for round in $(seq "$ROUNDS"); do
  for name in before after; do
    url_var=URL_$name key_var=KEY_$name
    wrk -t2 -c$CONNECTIONS -d"${ROUND_SECONDS}s" "${!url_var}/livez" > "$WORK/livez.txt"
    BENCH_KEY=${!key_var} BENCH_ROUND="$name-$round" wrk -t2 -c$CONNECTIONS -d"${ROUND_SECONDS}s" \
      -s ops/bench/send.lua "${!url_var}" > "$WORK/send.txt"
    if grep -q 'non-2xx: [1-9]' "$WORK/send.txt"; then
      echo "$name: sends failed in round $round" >&2; cat "$WORK/send.txt" >&2; exit 1
    fi
    ceiling=$(rps "$WORK/livez.txt") sends=$(rps "$WORK/send.txt")
    ratio=$(awk -v a="$sends" -v b="$ceiling" 'BEGIN{printf "%.4f", a/b}')
    echo "$sends" >> "$WORK/$name.sends"
    echo "$ratio" >> "$WORK/$name.ratios"
    printf '%-6s %-7s %-13s %-12s %s\n' "$round" "$name" "$ceiling" "$sends" "$ratio"
  done
done
for name in before after; do
  printf '%s: median %s sends/s, median ratio to /livez %s\n' "$name" \
    "$(median < "$WORK/$name.sends")" "$(median < "$WORK/$name.ratios")"
done
awk -v a="$(median < "$WORK/after.ratios")" -v b="$(median < "$WORK/before.ratios")" \
  'BEGIN{printf "after / before (median ratios): %.3f\n", a/b}'
