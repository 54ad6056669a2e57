#!/usr/bin/env bash
# Quickstart command 2: set up, then lint, typecheck and run the whole test suite.
# Arguments go to vitest, e.g. `bash scripts/test.sh packages/core` runs one package.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TURBO_TELEMETRY_DISABLED=1
if [ $# -eq 0 ]; then
  echo "[test] lint"
  pnpm -s lint
  echo "[test] typecheck"
  pnpm -s typecheck
fi
echo "[test] vitest"
# A report file of its own, so two test commands at once do not overwrite each other's.
report="$(mktemp "${TMPDIR:-/tmp}/contrast-vitest.XXXXXX.json")"
# The tests' temporary files (runs, datasets, MLflow stores, browser profiles) go into one
# directory of this command's own, removed when the suite passes and kept for a look when it fails.
scratch="$(mktemp -d "${TMPDIR:-/tmp}/contrast-test.XXXXXX")"
status=0
trap 'rm -f "$report"; if [ "$status" -eq 0 ]; then rm -rf "$scratch"; else echo "[test] temporary files kept in $scratch"; fi' EXIT
TMPDIR="$scratch" timeout --kill-after=30s 40m pnpm exec vitest run --reporter=default --reporter=json --outputFile="$report" "$@" || status=$?
# Closing line: tests and test files (a file that fails in beforeAll or at import is counted and named).
node scripts/test-summary.mjs "$report" "$status" || true
exit $status
