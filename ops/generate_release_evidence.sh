#!/usr/bin/env bash
# Writes release-evidence-<version>.md (SPEC §13) with `sofiia-console evidence`: build,
# preflight, configuration with its secrets redacted, database figures, the audit chain's head.
#
#   ops/generate_release_evidence.sh [URL] [EVIDENCE ARGS...]
#
# With the URL of the running service the report adds read-only checks against it and, when
# smoke.sh sits beside this script (a source checkout's ops/, or the package's
# /usr/share/sofiia-console/ops/), the full smoke run's output as its
# test summary (the smoke checks need the admin key: SOFIIA_KEY or SOFIIA_KEY_FILE, see
# smoke.sh). Other arguments go to `evidence`, e.g. --config FILE --data-dir DIR. The binary is
# $SOFIIA_BIN, else sofiia-console on PATH; the report goes to $OUT_DIR (default: here). Exits
# non-zero when the report could not be written or the smoke run failed; the report is written
# either way and says what failed.
set -uo pipefail
BIN=${SOFIIA_BIN:-sofiia-console}
command -v "$BIN" >/dev/null || { echo "cannot find $BIN: put it on PATH or set SOFIIA_BIN" >&2; exit 2; }
URL=
if [ $# -gt 0 ] && [[ $1 == http://* || $1 == https://* ]]; then URL=$1; shift; fi
VERSION=$("$BIN" --version | awk '{ print $2 }')
OUT=${OUT_DIR:-.}/release-evidence-$VERSION.md
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

args=(evidence "$@")
SMOKE_STATUS=0
if [ -n "$URL" ]; then
  args+=(--url "$URL")
  SMOKE=$(dirname "$0")/smoke.sh
  if [ -x "$SMOKE" ]; then
    "$SMOKE" "$URL" >"$WORK/smoke.txt" 2>&1
    SMOKE_STATUS=$?
    echo "ops/smoke.sh $URL exited $SMOKE_STATUS" >>"$WORK/smoke.txt"
    args+=(--tests "$WORK/smoke.txt")
  fi
fi
"$BIN" "${args[@]}" >"$WORK/evidence.md" || exit 1
mv "$WORK/evidence.md" "$OUT"
echo "wrote $OUT"
[ "$SMOKE_STATUS" = 0 ]
