#!/usr/bin/env bash
# Checks that set-up is safe to run twice at once: two `scripts/setup.sh` started
# together in one fresh clone of this repository, on a "machine" without the caches,
# must both succeed and leave a working MLflow venv (a real `mlflow server` answers),
# a working PyTorch venv, a native TensorFlow binding that loads, and pnpm at the
# pinned version.
#
# The real caches are never touched: the TensorFlow wheel and libtensorflow
# (CONTRAST_CACHE), the MLflow and PyTorch venvs (CONTRAST_MLFLOW_VENV,
# CONTRAST_TORCH_VENV) and pnpm (CONTRAST_PNPM_PREFIX) go to a temporary folder,
# removed at the end. A fake older
# pnpm first on PATH makes both set-ups install pnpm too. Then it breaks the caches
# behind their markers (venv without pyvenv.cfg, a header missing, a truncated wheel)
# and checks that one more set-up rebuilds each.
# About 8 minutes on 2 cores (clone install and build, wheel, binding, each venv
# twice) and 12 GB of disk for a while (the PyTorch venv, twice).
#
#   bash scripts/check-concurrent-setup.sh [REF]    # REF: the commit to check (default HEAD)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
ref="$(git -C "$repo" rev-parse "${1:-HEAD}")"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/contrast-setup-check.XXXXXX")"
server_pid=""
cleanup() {
  [ -z "$server_pid" ] || kill -- "-$server_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
say() { printf '[check] %s\n' "$*"; }

git clone -q --no-checkout "$repo" "$tmp/clone"
git -C "$tmp/clone" checkout -q "$ref"
say "clone of $(git -C "$tmp/clone" log -1 --format='%h %s') in $tmp/clone"
export CONTRAST_CACHE="$tmp/cache" CONTRAST_MLFLOW_VENV="$tmp/cache/mlflow-venv"
export CONTRAST_TORCH_VENV="$tmp/cache/torch-venv"
torch_venv_checks=""
grep -q torch_venv_works "$tmp/clone/scripts/setup.sh" && torch_venv_checks=1
if grep -q CONTRAST_PNPM_PREFIX "$tmp/clone/scripts/setup.sh"; then
  export CONTRAST_PNPM_PREFIX="$tmp/pnpm"
  mkdir -p "$tmp/fake-pnpm"
  printf '#!/bin/sh\necho 0.0.1\n' >"$tmp/fake-pnpm/pnpm"
  chmod +x "$tmp/fake-pnpm/pnpm"
  export PATH="$tmp/fake-pnpm:$PATH"
else
  say "this set-up has no CONTRAST_PNPM_PREFIX: the pnpm step is not exercised (it would install globally)"
fi

start=$(date +%s)
stamp() { while IFS= read -r line; do printf '%4ss %s\n' "$(($(date +%s) - start))" "$line"; done; }
for n in 1 2; do
  (
    cd "$tmp/clone"
    set +e
    bash scripts/setup.sh 2>&1 | stamp >"$tmp/setup-$n.log"
    echo "${PIPESTATUS[0]}" >"$tmp/setup-$n.rc"
  ) &
done
wait
say "both set-ups ended after $(($(date +%s) - start)) s"

failed=0
check() { # check DESCRIPTION COMMAND...
  if "${@:2}" >"$tmp/check.log" 2>&1; then
    say "ok    $1"
  else
    say "FAIL  $1: $(tail -3 "$tmp/check.log" | tr '\n' ' ')"
    failed=1
  fi
}
for n in 1 2; do
  say "set-up $n exited with $(cat "$tmp/setup-$n.rc"); its log:"
  grep -vE '^ *[0-9]+s *(•|Tasks:|Cached:|Time:|$)' "$tmp/setup-$n.log" | sed "s/^/    $n| /" 
  check "set-up $n succeeded" test "$(cat "$tmp/setup-$n.rc")" = 0
done

venv="$CONTRAST_MLFLOW_VENV"
check "the MLflow venv has pyvenv.cfg" test -f "$venv/pyvenv.cfg"
check "mlflow and its server import in the venv" \
  "$venv/bin/python" -c 'import mlflow, mlflow.server; print(mlflow.__version__)'
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
mkdir -p "$tmp/server"
setsid "$venv/bin/mlflow" server --backend-store-uri "sqlite:///$tmp/server/mlflow.db" \
  --artifacts-destination "$tmp/server/artifacts" --host 127.0.0.1 --port "$port" --workers 1 \
  >"$tmp/server/log" 2>&1 &
server_pid=$!
answers() {
  for _ in $(seq 1 240); do
    curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  tail -5 "$tmp/server/log"
  return 1
}
check "mlflow server from the venv answers /health" answers
kill -- "-$server_pid" 2>/dev/null || true
wait "$server_pid" 2>/dev/null || true
server_pid=""
check "the native TensorFlow binding loads in the clone" \
  bash -c "cd '$tmp/clone' && node packages/cli/dist/bin.js setup | grep -q 'already present'"
torch_imports() {
  "$CONTRAST_TORCH_VENV/bin/python" -c 'import safetensors.torch, scipy.stats, torch, torchvision; print(torch.__version__)'
}
if [ -n "$torch_venv_checks" ]; then
  check "the PyTorch venv's marker is scripts/torch-requirements.txt" \
    cmp "$tmp/clone/scripts/torch-requirements.txt" "$CONTRAST_TORCH_VENV/.contrast-requirements.txt"
  check "torch, torchvision, scipy and safetensors import in the PyTorch venv" torch_imports
fi
if [ -n "${CONTRAST_PNPM_PREFIX:-}" ]; then
  check "pnpm in $CONTRAST_PNPM_PREFIX runs as the pinned version" \
    bash -c "[ \"\$('$CONTRAST_PNPM_PREFIX/bin/pnpm' --version)\" = \"\$(sed -n 's/^PNPM_VERSION=//p' '$tmp/clone/scripts/setup.sh')\" ]"
fi
say "cache after both: $(cd "$CONTRAST_CACHE" && ls -A | tr '\n' ' ')"

# Broken caches whose markers are all still there: a venv without pyvenv.cfg, an
# extracted libtensorflow missing a header, a truncated wheel (and no binding, so the
# cache is needed). One more set-up must notice each and rebuild it.
if [ "$failed" = 0 ] && grep -q mlflow_venv_works "$tmp/clone/scripts/setup.sh"; then
  rm "$venv/pyvenv.cfg"
  [ -z "$torch_venv_checks" ] || rm "$CONTRAST_TORCH_VENV/pyvenv.cfg"
  header="$(cd "$CONTRAST_CACHE/libtensorflow-2.21.0" && find include -name c_api.h | head -1)"
  rm "$CONTRAST_CACHE/libtensorflow-2.21.0/$header"
  wheel="$(ls "$CONTRAST_CACHE"/wheels/*.whl)"
  truncate -s 100000000 "$wheel"
  rm "$tmp"/clone/node_modules/.pnpm/@tensorflow+tfjs-node@*/node_modules/@tensorflow/tfjs-node/lib/napi-v*/tfjs_binding.node
  (cd "$tmp/clone" && bash scripts/setup.sh 2>&1 | stamp >"$tmp/setup-3.log") || true
  grep -vE '^ *[0-9]+s *(•|Tasks:|Cached:|Time:|$)' "$tmp/setup-3.log" | sed "s/^/    3| /"
  check "the broken venv was rebuilt: pyvenv.cfg and the imports" \
    bash -c "test -f '$venv/pyvenv.cfg' && '$venv/bin/python' -c 'import mlflow, mlflow.server'"
  if [ -n "$torch_venv_checks" ]; then
    check "the broken PyTorch venv was rebuilt: pyvenv.cfg" test -f "$CONTRAST_TORCH_VENV/pyvenv.cfg"
    check "the rebuilt PyTorch venv imports torch, torchvision, scipy, safetensors" torch_imports
  fi
  check "the missing header is back" test -f "$CONTRAST_CACHE/libtensorflow-2.21.0/$header"
  check "the wheel was downloaded again (readable)" python3 -c "import zipfile, sys; zipfile.ZipFile(sys.argv[1])" "$wheel"
  check "the binding was rebuilt and loads" \
    bash -c "cd '$tmp/clone' && node packages/cli/dist/bin.js setup | grep -q 'already present'"
  say "cache after the repair: $(cd "$CONTRAST_CACHE" && ls -A | tr '\n' ' ')"
fi
if [ "$failed" = 0 ]; then say "PASS: two set-ups at once ended with working caches; broken ones were rebuilt"; else say "FAILED"; fi
exit "$failed"
