#!/usr/bin/env bash
# Checks the alert rules and runs their unit tests:
#   promtool check rules ops/prometheus/rules/sofiia-console.yml
#   promtool test rules  ops/prometheus/tests/*.test.yml
# Exit status: 0 all pass, 1 a check or test failed, 2 promtool is not installed.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v promtool >/dev/null 2>&1; then
  echo "check.sh: promtool not found in PATH." >&2
  echo "  Debian/Ubuntu: apt-get install --no-install-recommends prometheus (provides /usr/bin/promtool)" >&2
  echo "  Elsewhere: the promtool binary from a Prometheus release archive." >&2
  exit 2
fi

rules=ops/prometheus/rules/sofiia-console.yml
shopt -s nullglob
tests=(ops/prometheus/tests/*.test.yml)
shopt -u nullglob
if [ "${#tests[@]}" -eq 0 ]; then
  echo "check.sh: no test files in ops/prometheus/tests/" >&2
  exit 1
fi

echo "== $(promtool --version 2>&1 | head -n 1)"
status=0

echo "== promtool check rules $rules"
promtool check rules "$rules" || status=1

for test in "${tests[@]}"; do
  echo "== promtool test rules $test"
  promtool test rules "$test" || status=1
done

if [ "$status" -eq 0 ]; then
  echo "PASS: rules valid, ${#tests[@]} test file(s) passed"
else
  echo "FAIL: see the output above" >&2
fi
exit "$status"
