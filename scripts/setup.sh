#!/usr/bin/env bash
# Sets up everything Contrast needs on a fresh machine, idempotently:
# pnpm, dependencies, Fashion-MNIST, the build, and the native TensorFlow binding
# (built offline against the TensorFlow wheel from PyPI; cached in ~/.cache/contrast).
# A second run only checks, in a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
PNPM_VERSION=10.34.9
export TURBO_TELEMETRY_DISABLED=1 TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
say() { printf '[setup] %s\n' "$*" >&2; }

# 1. pnpm, pinned, without corepack (its signature check fails on offline-ish machines).
if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version 2>/dev/null)" != "$PNPM_VERSION" ]; then
  say "installing pnpm@$PNPM_VERSION with npm"
  if [ "$(id -u)" = 0 ]; then
    npm install -g --silent "pnpm@$PNPM_VERSION"
  else
    npm install -g --silent --prefix "$HOME/.local" "pnpm@$PNPM_VERSION"
    export PATH="$HOME/.local/bin:$PATH"
  fi
fi

# 2. Dependencies (pnpm skips tfjs-node's download script; step 5 builds the binding).
say "pnpm install"
pnpm install --frozen-lockfile --reporter=silent

# 3. Fashion-MNIST: Debian's dataset-fashion-mnist package has the official IDX files.
FMNIST_DIR="${CONTRAST_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}"
if [ ! -f "$FMNIST_DIR/train-images-idx3-ubyte.gz" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing dataset-fashion-mnist from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    say "Fashion-MNIST is missing from $FMNIST_DIR."
    say "As root on Debian/Ubuntu: apt-get install -y dataset-fashion-mnist."
    say "Elsewhere: put the four official *-ubyte.gz files in a folder and export CONTRAST_FASHION_MNIST=/that/folder."
    exit 1
  fi
fi

# 3b. redis-server (Debian's) for distributed studies and their tests.
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing redis-server from Debian"
    [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' 2>/dev/null | head -1)" ] || apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    say "redis-server is missing: as root on Debian/Ubuntu, apt-get install -y redis-server"
    exit 1
  fi
fi

# 3c. Debian's chromium for the nearest-neighbour page's browser test (playwright-core drives it).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing chromium from Debian"
    [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' 2>/dev/null | head -1)" ] || apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    say "chromium is missing: as root on Debian/Ubuntu, apt-get install -y chromium"
    exit 1
  fi
fi

# 4. Build all packages (turbo caches unchanged ones).
say "building"
pnpm exec turbo run build --output-logs=errors-only

# 5. Native TensorFlow binding for @tensorflow/tfjs-node.
node packages/cli/dist/bin.js setup

# 6. MLflow (server for the tracking integration tests and a local UI) in a cached venv.
#    Keep the version in step with MLFLOW_VERSION in packages/tracking/src/mlflow/server.ts.
MLFLOW_VERSION=3.17.2
MLFLOW_VENV="${CONTRAST_MLFLOW_VENV:-$HOME/.cache/contrast/mlflow-venv}"
if [ ! -f "$MLFLOW_VENV/.installed-$MLFLOW_VERSION-auth" ]; then
  say "installing mlflow==$MLFLOW_VERSION into $MLFLOW_VENV (once; about a minute)"
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    else
      say "python3 venv support is missing: install python3-venv"; exit 1
    fi
  fi
  rm -rf "$MLFLOW_VENV"
  python3 -m venv "$MLFLOW_VENV"
  "$MLFLOW_VENV/bin/pip" install -q --disable-pip-version-check "mlflow[auth]==$MLFLOW_VERSION"
  touch "$MLFLOW_VENV/.installed-$MLFLOW_VERSION-auth"
fi
