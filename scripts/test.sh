#!/usr/bin/env bash
# Quickstart command 2: set up, then lint, typecheck and run the whole test suite.
# Arguments go to vitest, e.g. `bash scripts/test.sh packages/core` runs one package.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TURBO_TELEMETRY_DISABLED=1
if [ $# -eq 0 ]; then
  # side by side (each is mostly one core); each one's output is printed when both are done
  echo "[test] lint and typecheck"
  checks="$(mktemp -d "${TMPDIR:-/tmp}/contrast-checks.XXXXXX")"
  pnpm -s lint >"$checks/lint.log" 2>&1 &
  lint_pid=$!
  pnpm -s typecheck >"$checks/typecheck.log" 2>&1 &
  typecheck_pid=$!
  lint_status=0
  typecheck_status=0
  wait "$lint_pid" || lint_status=$?
  wait "$typecheck_pid" || typecheck_status=$?
  for step in lint typecheck; do
    if [ -s "$checks/$step.log" ]; then
      echo "[test] $step output:"
      cat "$checks/$step.log"
    fi
  done
  rm -rf "$checks"
  if [ "$lint_status" -ne 0 ] || [ "$typecheck_status" -ne 0 ]; then
    echo "[test] lint exited with $lint_status, typecheck with $typecheck_status"
    exit 1
  fi
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
