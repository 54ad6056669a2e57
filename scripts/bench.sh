#!/usr/bin/env bash
# `pnpm bench [--vs-pytorch] [--quick] ...`: the step benchmarks (see --help).
# Needs the README's set-up (scripts/setup.sh); rebuilds what changed, then runs.
set -euo pipefail
cd "$(dirname "$0")/.."
pnpm -s build >&2
exec node packages/bench/dist/bin.js "$@"
