#!/usr/bin/env bash
# Sets up everything Contrast needs on a fresh machine, idempotently:
# pnpm, dependencies, Fashion-MNIST, the build, the native TensorFlow binding
# (built offline against the TensorFlow wheel from PyPI; cached in ~/.cache/contrast),
# MLflow in a cached venv and PyTorch in another (scripts/torch-requirements.txt; the
# export and parity checks). A second run only checks, in a few seconds.
# `bash scripts/setup.sh --torch-venv` builds (or checks) the PyTorch venv alone.
#
# Safe to run twice at once (two clones, CI beside a developer): every step that
# builds something shared holds a lock (flock(1), released even if the holder is
# killed), builds aside, renames the result into place, and checks that it works
# (an import, a version) before marking it done; a cache that fails its check is
# rebuilt, never trusted because of a marker.
#   CONTRAST_CACHE        the cache folder (default ~/.cache/contrast)
#   CONTRAST_MLFLOW_VENV  the MLflow venv (default $CONTRAST_CACHE/mlflow-venv)
#   CONTRAST_TORCH_VENV   the PyTorch venv (default $CONTRAST_CACHE/torch-venv)
#   CONTRAST_PNPM_PREFIX  where pnpm is installed when missing (default: npm's global
#                         prefix as root, else ~/.local)
# --gpu also builds the GPU backend (tensorflow-gpu; `contrast setup --gpu`): about
# 3.4 GB of wheels downloaded once into the cache. Never part of the default set-up.
set -euo pipefail
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$0")/.."
PNPM_VERSION=10.34.9
# Keep in step with MLFLOW_VERSION in packages/mlflow-ts-client/src/testing/server.ts.
MLFLOW_VERSION=3.17.2
export TURBO_TELEMETRY_DISABLED=1 TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
export CONTRAST_CACHE="${CONTRAST_CACHE:-$HOME/.cache/contrast}"
MLFLOW_VENV="${CONTRAST_MLFLOW_VENV:-$CONTRAST_CACHE/mlflow-venv}"
TORCH_VENV="${CONTRAST_TORCH_VENV:-$CONTRAST_CACHE/torch-venv}"
TORCH_REQUIREMENTS="$PWD/scripts/torch-requirements.txt"
if [ -z "${CONTRAST_PNPM_PREFIX:-}" ]; then
  if [ "$(id -u)" = 0 ]; then
    CONTRAST_PNPM_PREFIX="$(npm config get prefix 2>/dev/null)"
  else
    CONTRAST_PNPM_PREFIX="$HOME/.local"
  fi
fi
export CONTRAST_PNPM_PREFIX
case ":$PATH:" in
  *":$CONTRAST_PNPM_PREFIX/bin:"*) ;;
  *) export PATH="$CONTRAST_PNPM_PREFIX/bin:$PATH" ;;
esac
say() { printf '[setup] %s\n' "$*" >&2; }

# locked LOCKFILE STEP [ARGS...]: runs a step (a function below) in a child of this
# script holding an exclusive lock on LOCKFILE. flock -o keeps the lock's descriptor
# out of the step's own children, so nothing that outlives the step holds it.
locked() {
  local lock="$1"
  shift
  mkdir -p "$(dirname "$lock")"
  if ! command -v flock >/dev/null 2>&1; then
    say "flock(1) (util-linux) not found: '$1' runs without a lock; never run two set-ups at once"
    bash "$SELF" --step "$@"
    return
  fi
  flock -n "$lock" true || say "waiting for another set-up to finish $1 ($lock)"
  flock -o "$lock" bash "$SELF" --step "$@"
}

