#!/usr/bin/env bash
# The admin page end to end in headless Chromium against the real binary (SPEC §12): sign in,
# a chat, a double-clicked send stored once, a degraded reply, the audit row and the chain, a
# retention dry run, a key created and revoked, signing out — with no request leaving the
# origin, no console error and no CSP violation. Screenshots land in target/admin-screenshots/
# (the cargo target directory).
#
#   ops/tests/admin-e2e.sh [BINARY]      (default target/release/sofiia-console; run by .ci/run)
#
# Needs Debian's chromium (CHROMIUM, default /usr/bin/chromium) and python3 with venv; the
# Playwright driver is pip-installed, pinned, into a virtualenv (ADMIN_E2E_VENV, default
# admin-e2e-venv in the cargo target directory) and drives that chromium: no browser is ever
# downloaded.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-target/release/sofiia-console}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
PLAYWRIGHT_VERSION=1.49.1
target=${CARGO_TARGET_DIR:-target}
venv=${ADMIN_E2E_VENV:-$target/admin-e2e-venv}
shots=$target/admin-screenshots

[ -x "$BIN" ] || { echo "no binary at $BIN" >&2; exit 2; }
[ -x "$CHROMIUM" ] || { echo "no chromium at $CHROMIUM" >&2; exit 2; }
# A cached venv keeps repeated runs off the network; it is rebuilt when the pin changes.
if ! "$venv/bin/pip" show playwright 2>/dev/null | grep -x "Version: $PLAYWRIGHT_VERSION" >/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "playwright==$PLAYWRIGHT_VERSION"
fi

work=$(mktemp -d)
server_pid=""
cleanup() {
  local status=$?
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  [ "$status" = 0 ] || tail -n 20 "$work/service.log" 2>/dev/null || true
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

# Limits high enough to seed a long chat quickly; the rate-limit page must show these.
export SOFIIA_RATE_LIMIT__CHAT__PER_MINUTE=600 SOFIIA_RATE_LIMIT__CHAT__BURST=100 \
  SOFIIA_RATE_LIMIT__OPERATOR__PER_MINUTE=1200 SOFIIA_RATE_LIMIT__OPERATOR__BURST=200
addr=127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" serve --listen "$addr" --data-dir "$work/data" --config /dev/null >"$work/service.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
  python3 -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "http://$addr/livez" 2>/dev/null && break
  sleep 0.1
done
python3 -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "http://$addr/livez" ||
  { echo "the service did not start" >&2; exit 1; }

mkdir -p "$shots"
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 "$venv/bin/python" ops/tests/admin-e2e/admin_flow.py \
  --url "http://$addr" --key-file "$work/data/admin.key" --chromium "$CHROMIUM" \
  --profile "$work/profile" --screenshots "$shots"
