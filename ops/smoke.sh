#!/usr/bin/env bash
# Smoke checks against a running service (SPEC §13): one PASS/FAIL line per check, exit 1 if any
# failed.
#
#   ops/smoke.sh URL
#
# The admin key comes from SOFIIA_KEY, or else from the file SOFIIA_KEY_FILE
# (default /var/lib/sofiia-console/admin.key). With `metrics.token_file` set, give the token in
# SOFIIA_METRICS_TOKEN. The checks write to chats named smoke-*: a send pair in one, and sends in
# a fresh one until its rate limit refuses one.
set -uo pipefail
[ $# -eq 1 ] || { sed -n 2,10p "$0" >&2; exit 2; }
URL=${1%/}
KEY=${SOFIIA_KEY:-$(cat "${SOFIIA_KEY_FILE:-/var/lib/sofiia-console/admin.key}" 2>/dev/null)}
[ -n "$KEY" ] || { echo "no admin key: set SOFIIA_KEY or SOFIIA_KEY_FILE" >&2; exit 2; }
command -v curl >/dev/null || { echo "the smoke checks need curl" >&2; exit 2; }
command -v python3 >/dev/null || { echo "the smoke checks need python3" >&2; exit 2; }

FAILED=0
check() { # NAME COMMAND...: runs COMMAND, prints PASS or FAIL with NAME
  local name=$1
  shift
  if "$@"; then echo "PASS $name"; else echo "FAIL $name"; FAILED=1; fi
}
status() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
json_field() { python3 -c 'import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1].split("."): v=v[k]
print(v)' "$1" 2>/dev/null; }
RUN=$(date +%s%N)

health() { [ "$(status "$URL/api/health")" = 200 ]; }
metrics() {
  local auth=()
  [ -n "${SOFIIA_METRICS_TOKEN:-}" ] && auth=(-H "Authorization: Bearer $SOFIIA_METRICS_TOKEN")
  # The scrape is read whole before it is searched: `grep -q` stops at its first match, and
  # a curl still writing then fails on the closed pipe, which pipefail reports as a failure.
  local scrape
  scrape=$(curl -sf "${auth[@]}" "$URL/metrics") && grep -q '^sofiia_build_info' <<<"$scrape"
}
send() { # CHAT KEY TEXT: prints the response body
  curl -s -X POST "$URL/api/chats/$1/send" -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' -H "Idempotency-Key: $2" -d "{\"text\":\"$3\"}"
}
idempotency() {
  local chat=smoke-$RUN first second stored
  first=$(send "$chat" "smoke-$RUN" "smoke check" | json_field message.id) || return 1
  second=$(send "$chat" "smoke-$RUN" "smoke check" | json_field message.id) || return 1
  stored=$(curl -sf "$URL/api/chats/$chat/messages?limit=50" -H "Authorization: Bearer $KEY" |
    python3 -c 'import json,sys; print(sum(m["role"]=="operator" for m in json.load(sys.stdin)["items"]))') || return 1
  [ -n "$first" ] && [ "$first" = "$second" ] && [ "$stored" = 1 ]
}
audit_needs_a_key() { [ "$(status "$URL/api/audit?limit=1")" = 401 ]; }
audit_with_a_key() { [ "$(status -H "Authorization: Bearer $KEY" "$URL/api/audit?limit=1")" = 200 ]; }
rate_limit() {
  local chat=smoke-limit-$RUN n code
  for n in $(seq 1000); do
    code=$(status -X POST "$URL/api/chats/$chat/send" -H "Authorization: Bearer $KEY" \
      -H 'Content-Type: application/json' -H "Idempotency-Key: smoke-limit-$RUN-$n" \
      -d '{"text":"smoke rate limit"}')
    [ "$code" = 429 ] && return 0
    [ "$code" = 200 ] || return 1
  done
  return 1
}

check "health: GET /api/health is 200" health
check "metrics: GET /metrics is reachable" metrics
check "idempotency: one key twice gives one message, stored once" idempotency
check "audit: GET /api/audit without a key is 401" audit_needs_a_key
check "audit: GET /api/audit with the key is 200" audit_with_a_key
check "rate limit: sends to one chat are refused with 429 past its limit" rate_limit
exit $FAILED