apt_install() {
  [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' 2>/dev/null | head -1)" ] ||
    apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@" >/dev/null
}

# pnpm@PNPM_VERSION into CONTRAST_PNPM_PREFIX: npm installs it into a folder beside
# it, the package folder and its bin links are renamed into place once it runs.
install_pnpm() {
  [ "$(pnpm --version 2>/dev/null)" = "$PNPM_VERSION" ] && return 0 # another set-up did it
  say "installing pnpm@$PNPM_VERSION with npm into $CONTRAST_PNPM_PREFIX"
  local modules="$CONTRAST_PNPM_PREFIX/lib/node_modules" tmp link
  mkdir -p "$modules" "$CONTRAST_PNPM_PREFIX/bin"
  rm -rf "$modules"/.contrast-pnpm-* # installs killed half-way
  tmp="$(mktemp -d "$modules/.contrast-pnpm-XXXXXX")"
  npm install -g --silent --prefix "$tmp" "pnpm@$PNPM_VERSION"
  if [ "$("$tmp/bin/pnpm" --version)" != "$PNPM_VERSION" ]; then
    say "the pnpm npm installed in $tmp does not run as $PNPM_VERSION"
    exit 1
  fi
  [ ! -e "$modules/pnpm" ] || mv -T "$modules/pnpm" "$tmp/replaced"
  mv -T "$tmp/lib/node_modules/pnpm" "$modules/pnpm"
  for link in "$tmp"/bin/*; do # relative links: valid in the prefix as well
    mv -T "$link" "$CONTRAST_PNPM_PREFIX/bin/$(basename "$link")"
  done
  rm -rf "$tmp"
}

# Dependencies, the build and the native binding of this checkout (its node_modules).
checkout_steps() {
  say "pnpm install"
  pnpm install --frozen-lockfile --reporter=silent
  say "building"
  pnpm -s build
  # the wheel and libtensorflow in the cache take their own lock (packages/backend)
  if [ "${CONTRAST_SETUP_GPU:-0}" = 1 ]; then
    node packages/cli/dist/bin.js setup --gpu
  else
    node packages/cli/dist/bin.js setup
  fi
}

# A venv works when pyvenv.cfg is there, mlflow (server and auth app) imports at
# the pinned version, and the mlflow script's interpreter exists.
mlflow_venv_works() {
  local v="$1" interp
  [ -f "$v/pyvenv.cfg" ] || return 1
  "$v/bin/python" -c "import sys, mlflow, mlflow.server, mlflow.server.auth
sys.exit(mlflow.__version__ != '$MLFLOW_VERSION')" >/dev/null 2>&1 || return 1
  interp="$(sed -n '1s/^#!//p' "$v/bin/mlflow" 2>/dev/null)"
  [ -n "$interp" ] && [ -x "$interp" ]
}
mlflow_venv_ok() { [ -f "$1/.installed-$MLFLOW_VERSION-auth" ] && mlflow_venv_works "$1"; }

# python3 with venv and ensurepip (Debian splits them into python3-venv).
need_python_venv() {
  python3 -c 'import venv, ensurepip' 2>/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt_install python3-venv
  else
    say "python3 venv support is missing: install python3-venv"
    exit 1
  fi
}

# swap_venv_in LINK BUILD: LINK (a venv path) becomes a symlink to BUILD (a folder
# beside it), swapped in one rename; the build LINK pointed to before is deleted.
# (A venv cannot be moved once built: its scripts name their interpreter by absolute
# path; so the build stays where it was made.)
swap_venv_in() {
  local link="$1" build="$2" parent name current="" d
  parent="$(dirname "$link")"
  name="$(basename "$link")"
  [ ! -L "$link" ] || current="$(readlink "$link")"
  if [ -e "$link" ] && [ ! -L "$link" ]; then
    d="$link.broken-$(date -u +%Y%m%d-%H%M%S)-$$"
    mv -T "$link" "$d" # a folder cannot be renamed over; kept, never deleted unseen
    say "$link did not work: moved aside to $d (delete it when nothing uses it)"
  fi
  ln -sfn "$(basename "$build")" "$parent/.$name.link-$$"
  mv -T "$parent/.$name.link-$$" "$link"
  case "$current" in "$name".build-*) rm -rf "${parent:?}/$current" ;; esac
}

# new_venv_build LINK: removes builds killed half-way (the caller's lock guards them),
# then prints a fresh build folder beside LINK.
new_venv_build() {
  local link="$1" parent name current="" d
  parent="$(dirname "$link")"
  name="$(basename "$link")"
  mkdir -p "$parent"
  [ ! -L "$link" ] || current="$(readlink "$link")"
  for d in "$parent/$name".build-*; do
    [ ! -e "$d" ] || [ "$(basename "$d")" = "$current" ] || rm -rf "$d"
  done
  mktemp -d "$parent/$name.build-XXXXXX"
}

# The PyTorch venv works when every pin of scripts/torch-requirements.txt is the
# installed version and torch, torchvision, scipy.stats and safetensors.torch import
# (and compute); its marker is a copy of the requirements it was built from.
torch_venv_works() {
  local v="$1"
  [ -f "$v/pyvenv.cfg" ] || return 1
  "$v/bin/python" - "$TORCH_REQUIREMENTS" >/dev/null 2>&1 <<'PY' || return 1
import sys
from importlib.metadata import version
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        name, pin = line.split("==")
        if version(name) != pin:
            sys.exit(f"{name} {version(name)} installed, {pin} pinned")
import safetensors.torch, scipy.stats, timm, torch, torchvision
torch.randn(2, 2) @ torch.randn(2, 2)
torchvision.transforms.ColorJitter(0.4)
PY
}
torch_venv_ok() {
  cmp -s "$TORCH_REQUIREMENTS" "$1/.contrast-requirements.txt" && torch_venv_works "$1"
}

# PyTorch (scripts/torch-requirements.txt) in a venv built beside TORCH_VENV, which
# becomes a symlink to it.
build_torch_venv() {
  torch_venv_ok "$TORCH_VENV" && return 0 # another set-up built it while this one waited
  need_python_venv
  local build start
  build="$(new_venv_build "$TORCH_VENV")"
  start=$SECONDS
  say "installing PyTorch (scripts/torch-requirements.txt) into $build (once; about 5 GB with the default wheel's unused CUDA libraries)"
  python3 -m venv "$build"
  "$build/bin/pip" install -q --disable-pip-version-check -r "$TORCH_REQUIREMENTS"
  if ! torch_venv_works "$build"; then
    say "scripts/torch-requirements.txt was installed into $build but does not import at its pins"
    exit 1
  fi
  cp "$TORCH_REQUIREMENTS" "$build/.contrast-requirements.txt"
  swap_venv_in "$TORCH_VENV" "$build"
  say "PyTorch venv ready in $((SECONDS - start)) s: $TORCH_VENV -> $(basename "$build")"
}

# MLflow in a venv built beside MLFLOW_VENV, which becomes a symlink to it.
build_mlflow_venv() {
  mlflow_venv_ok "$MLFLOW_VENV" && return 0 # another set-up built it while this one waited
  need_python_venv
  local build
  build="$(new_venv_build "$MLFLOW_VENV")"
  say "installing mlflow==$MLFLOW_VERSION into $build (once; about a minute)"
  python3 -m venv "$build"
  "$build/bin/pip" install -q --disable-pip-version-check "mlflow[auth]==$MLFLOW_VERSION"
  if ! mlflow_venv_works "$build"; then
    say "mlflow==$MLFLOW_VERSION was installed into $build but does not import"
    exit 1
  fi
  touch "$build/.installed-$MLFLOW_VERSION-auth"
  swap_venv_in "$MLFLOW_VENV" "$build"
  say "MLflow venv ready: $MLFLOW_VENV -> $(basename "$build")"
}

if [ "${1:-}" = --step ]; then # a locked step, run by `locked`
  shift
  "$@"
  exit
fi
case "${1:-}" in
  --torch-venv) # the PyTorch venv alone (what ensureTorchVenv runs)
    torch_venv_ok "$TORCH_VENV" || locked "$TORCH_VENV.lock" build_torch_venv
    exit
    ;;
  --gpu) export CONTRAST_SETUP_GPU=1 ;;
  '') ;;
  *)
    say "unknown option '$1' (options: --gpu, --torch-venv)"
    exit 2
    ;;
esac

# 1. pnpm, pinned, without corepack (its signature check fails on offline-ish machines).
if [ "$(pnpm --version 2>/dev/null)" != "$PNPM_VERSION" ]; then
  locked "$CONTRAST_PNPM_PREFIX/lib/node_modules/.contrast-pnpm.lock" install_pnpm
fi

# 2. Fashion-MNIST: Debian's dataset-fashion-mnist package has the official IDX files.
FMNIST_DIR="${CONTRAST_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}"
if [ ! -f "$FMNIST_DIR/train-images-idx3-ubyte.gz" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing dataset-fashion-mnist from Debian"
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt_install dataset-fashion-mnist
  else
    say "Fashion-MNIST is missing from $FMNIST_DIR."
    say "As root on Debian/Ubuntu: apt-get install -y dataset-fashion-mnist."
    say "Elsewhere: put the four official *-ubyte.gz files in a folder and export CONTRAST_FASHION_MNIST=/that/folder."
    exit 1
  fi
fi

# 3. redis-server (Debian's) for distributed studies and their tests.
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing redis-server from Debian"
    apt_install redis-server
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

# 4. Dependencies, build (tsc -b: unchanged packages are skipped), native TensorFlow binding.
locked .contrast/setup.lock checkout_steps

# 5. MLflow (server for the tracking integration tests and a local UI) in a cached venv.
mlflow_venv_ok "$MLFLOW_VENV" || locked "$MLFLOW_VENV.lock" build_mlflow_venv

# 6. PyTorch (the export check in the suite, pnpm export-parity / parity / bench --vs-pytorch).
torch_venv_ok "$TORCH_VENV" || locked "$TORCH_VENV.lock" build_torch_venv
