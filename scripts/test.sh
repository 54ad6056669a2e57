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
  pnpm exec turbo run typecheck --output-logs=errors-only
fi
echo "[test] vitest"
status=0
timeout --kill-after=30s 40m pnpm exec vitest run --reporter=default --reporter=json --outputFile=.vitest-results.json "$@" || status=$?
node -e '
  const r = JSON.parse(require("fs").readFileSync(".vitest-results.json", "utf8"));
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed` + (r.numPendingTests ? `, ${r.numPendingTests} skipped` : ""));
' || true
exit $status
