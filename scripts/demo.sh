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
already finds the right neighbours (81.8%). Four epochs of contrastive training
lift the encoder well above its random initialisation (75.4%) but not yet past
raw pixels on kNN: the network is still learning invariances to crops, flips and
jitter that kNN on its pooled features rewards only after longer training (a
PyTorch ResNet-18 on this recipe passes raw pixels after about 10 epochs). The
linear probe asks how linearly separable the classes are in the learned
features (the Fashion-MNIST paper reports about 84% for logistic regression on raw pixels).
EOF
