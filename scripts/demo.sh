#!/usr/bin/env bash
# Quickstart command 1: set up, then train MoCo on Fashion-MNIST and report kNN accuracy.
# Extra arguments go to `contrast train`, e.g. --set optim.epochs=1
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node packages/cli/dist/bin.js train experiments/moco-fmnist.yaml "$@"
