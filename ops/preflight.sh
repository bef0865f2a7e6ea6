#!/usr/bin/env bash
# Preflight before a start or an upgrade (SPEC §13): `sofiia-console preflight`, one
# PASS/WARN/FAIL line per check; exits 1 on a FAIL, and with STRICT=1 on a WARN as well.
#
#   [STRICT=1] ops/preflight.sh [--config FILE] [--data-dir DIR] [--json]
#
# The binary is $SOFIIA_BIN, else sofiia-console on PATH. Give it what the service is given (the
# packaged unit runs with /etc/sofiia-console/config.toml, which is also the default here) and
# run it as the service's user, so ownership and modes are judged as the service meets them.
set -euo pipefail
BIN=${SOFIIA_BIN:-sofiia-console}
command -v "$BIN" >/dev/null || { echo "cannot find $BIN: put it on PATH or set SOFIIA_BIN" >&2; exit 2; }
args=(preflight)
if [ "${STRICT:-0}" = 1 ]; then args+=(--strict); fi
exec "$BIN" "${args[@]}" "$@"
