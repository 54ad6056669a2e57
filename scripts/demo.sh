#!/usr/bin/env bash
# Quickstart command 1: set up, train MoCo on Fashion-MNIST, report kNN accuracy
# (raw pixels, random-init encoder, trained encoder) and a linear probe of the trained encoder.
# Extra arguments go to `contrast train`, e.g. --set optim.epochs=1
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=$(mktemp)
trap 'rm -f "$out"' EXIT
node packages/cli/dist/bin.js train experiments/moco-fmnist.yaml "$@" | tee "$out"
run=$(sed -n 's/^run stored in //p' "$out")
echo
echo "linear probe of the trained encoder (frozen backbone, pooled features, 30 epochs):"
node packages/cli/dist/bin.js eval linear "$run" --epochs 30
cat <<'EOF'

How to read these numbers. Raw pixels are a strong kNN baseline on Fashion-MNIST:
the images are centred, aligned and on a blank background, so pixel distance
already finds the right neighbours (81.8%). A few minutes of contrastive
training teaches the encoder invariances (to crops, flips, brightness and
contrast) that kNN on its pooled features only rewards after longer training:
the same recipe passes raw pixels after about 15 epochs with this ConvNet and
about 10 epochs with a ResNet-18. The linear probe asks a different question,
how linearly separable the classes are in the learned features.
EOF
