#!/usr/bin/env bash
# `pnpm parity [step] [augment] | learning ...`: Contrast against a PyTorch port (see --help).
# Needs the README's set-up (scripts/setup.sh); rebuilds what changed, then runs.
set -euo pipefail
cd "$(dirname "$0")/.."
pnpm -s build >&2
exec node packages/parity/dist/bin.js "$@"
