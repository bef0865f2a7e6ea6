#!/usr/bin/env bash
# Disk full: on a small file system the service refuses writes with `503 unavailable`, loses
# nothing it acknowledged, leaves the database sound, and serves again once there is space.
#
#   ops/tests/disk-full.sh [BINARY]      (default target/release/sofiia-console; run by .ci/run)
#
# Needs root (it mounts a 16 MiB tmpfs), curl and python3. A ballast file fills the file system
# to within a few hundred kilobytes; sends with unique idempotency keys then run until one is
# refused. redb refuses every write after an I/O error, so the service stops (non-zero: a
# service manager restarts it) rather than limp on; the test frees the ballast, starts it again
# and checks what it holds. Every check prints a line; the first failure ends the script.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-target/release/sofiia-console}
[ "$(id -u)" = 0 ] || { echo "needs root (mounts a tmpfs)" >&2; exit 2; }
for tool in curl python3 mountpoint; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 2; }
done

work=$(mktemp -d)
fs=$work/fs
server_pid=""
cleanup() {
  local status=$?
  [ -n "$server_pid" ] && kill -KILL "$server_pid" 2>/dev/null || true
  mountpoint -q "$fs" && umount "$fs"
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

pass() { echo "ok   $1"; }
fail() { echo "FAIL $1"; tail -n 5 "$work/service.log" 2>/dev/null; exit 1; }
json() { python3 -c 'import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }

export SOFIIA_RATE_LIMIT__CHAT__PER_MINUTE=60000 SOFIIA_RATE_LIMIT__CHAT__BURST=1000000 \
  SOFIIA_RATE_LIMIT__OPERATOR__PER_MINUTE=60000 SOFIIA_RATE_LIMIT__OPERATOR__BURST=1000000
addr=127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=http://$addr
data=$fs/data

start() {
  "$BIN" serve --listen "$addr" --data-dir "$data" --config /dev/null >>"$work/service.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do curl -sf -o /dev/null "$url/livez" && return 0; sleep 0.1; done
  fail "the service answers /livez"
}
send() { # KEY: prints the HTTP status, the body in $work/answer
  curl -s -o "$work/answer" -w '%{http_code}' --max-time 30 -X POST "$url/api/chats/disk/send" \
    -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -H "Idempotency-Key: $1" \
    -d "{\"text\":\"$1 $(printf '%0400d' 0)\"}" || echo 000
}

mkdir -p "$fs"
mount -t tmpfs -o size=16m tmpfs "$fs"
start
key=$(cat "$data/admin.key")
free_kib=$(df -k --output=avail "$fs" | tail -n 1)
dd if=/dev/zero of="$fs/ballast" bs=1k count=$((free_kib - 600)) status=none 2>/dev/null || true
pass "a 16 MiB file system, filled to $(df -k --output=avail "$fs" | tail -n 1 | tr -d ' ') KiB free"

acknowledged=()
refused=""
for n in $(seq 1 20000); do
  status=$(send "disk-$n")
  if [ "$status" = 200 ]; then
    acknowledged+=("disk-$n=$(json 'd["message"]["id"]' <"$work/answer")")
  else
    refused="disk-$n"
    break
  fi
done
[ -n "$refused" ] || fail "a send is refused before 20000"
pass "${#acknowledged[@]} sends acknowledged before the disk filled"
check_code=$(json 'd["error"]["code"]' <"$work/answer" 2>/dev/null || echo none)
[ "$status" = 503 ] && [ "$check_code" = unavailable ] ||
  fail "the first refusal is 503 unavailable (it was $status $check_code)"
pass "the first refusal ($refused) is 503 unavailable"

for _ in $(seq 300); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$server_pid" 2>/dev/null && fail "the service stops after its storage failed"
exit_status=0
wait "$server_pid" || exit_status=$?
server_pid=""
[ "$exit_status" != 0 ] || fail "the service exits non-zero, so a service manager restarts it"
grep -q 'No space left on device' "$work/service.log" || fail "the log names the cause"
pass "the service stopped with exit status $exit_status, its log naming the full disk"

rm -f "$fs/ballast"
# The file was not closed cleanly; preflight inspects it as the next start will recover it.
"$BIN" preflight --json --data-dir "$data" --config /dev/null >"$work/preflight.json" \
  2>>"$work/service.log" || true
verdict() { json "[c['status'] for c in d['checks'] if c['name'] == '$1'][0]" <"$work/preflight.json"; }
[ "$(verdict database)" != FAIL ] && [ "$(verdict audit-chain)" = PASS ] ||
  fail "the database is sound: every page's checksum and the audit chain verify ($(cat "$work/preflight.json"))"
pass "the database is sound: every page's checksum and the audit chain verify"

start
for entry in "${acknowledged[@]}"; do
  sent_key=${entry%%=*}
  [ "$(send "$sent_key")" = 200 ] || fail "$sent_key is answered after the restart"
  [ "$(json 'd["message"]["id"]' <"$work/answer")" = "${entry#*=}" ] ||
    fail "$sent_key replays the message it acknowledged"
done
pass "every acknowledged send is stored and replays its message"
[ "$(send "$refused")" = 200 ] || fail "the refused send succeeds when retried"
stored=$(curl -sf "$url/api/chats/disk/messages?limit=1&order=desc" -H "Authorization: Bearer $key" |
  json 'd["items"][0]["seq"]')
expected=$(( (${#acknowledged[@]} + 1) * 2 ))
[ "$stored" = "$expected" ] ||
  fail "the chat holds each send once, with its reply ($stored messages, expected $expected)"
pass "the retried send is stored once; the chat holds $stored messages, each send once"
valid=$(curl -sf "$url/api/audit/verify" -H "Authorization: Bearer $key" | json 'd["valid"]')
[ "$valid" = True ] || fail "the audit chain verifies"
pass "the audit chain verifies"
kill -TERM "$server_pid"
wait "$server_pid" || fail "the service stops cleanly on SIGTERM"
server_pid=""
echo "disk full: ${#acknowledged[@]} acknowledged before the disk filled, refused with 503 unavailable, 0 lost; the service exited $exit_status and served again once restarted with space"
