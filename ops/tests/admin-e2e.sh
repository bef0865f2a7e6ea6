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
. ops/tests/service.sh
pinned_venv "$venv" playwright "$PLAYWRIGHT_VERSION"

# Limits high enough to seed a long chat quickly; the rate-limit page must show these.
export SOFIIA_RATE_LIMIT__CHAT__PER_MINUTE=600 SOFIIA_RATE_LIMIT__CHAT__BURST=100 \
  SOFIIA_RATE_LIMIT__OPERATOR__PER_MINUTE=1200 SOFIIA_RATE_LIMIT__OPERATOR__BURST=200
start_service "$BIN"

mkdir -p "$shots"
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 "$venv/bin/python" ops/tests/admin-e2e/admin_flow.py \
  --url "http://$addr" --key-file "$work/data/admin.key" --chromium "$CHROMIUM" \
  --profile "$work/profile" --screenshots "$shots"
